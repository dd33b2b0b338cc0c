"""``OpenAIChat``: any OpenAI-compatible chat endpoint (OpenAI, Ollama, vLLM, llama.cpp's server).

The ``openai`` package's own retries are off (``max_retries=0``): ours back off with jitter,
retry only what can heal (connection errors, timeouts, 429, 5xx) and count what they did in
``usage``. A 400/401/404 raises at once: asking again cannot fix a wrong key or model name.

Structured output differs by server. OpenAI and vLLM take ``{"type": "json_schema", ...}``;
llama.cpp's Python server takes only ``{"type": "json_object", "schema": ...}`` (a grammar) and
answers ``json_schema`` with a **500** whose message names ``response_format`` (measured with
llama-cpp-python 0.3.36), so a rejection is recognised by that message, whatever the status.
``auto`` tries json_schema, then json_object, then the prompt alone, and remembers what worked.
Whatever comes back is validated against the pydantic schema all the same.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pydantic

from aios_memory.schemas import LLMOutputError, LLMUnavailableError

from ._protocol import T, Usage
from ._validate import json_with_retries, with_instruction
from .local_chat import embedded_tokenizer
from .settings import LLMSettings, is_loopback_url

__all__ = ["OpenAIChat"]

BACKOFF_BASE_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
INSTALL_HINT = "pip install 'ai-os-memory[llm]'"
_FORMAT_ORDER = ("json_schema", "json_object", "none")
_NEVER_RETRIED = (400, 401, 403, 404, 422)


class _Transient(Exception):
    """A failure worth another attempt (connection, timeout, 429, 5xx)."""


class _FormatRejected(Exception):
    """The endpoint refused the ``response_format`` it was sent."""


class OpenAIChat:
    """A ``ChatModel`` over an OpenAI-compatible endpoint.

    Parameters
    ----------
    settings : LLMSettings
        ``url`` is required; ``model`` may be left out when the endpoint lists exactly one
        (it is then asked once, here).

    Raises
    ------
    LLMUnavailableError
        ``openai`` is not installed, or the endpoint cannot say which model to use.
    """

    def __init__(self, settings: LLMSettings) -> None:
        if settings.url is None:
            raise ValueError("OpenAIChat needs settings.url")
        self._settings = settings
        self._url = settings.url
        self._client = _openai_client(settings)
        self._format: str | None = None if settings.structured == "auto" else settings.structured
        self._lock = threading.Lock()  # usage and the remembered format are shared
        self.local = is_loopback_url(settings.url)
        self.usage = Usage()
        self.name = settings.model or self._only_model()
        self._tokenizer: Any = None

    # -- the ChatModel interface ------------------------------------------------------

    def chat_text(self, messages: list[dict[str, str]], *, max_tokens: int) -> str:
        """Free text (see ``ChatModel``)."""
        return self._complete(messages, max_tokens, None)

    def chat_json(self, messages: list[dict[str, str]], schema: type[T], *, max_tokens: int) -> T:
        """One JSON object of ``schema``, validated (see ``ChatModel``).

        Raises
        ------
        LLMOutputError
            Still not a valid ``schema`` after ``settings.retries`` more attempts.
        """

        def complete(prompt: list[dict[str, str]]) -> str:
            return self._complete_structured(prompt, schema, max_tokens)

        return json_with_retries(
            complete, messages, schema, retries=self._settings.retries, usage=self.usage
        )

    def count_tokens(self, text: str) -> int:
        """An estimate (the endpoint's own tokenizer is not reachable without a request): the
        embedded model's tokenizer when it is installed and assembled, else UTF-8 bytes / 4
        rounded up (English chat text runs at about 4 bytes a token)."""
        if self._tokenizer is None:
            self._tokenizer = embedded_tokenizer() or _bytes_over_four
        return int(self._tokenizer(text))

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    @property
    def structured_mode(self) -> str | None:
        """How JSON is being asked for (``json_schema``, ``json_object`` or ``none``); with
        ``structured="auto"``, None until a first ``chat_json`` has found what the endpoint takes.
        """
        return self._format

    # -- structured output --------------------------------------------------------------

    def _complete_structured(
        self, messages: list[dict[str, str]], schema: type[pydantic.BaseModel], max_tokens: int
    ) -> str:
        modes = (self._format,) if self._format else _FORMAT_ORDER
        for mode in modes:
            asked = with_instruction(messages, schema) if mode == "none" else messages
            try:
                text = self._complete(asked, max_tokens, _response_format(mode, schema))
            except _FormatRejected as exc:
                if self._settings.structured != "auto":
                    raise LLMUnavailableError(
                        f"{self._url} does not accept structured={mode} ({exc}); "
                        "try --llm-structured auto",
                        url=self._url,
                    ) from None
                continue
            self._format = mode
            return text
        raise AssertionError("unreachable: structured=none is never rejected")

    # -- one request, with retries ------------------------------------------------------

    def _complete(
        self, messages: list[dict[str, str]], max_tokens: int, response_format: Any
    ) -> str:
        extra = {} if response_format is None else {"response_format": response_format}
        response = self._with_retries(
            lambda: self._client.chat.completions.create(
                model=self.name,
                messages=messages,
                max_tokens=max_tokens,
                temperature=self._settings.temperature,
                **extra,
            )
        )
        self._count(response)
        if not getattr(response, "choices", None):
            raise LLMOutputError(f"{self._url} answered with no choices", url=self._url)
        return response.choices[0].message.content or ""

    def _with_retries(self, call: Any) -> Any:
        attempts = self._settings.retries + 1
        started = time.monotonic()
        try:
            for attempt in range(attempts):
                try:
                    with self._translated():
                        return call()
                except _Transient as exc:
                    if attempt + 1 == attempts:
                        raise LLMUnavailableError(
                            f"the model endpoint {self._url} failed {attempts} time(s): {exc}",
                            url=self._url,
                            attempts=attempts,
                        ) from None
                    self.usage.retries += 1
                    time.sleep(backoff_seconds(attempt))
        finally:
            self.usage.seconds += time.monotonic() - started
        raise AssertionError("unreachable")

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """The one place openai's errors become ours (or a reason to retry)."""
        import openai

        try:
            yield
        except openai.APIStatusError as exc:
            if "response_format" in str(exc.message) and exc.status_code in (400, 422, 500):
                raise _FormatRejected(_short(exc.message)) from None
            if exc.status_code == 429 or exc.status_code >= 500:
                raise _Transient(f"HTTP {exc.status_code}: {_short(exc.message)}") from None
            raise LLMUnavailableError(
                f"{self._url} refused the request (HTTP {exc.status_code}): "
                f"{_short(exc.message)}{_hint(exc.status_code)}",
                url=self._url,
                status=exc.status_code,
            ) from None
        except openai.APITimeoutError:
            raise _Transient(f"no answer within {self._settings.timeout_seconds} s") from None
        except openai.APIConnectionError as exc:
            raise _Transient(f"cannot connect ({_short(str(exc.__cause__ or exc))})") from None
        except openai.OpenAIError as exc:
            raise LLMUnavailableError(f"{self._url}: {_short(str(exc))}", url=self._url) from None

    def _count(self, response: Any) -> None:
        usage = getattr(response, "usage", None)
        with self._lock:
            self.usage.calls += 1
            if usage is not None:
                self.usage.prompt_tokens += usage.prompt_tokens or 0
                self.usage.completion_tokens += usage.completion_tokens or 0

    def _only_model(self) -> str:
        listed = self._with_retries(lambda: self._client.models.list())
        names = [model.id for model in listed.data]
        if len(names) != 1:
            raise LLMUnavailableError(
                f"{self._url} serves {len(names)} models ({', '.join(names[:5])}): "
                "name one with --llm-model or AIMEM_LLM_MODEL",
                url=self._url,
            )
        return str(names[0])


def backoff_seconds(attempt: int) -> float:
    """Wait before retry ``attempt + 1``: 0.5 s doubling per attempt, times a jitter in
    [0.5, 1.5) so that many clients do not retry in step; at most 30 s."""
    return min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt) * (0.5 + random.random())


def _openai_client(settings: LLMSettings) -> Any:
    try:
        import openai
    except ImportError as exc:
        raise LLMUnavailableError(
            f"the openai package is missing ({exc}): {INSTALL_HINT}"
        ) from None
    return openai.OpenAI(
        base_url=settings.url,
        api_key=settings.api_key or "not-needed",
        timeout=settings.timeout_seconds,
        max_retries=0,
    )


def _response_format(mode: str, schema: type[pydantic.BaseModel]) -> dict[str, Any] | None:
    if mode == "json_schema":
        body = {"name": schema.__name__, "schema": schema.model_json_schema(), "strict": True}
        return {"type": "json_schema", "json_schema": body}
    if mode == "json_object":
        return {"type": "json_object", "schema": schema.model_json_schema()}
    return None


def _bytes_over_four(text: str) -> int:
    return math.ceil(len(text.encode("utf-8")) / 4)


def _hint(status: int) -> str:
    return {
        401: " (check --llm-api-key / AIMEM_LLM_API_KEY)",
        403: " (check --llm-api-key / AIMEM_LLM_API_KEY)",
        404: " (check --llm-url ends in /v1 and --llm-model names a served model)",
    }.get(status, "")


def _short(text: str, limit: int = 300) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit] + "..."
