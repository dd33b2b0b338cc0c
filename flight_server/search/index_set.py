"""The derived indexes of one data directory: vectors per (tenant, tier, model), keywords
per tenant.

Knows nothing about SQL: the store hands it rows and answers its questions
through callbacks (live labels of a key, vectors of labels, the keyword backlog
of a tenant). ``hybrid.HybridSearch`` owns one and searches it.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from .keyword_index import KeywordDoc, KeywordIndex
from .vector_index import HnswParams, VectorIndex

__all__ = ["IndexSet", "VectorKey"]

log = logging.getLogger("aios_memory.server")

VectorKey = tuple[str, str, str]  # tenant, tier, embed_model
_SAFE = re.compile(r"[^0-9A-Za-z_.-]")
# Staged keyword changes wait at most about this long (plus a loop turn) for a commit.
KEYWORD_COMMIT_DELAY = 0.2
# After a failed round (a full disk), the builder waits this long before the next.
RETRY_SECONDS = 2.0


def _slug(name: str) -> str:
    # Model names hold '/' and ':'; keep them readable but unique on disk.
    safe = _SAFE.sub("_", name)[:48]
    return f"{safe}-{hashlib.blake2b(name.encode(), digest_size=4).hexdigest()}"


class IndexSet:
    """Opens, updates, searches and checkpoints every derived index lazily, per key."""

    def __init__(
        self,
        root: Path,
        params: HnswParams,
        live_labels: Callable[[VectorKey], np.ndarray],
        fetch_vectors: Callable[[VectorKey, np.ndarray], np.ndarray],
        keyword_backlog: Callable[[str, int], Iterable[KeywordDoc]],
    ) -> None:
        self.root, self.params = root, params
        self._live_labels, self._fetch = live_labels, fetch_vectors
        self._keyword_backlog = keyword_backlog
        self._vectors: dict[VectorKey, VectorIndex] = {}
        self._keywords: dict[str, KeywordIndex] = {}
        self._lock = threading.Lock()
        self.events: list[str] = []  # what was rebuilt, for stats and tests
        self._wake, self._stop = threading.Event(), threading.Event()
        self._builder = threading.Thread(
            target=self._build_loop, name="vector-builder", daemon=True
        )
        self._builder.start()

    def _build_loop(self) -> None:
        """Off the write path: commit staged keyword changes, build pending vectors into graphs.

        A failure (a full disk refusing a keyword commit) must not end the thread: nothing
        would be committed or built again. It is logged once, and tried again later.
        """
        told: set[str] = set()
        while not self._stop.is_set():
            try:
                self._build_round()
                told.clear()
            except Exception as exc:
                if str(exc) not in told:
                    told.add(str(exc))
                    log.warning("index upkeep failed, retrying in %s s: %s", RETRY_SECONDS, exc)
                self._stop.wait(RETRY_SECONDS)

    def _build_round(self) -> None:
        """Commit old enough keyword changes, then move pending vectors into their graphs."""
        with self._lock:
            indexes = list(self._vectors.values())
        with self._lock:
            keywords = list(self._keywords.values())
        for keyword in keywords:
            keyword.flush(older_than=KEYWORD_COMMIT_DELAY)
        moved = 0
        for index in indexes:
            moved += index.build_step(index.background_step)
            time.sleep(0.0005)  # let waiting searches take the index lock between steps
        if not moved:
            self._wake.wait(KEYWORD_COMMIT_DELAY)
            self._wake.clear()

    def notify(self) -> None:
        """New vectors are pending: wake the builder."""
        self._wake.set()

    def flush(self) -> None:
        """Build every pending vector into its graph now (benchmarks and shutdown use it)."""
        with self._lock:
            indexes = list(self._vectors.values())
        for index in indexes:
            index.build_all()

    @property
    def pending(self) -> int:
        with self._lock:
            return sum(index.pending for index in self._vectors.values())

    def _vector_dir(self, key: VectorKey) -> Path:
        tenant, tier, model = key
        return self.root / tenant / "vectors" / tier / _slug(model)

    def vector(self, key: VectorKey, dim: int) -> VectorIndex:
        """The index of ``key``, opened (and reconciled with the records) on first use."""
        with self._lock:
            index = self._vectors.get(key)
            if index is None:
                index = _index_class(self.params.kind)(self._vector_dir(key), dim, self.params)
                index.open(self._live_labels(key), lambda labels: self._fetch(key, labels))
                if not index.loaded_from_disk and len(index) >= self.params.persist_min:
                    self.events.append(f"rebuilt vectors {key}")
                self._vectors[key] = index
            return index

    def existing_vector(self, key: VectorKey) -> VectorIndex | None:
        return self._vectors.get(key)

    def keyword(self, tenant: str) -> KeywordIndex:
        """The tenant's keyword index, caught up with every row written since its checkpoint."""
        with self._lock:
            index = self._keywords.get(tenant)
            if index is None:
                index = KeywordIndex(self.root / tenant / "keyword")
                if index.rebuilt:
                    self.events.append(f"rebuilt keywords {tenant}")
                index.apply(self._keyword_backlog(tenant, index.watermark))
                # Committed once here: the backlog's docs may replace committed versions
                # whose seqs nobody knows, which the staged tail could not drop.
                index.flush()
                self._keywords[tenant] = index
            return index

    def checkpoint(self, only_dirty: bool = True) -> None:
        """Save every vector index that changed and mark the keyword indexes' files."""
        with self._lock:
            vectors, keywords = list(self._vectors.values()), list(self._keywords.values())
        for index in vectors:
            if index.dirty or not only_dirty:
                index.save()
        for keyword in keywords:
            keyword.flush()
            if keyword.dirty or not only_dirty:
                keyword.checkpoint()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._builder.join()
        with self._lock:
            for index in self._vectors.values():
                if index.dirty or not index.loaded_from_disk:
                    index.save()
            for keyword in self._keywords.values():
                keyword.close()
            self._keywords.clear()
            self._vectors.clear()


def _index_class(kind: str) -> type[VectorIndex]:
    if kind == "ivf":
        from .ivf_index import IvfIndex  # faiss loads only for servers that use it

        return IvfIndex
    return VectorIndex
