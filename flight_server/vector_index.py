"""One hnswlib index per (tenant, tier, embedding model), derived from the records.

Labels are the store's ``seq`` numbers, so a hit maps straight back to a row.
The index is a cache: on open it is loaded only if its manifest's hash
matches, then reconciled against the live labels the store reports (labels
the file lacks are added, labels no longer live are marked deleted). A
missing, corrupt or stale file costs a rebuild, never a wrong answer.
"""

from __future__ import annotations

import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import hnswlib
import numpy as np

from ._files import fsync_dir, read_manifest, verify_files, write_manifest

__all__ = ["HnswParams", "VectorIndex"]

INDEX_FILE = "index.hnsw"
# Filters this selective are answered exactly over the allowed rows instead:
# exact is both faster and complete when few rows qualify.
EXACT_SEARCH_MAX = 4096


@dataclass(frozen=True)
class HnswParams:
    """Graph parameters; ``persist_min`` is the size below which rebuilding beats storing."""

    m: int = 16
    ef_construction: int = 200
    ef_search: int = 64
    persist_min: int = 10_000
    threads: int = 2


class VectorIndex:
    """Cosine kNN over float32 vectors with uint64 labels, thread-safe."""

    def __init__(self, directory: Path, dim: int, params: HnswParams) -> None:
        self.directory, self.dim, self.params = directory, dim, params
        self._lock = threading.RLock()
        self._index = self._new_index(1024)
        self._live: set[int] = set()
        self.dirty = False
        self.loaded_from_disk = False

    # -- building ---------------------------------------------------------------------------
    def _new_index(self, capacity: int) -> hnswlib.Index:
        index = hnswlib.Index(space="cosine", dim=self.dim)
        index.init_index(max_elements=capacity, M=self.params.m,
                         ef_construction=self.params.ef_construction, allow_replace_deleted=False)
        index.set_ef(self.params.ef_search)
        index.set_num_threads(self.params.threads)
        return index

    def open(self, live_labels: np.ndarray, fetch: Callable[[np.ndarray], np.ndarray]) -> None:
        """Load the saved index if it verifies, then make it hold exactly ``live_labels``.

        ``fetch(labels)`` returns the float32 vectors of those labels.
        """
        with self._lock:
            self.loaded_from_disk = self._load_verified()
            have = set(int(x) for x in self._index.get_ids_list()) if self.loaded_from_disk else set()
            want = set(int(x) for x in live_labels)
            for label in have - want:
                try:
                    self._index.mark_deleted(label)
                except RuntimeError:
                    pass  # saved already deleted; labels are never reused
            self._live = have & want
            missing = np.fromiter(sorted(want - have), dtype=np.uint64)
            if len(missing):
                self.add(missing, fetch(missing))
            self.dirty = bool(len(missing)) or have != want

    def _load_verified(self) -> bool:
        manifest = read_manifest(self.directory)
        path = self.directory / INDEX_FILE
        if manifest is None or not path.exists() or manifest.get("dim") != self.dim:
            return False
        if not verify_files(self.directory, manifest):
            return False
        index = hnswlib.Index(space="cosine", dim=self.dim)
        index.load_index(str(path), max_elements=int(manifest["capacity"]))
        index.set_ef(self.params.ef_search)
        index.set_num_threads(self.params.threads)
        self._index = index
        return True

    def add(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        """Insert (or re-insert) ``vectors`` under ``labels``."""
        if not len(labels):
            return
        with self._lock:
            self._reserve(len(labels))
            self._index.add_items(np.asarray(vectors, dtype=np.float32),
                                  np.asarray(labels, dtype=np.uint64))
            self._live.update(int(x) for x in labels)
            self.dirty = True

    def _reserve(self, extra: int) -> None:
        needed = self._index.element_count + extra
        capacity = self._index.get_max_elements()
        if needed > capacity:
            self._index.resize_index(max(needed, capacity * 2))

    def remove(self, labels: np.ndarray | list[int]) -> None:
        with self._lock:
            for label in labels:
                self._remove(int(label))

    def _remove(self, label: int) -> None:
        if label in self._live:
            self._index.mark_deleted(label)
            self._live.discard(label)
            self.dirty = True

    # -- searching --------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._live)

    def search(self, query: np.ndarray, k: int,
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(labels, cosine distances)`` of the ``k`` nearest, restricted to ``allowed``.

        The filter is applied inside the graph walk (or exactly, when it is
        selective), so a filter never returns fewer results than exist.
        """
        with self._lock:
            if allowed is not None:
                allowed = np.intersect1d(allowed.astype(np.uint64),
                                         np.fromiter(self._live, dtype=np.uint64))
                if len(allowed) <= EXACT_SEARCH_MAX:
                    return self._exact(query, k, allowed)
            k = min(k, len(self._live) if allowed is None else len(allowed))
            if k == 0:
                return np.empty(0, np.uint64), np.empty(0, np.float32)
            keep = None if allowed is None else _membership(allowed)
            self._index.set_ef(max(self.params.ef_search, k))
            labels, distances = self._index.knn_query(query.reshape(1, -1), k=k, filter=keep)
            return labels[0], distances[0]

    def _exact(self, query: np.ndarray, k: int,
               allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not len(allowed):
            return np.empty(0, np.uint64), np.empty(0, np.float32)
        vectors = np.asarray(self._index.get_items(allowed, return_type="numpy"), np.float32)
        norms = np.linalg.norm(vectors, axis=1) * max(float(np.linalg.norm(query)), 1e-12)
        distances = 1.0 - (vectors @ query) / np.maximum(norms, 1e-12)
        order = np.argsort(distances, kind="stable")[:k]
        return allowed[order], distances[order].astype(np.float32)

    # -- saving -----------------------------------------------------------------------------
    def save(self) -> bool:
        """Write the index atomically with its manifest; False when it is too small to keep."""
        with self._lock:
            if len(self._live) < self.params.persist_min:
                self.discard_files()
                self.dirty = False
                return False
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = self.directory / (INDEX_FILE + ".tmp")
            self._index.save_index(str(tmp))
            tmp.replace(self.directory / INDEX_FILE)
            fsync_dir(self.directory)
            write_manifest(self.directory, [INDEX_FILE], dim=self.dim,
                           capacity=self._index.get_max_elements(), count=len(self._live))
            self.dirty = False
            return True

    def discard_files(self) -> None:
        if self.directory.exists():
            shutil.rmtree(self.directory)


def _membership(allowed: np.ndarray) -> Callable[[int], bool]:
    members = set(int(x) for x in allowed)
    return members.__contains__
