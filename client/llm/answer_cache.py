"""Answers replayed from a file: the same request to the same model is answered once.

At temperature 0 a model's answer is a function of its request, so a run that is repeated
(a benchmark resumed on another machine, a consolidation replayed after its store was
rebuilt) need not pay for the answers it already has. ``CachedChat`` wraps any
``ChatModel``: a request whose key is in the file is answered from it (validated again
against its schema), any other goes to the model and its answer is appended, one JSON line
each, flushed and fsynced before it is returned, so a run cut short keeps every answer it
got. A cut last line (a crash mid-write) is skipped on reading.

The key is the SHA-256 of everything that shapes an answer: the model's name, the request's
messages, schema and ``max_tokens``, and the settings ``context`` and ``structured``. Each
line also keeps, for the record, what the answer cost when it was made (tokens, seconds),
when, and the load average then; a replayed answer adds nothing to ``usage`` but ``cached``.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pydantic

from ._protocol import ChatModel, T, Usage
from .settings import LLMSettings

__all__ = ["CachedChat", "request_key"]

A = TypeVar("A")


def request_key(model: str, settings: LLMSettings, request: dict[str, Any]) -> str:
    """The SHA-256 (hex) that names one request's answer."""
    shaped = {
        "model": model,
        "context": settings.context,
        "structured": settings.structured,
        **request,
    }
    canonical = json.dumps(shaped, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class CachedChat:
    """``inner`` with its answers kept in, and replayed from, the JSON-lines file ``path``."""

    def __init__(self, inner: ChatModel, path: str | os.PathLike[str], settings: LLMSettings):
        self._inner = inner
        self._path = Path(path)
        self._settings = settings
        self._lock = threading.Lock()
        self._answers = _read(self._path)
        self.name = inner.name
        self.local = inner.local
        self.usage: Usage = inner.usage  # one object: the model's costs and the replays

    def chat_json(self, messages: list[dict[str, str]], schema: type[T], *, max_tokens: int) -> T:
        """See ``ChatModel.chat_json``; answered from the file when it holds the request."""
        request = {
            "kind": "json",
            "messages": messages,
            "schema": schema.model_json_schema(),
            "max_tokens": max_tokens,
        }
        return self._answer(
            request,
            lambda: self._inner.chat_json(messages, schema, max_tokens=max_tokens),
            schema.model_validate_json,
            lambda answer: answer.model_dump_json(),
        )

    def chat_text(self, messages: list[dict[str, str]], *, max_tokens: int) -> str:
        """See ``ChatModel.chat_text``; answered from the file when it holds the request."""
        request = {"kind": "text", "messages": messages, "max_tokens": max_tokens}
        return self._answer(
            request, lambda: self._inner.chat_text(messages, max_tokens=max_tokens), str, str
        )

    def _answer(
        self,
        request: dict[str, Any],
        ask: Callable[[], A],
        decode: Callable[[str], A],
        encode: Callable[[A], str],
    ) -> A:
        """The kept answer to ``request`` (``decode``d), else ``ask``'s, kept (``encode``d)."""
        key = request_key(self.name, self._settings, request)
        kept = self._answers.get(key)
        if kept is not None:
            try:
                answer = decode(kept)
            except pydantic.ValidationError:
                pass  # not this schema's answer after all: ask the model
            else:
                self.usage.cached += 1
                return answer
        answer, cost = self._timed(ask)
        self._keep(key, encode(answer), cost)
        return answer

    def count_tokens(self, text: str) -> int:
        return self._inner.count_tokens(text)

    def close(self) -> None:
        self._inner.close()

    def _timed(self, ask: Any) -> tuple[Any, dict[str, Any]]:
        usage = self.usage
        before = (usage.prompt_tokens, usage.completion_tokens)
        started = time.monotonic()
        answer = ask()
        cost = {
            "seconds": round(time.monotonic() - started, 3),
            "prompt_tokens": usage.prompt_tokens - before[0],
            "completion_tokens": usage.completion_tokens - before[1],
        }
        return answer, cost

    def _keep(self, key: str, answer: str, cost: dict[str, Any]) -> None:
        line = {"key": key, "model": self.name, "answer": answer, **cost, **_when()}
        encoded = json.dumps(line, ensure_ascii=False) + "\n"
        with self._lock:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            with open(self._path, "a+b") as file:
                if file.tell() and not _ends_with_newline(file):
                    encoded = "\n" + encoded  # after a cut line: start a line of our own
                file.write(encoded.encode("utf-8"))
                file.flush()
                os.fsync(file.fileno())
            self._answers[key] = answer


def _read(path: Path) -> dict[str, str]:
    answers: dict[str, str] = {}
    if not path.exists():
        return answers
    with open(path, encoding="utf-8", errors="replace") as file:
        for line in file:
            try:
                kept = json.loads(line)
                answers[kept["key"]] = kept["answer"]
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by a crash, or not ours
    return answers


def _ends_with_newline(file: Any) -> bool:
    file.seek(-1, os.SEEK_END)
    last = file.read(1)
    file.seek(0, os.SEEK_END)
    return bool(last == b"\n")


def _when() -> dict[str, Any]:
    """When the answer was made, and the machine's load then (its seconds mean little without)."""
    when: dict[str, Any] = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if hasattr(os, "getloadavg"):
        when["load1"] = round(os.getloadavg()[0], 2)
    return when
