"""One hnswlib index per (tenant, tier, embedding model), derived from the records.

Labels are the store's ``seq`` numbers, so a hit maps straight back to a row.
The index is a cache: on open it is loaded only if its manifest's hash
matches, then reconciled against the live labels the store reports (labels
the file lacks are added, labels no longer live are marked deleted). A
missing, corrupt or stale file costs a rebuild, never a wrong answer.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import hnswlib
import numpy as np

from aios_memory.flight_server._files import fsync_dir, read_manifest, verify_files, write_manifest

from ._rw_lock import ReadWriteLock

__all__ = ["HnswParams", "VectorIndex"]

INDEX_FILE = "index.hnsw"
# Filters this selective are answered exactly over the allowed rows instead: complete, and
# fast while few rows qualify (hnswlib's get_items costs about 20 us a vector).
EXACT_SEARCH_MAX = 256
# Background graph steps this small run on one thread, leaving a core for serving.
BACKGROUND_STEP_MAX = 256
# Filters that keep at least this share of the graph over-fetch instead of filtering inside it.
OVERFETCH_MIN_FRACTION = 0.02


@dataclass(frozen=True)
class HnswParams:
    """Vector index parameters; ``persist_min`` is the size below which rebuilding beats
    storing (and, for ``kind="ivf"``, below which search is exact)."""

    m: int = 16
    ef_construction: int = 200
    ef_search: int = 64
    persist_min: int = 10_000
    threads: int = 2
    # "ivf" (ivf_index.IvfIndex: the records' copy only; exact below persist_min, then IVF
    # lists probed nprobe at a time) or "hnsw" (a graph, saved with its own float32 copy).
    kind: str = "ivf"
    nprobe: int = 16


class VectorIndex:
    """Cosine kNN over float32 vectors with uint64 labels, thread-safe.

    Searches share the index (hnswlib queries may run together); adding, building,
    removing and saving have it alone (``_rw_lock.ReadWriteLock``). What touches
    hnswlib is in a few methods (``_new_index``, ``_load_verified``, ``_stored_labels``,
    ``_forget``, ``_insert``, ``_items``, ``_graph_search``, ``_write_files``) that
    ``ivf_index.IvfIndex`` replaces; the pending tail, the live set and the filters' plans
    are shared.
    """

    # Vectors a background build step moves: about 5 ms of hnswlib work (384 random
    # dimensions), the longest a search waits for the index.
    background_step = 16

    def __init__(self, directory: Path, dim: int, params: HnswParams) -> None:
        self.directory, self.dim, self.params = directory, dim, params
        self._lock = ReadWriteLock()
        self._index = self._new_index(1024)
        self._live: set[int] = set()
        # _live, sorted, kept up to date by every change: a filtered search after each write
        # would otherwise sort every label again.
        self._live_sorted = np.empty(0, np.uint64)
        self._pending_labels = np.empty(0, np.uint64)
        self._pending_vectors = np.empty((0, dim), np.float32)
        self.dirty = False
        self.loaded_from_disk = False

    # -- building ---------------------------------------------------------------------------
    def _new_index(self, capacity: int) -> hnswlib.Index:
        index = hnswlib.Index(space="cosine", dim=self.dim)
        index.init_index(
            max_elements=capacity,
            M=self.params.m,
            ef_construction=self.params.ef_construction,
            allow_replace_deleted=False,
        )
        index.set_ef(self.params.ef_search)
        index.set_num_threads(self.params.threads)
        return index

    def open(self, live_labels: np.ndarray, fetch: Callable[[np.ndarray], np.ndarray]) -> None:
        """Load the saved index if it verifies, then make it hold exactly ``live_labels``.

        ``fetch(labels)`` returns the float32 vectors of those labels.
        """
        with self._lock.write():
            self.loaded_from_disk = self._load_verified()
            have = self._stored_labels() if self.loaded_from_disk else set()
            want = set(int(x) for x in live_labels)
            for label in have - want:
                self._forget(label)
            self._live = have & want
            self._live_sorted = np.fromiter(sorted(self._live), np.uint64, len(self._live))
            missing = np.fromiter(sorted(want - have), dtype=np.uint64)
            if len(missing):
                self.add(missing, fetch(missing))
            self.dirty = bool(len(missing)) or have != want

    def _load_verified(self) -> bool:
        manifest = read_manifest(self.directory)
        path = self.directory / INDEX_FILE
        if manifest is None or not path.exists() or manifest.get("dim") != self.dim:
            return False
        if manifest.get("kind", "hnsw") != "hnsw":  # another kind's files: rebuilt as this kind
            return False
        if not verify_files(self.directory, manifest):
            return False
        index = hnswlib.Index(space="cosine", dim=self.dim)
        index.load_index(str(path), max_elements=int(manifest["capacity"]))
        index.set_ef(self.params.ef_search)
        index.set_num_threads(self.params.threads)
        self._index = index
        return True

    def _stored_labels(self) -> set[int]:
        """The labels the index loaded from disk holds (deleted ones included)."""
        return set(int(x) for x in self._index.get_ids_list())

    def _forget(self, label: int) -> None:
        """Take ``label`` out of the graph (not of the pending tail)."""
        with contextlib.suppress(RuntimeError):  # saved already deleted; never reused
            self._index.mark_deleted(label)

    def add(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        """Make ``vectors`` searchable under ``labels`` at once; the graph takes them later.

        Inserting into hnswlib costs far more than a commit (0.37 ms a vector
        for 384 random dimensions here), so new vectors wait in a pending
        tail that searches scan exactly until ``build_step`` moves them into
        the graph: writes are acknowledged at commit speed and no search
        misses a committed vector.
        """
        if not len(labels):
            return
        unit = np.asarray(vectors, np.float32)
        unit = unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
        labels, first = np.unique(np.asarray(labels, np.uint64), return_index=True)
        unit = unit[first]
        with self._lock.write():
            # A label is a record's seq, whose vector never changes: one already live (an
            # index opened from the records just after the commit that also adds it) is
            # there already, and a second copy would be a second hit.
            fresh = ~_sorted_contains(self._live_sorted, labels)
            if not fresh.any():
                return
            labels, unit = labels[fresh], unit[fresh]
            self._pending_labels = np.concatenate([self._pending_labels, labels])
            self._pending_vectors = np.concatenate([self._pending_vectors, unit])
            self._live.update(int(x) for x in labels)
            self._live_sorted = _sorted_union(self._live_sorted, labels)
            self.dirty = True

    @property
    def pending(self) -> int:
        return len(self._pending_labels)

    def build_step(self, max_items: int = 64) -> int:
        """Move up to ``max_items`` pending vectors into the graph; returns how many moved.

        Small steps, because hnswlib cannot search while it inserts: a search
        waits at most one step.
        """
        with self._lock.write():
            labels = self._pending_labels[:max_items]
            if not len(labels):
                return 0
            # One thread in the background leaves a core for serving; a bulk build uses all.
            bulk = max_items > max(self.background_step, BACKGROUND_STEP_MAX)
            threads = self.params.threads if bulk else 1
            self._insert(labels, self._pending_vectors[:max_items], threads)
            self._pending_labels = self._pending_labels[max_items:]
            self._pending_vectors = self._pending_vectors[max_items:]
            return len(labels)

    def build_all(self) -> None:
        while self.build_step(4096):
            pass

    def _insert(self, labels: np.ndarray, unit_vectors: np.ndarray, threads: int) -> None:
        """Put vectors into the graph (the caller holds the write lock)."""
        self._reserve(len(labels))
        self._index.add_items(unit_vectors, labels, num_threads=threads)

    def _reserve(self, extra: int) -> None:
        needed = self._index.element_count + extra
        capacity = self._index.get_max_elements()
        if needed > capacity:
            self._index.resize_index(max(needed, capacity * 2))

    def remove(self, labels: np.ndarray | list[int]) -> None:
        with self._lock.write():
            gone = [label for label in (int(x) for x in labels) if self._remove(label)]
            if gone:
                dead = np.unique(np.asarray(gone, np.uint64))
                self._live_sorted = self._live_sorted[~_sorted_contains(dead, self._live_sorted)]

    def _remove(self, label: int) -> bool:
        if label not in self._live:
            return False
        self._live.discard(label)
        self.dirty = True
        keep = self._pending_labels != label
        if keep.all():
            self._forget(label)
        else:
            self._pending_labels = self._pending_labels[keep]
            self._pending_vectors = self._pending_vectors[keep]
        return True

    # -- searching --------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._live)

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(labels, cosine distances)`` of the ``k`` nearest, restricted to ``allowed``.

        The filter is applied inside the graph walk (or exactly, when it is
        selective), so a filter never returns fewer results than exist.
        """
        query = query / max(float(np.linalg.norm(query)), 1e-12)
        with self._lock.read():
            pending, vectors = self._pending_labels, self._pending_vectors
            if allowed is not None and len(pending):  # copy only the allowed rows
                keep = np.isin(pending, allowed)
                pending, vectors = pending[keep], vectors[keep]
            tail = _exact(query, k, pending, vectors)
            in_graph = len(self._live) - len(self._pending_labels)
            if allowed is None:
                graph = self._graph_search(query, k, None, in_graph)
            else:
                indexed = self._graph_members(allowed)
                if len(indexed) <= EXACT_SEARCH_MAX:
                    graph = _exact(query, k, indexed, self._items(indexed))
                else:
                    graph = self._filtered_graph_search(query, k, indexed, in_graph)
        return _merge(graph, tail, k)

    def _items(self, labels: np.ndarray) -> np.ndarray:
        """The unit vectors the graph holds for ``labels`` (all in it), as float32 rows."""
        if not len(labels):
            return np.empty((0, self.dim), np.float32)
        return np.asarray(self._index.get_items(labels, return_type="numpy"), np.float32)

    def _graph_members(self, allowed: np.ndarray) -> np.ndarray:
        """The sorted labels of ``allowed`` that are in the graph (live, not pending)."""
        allowed = allowed.astype(np.uint64, copy=False)
        if len(allowed) > 1 and not bool(np.all(allowed[1:] > allowed[:-1])):
            allowed = np.unique(allowed)  # the store's are sorted and unique already
        members = allowed[_sorted_contains(self._live_sorted, allowed)]
        if len(self._pending_labels):
            members = members[~np.isin(members, self._pending_labels)]
        return members

    def _graph_search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None, available: int
    ) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, available)
        if k <= 0:
            return np.empty(0, np.uint64), np.empty(0, np.float32)
        keep = None if allowed is None else _membership(allowed)
        # No set_ef per query: hnswlib searches with max(ef, k) itself, and a shared ef
        # changed by one search would change the others running beside it.
        labels, distances = self._index.knn_query(query.reshape(1, -1), k=k, filter=keep)
        return labels[0], distances[0]

    def _filtered_graph_search(
        self, query: np.ndarray, k: int, indexed: np.ndarray, in_graph: int
    ) -> tuple[np.ndarray, np.ndarray]:
        # A broad filter: fetch enough unfiltered neighbours for k to pass, filter in
        # numpy. hnswlib's own filter calls Python for every node it visits (12% of a
        # filtered query's time at 50k rows); it stays the fallback, so nothing is missed.
        fraction = len(indexed) / max(in_graph, 1)
        if fraction >= OVERFETCH_MIN_FRACTION:
            want = min(in_graph, int(k / fraction * 3) + 10)
            labels, distances = self._graph_search(query, want, None, in_graph)
            keep = _sorted_contains(indexed, labels.astype(np.uint64))
            if keep.sum() >= min(k, len(indexed)):
                return labels[keep][:k], distances[keep][:k]
        return self._graph_search(query, k, indexed, len(indexed))

    # -- saving -----------------------------------------------------------------------------
    def save(self) -> bool:
        """Write the index atomically with its manifest; False when it is too small to keep."""
        with self._lock.write():
            if len(self._live) < self.params.persist_min:
                self.discard_files()
                self.dirty = False
                return False
            self.build_all()
            self.directory.mkdir(parents=True, exist_ok=True)
            files, extra = self._write_files()
            fsync_dir(self.directory)
            write_manifest(self.directory, files, dim=self.dim, count=len(self._live), **extra)
            self.dirty = False
            return True

    def _write_files(self) -> tuple[list[str], dict[str, object]]:
        """Write the index's files (each to a temporary name, then renamed); return their
        names and what the manifest keeps beside them."""
        tmp = self.directory / (INDEX_FILE + ".tmp")
        self._index.save_index(str(tmp))
        tmp.replace(self.directory / INDEX_FILE)
        return [INDEX_FILE], {"kind": "hnsw", "capacity": self._index.get_max_elements()}

    def discard_files(self) -> None:
        if self.directory.exists():
            shutil.rmtree(self.directory)


def _exact(
    query: np.ndarray, k: int, labels: np.ndarray, unit_vectors: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine kNN over unit rows (hnswlib's cosine space stores them normalized)."""
    if not len(labels):
        return np.empty(0, np.uint64), np.empty(0, np.float32)
    distances = 1.0 - unit_vectors @ query
    if len(distances) > k:  # partial selection: O(n) instead of sorting every pending row
        top = np.argpartition(distances, k)[:k]
        order = top[np.argsort(distances[top], kind="stable")]
    else:
        order = np.argsort(distances, kind="stable")
    return labels[order].astype(np.uint64), distances[order].astype(np.float32)


def _sorted_contains(sorted_labels: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mask of ``labels`` found in the sorted array ``sorted_labels``."""
    if not len(sorted_labels):
        return np.zeros(len(labels), bool)
    at = np.minimum(np.searchsorted(sorted_labels, labels), len(sorted_labels) - 1)
    return sorted_labels[at] == labels


def _sorted_union(sorted_labels: np.ndarray, new: np.ndarray) -> np.ndarray:
    """``sorted_labels`` with ``new`` (labels not in it) added, still sorted; new seqs
    usually come after every old one, which costs a concatenation."""
    if not len(new):
        return sorted_labels
    new = np.sort(new)
    if not len(sorted_labels) or new[0] > sorted_labels[-1]:
        return np.concatenate([sorted_labels, new])
    return np.union1d(sorted_labels, new)


def _merge(
    a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], k: int
) -> tuple[np.ndarray, np.ndarray]:
    labels = np.concatenate([a[0].astype(np.uint64), b[0].astype(np.uint64)])
    distances = np.concatenate([a[1], b[1]]).astype(np.float32)
    order = np.argsort(distances, kind="stable")[:k]
    return labels[order], distances[order]


def _membership(allowed: np.ndarray) -> Callable[[int], bool]:
    members = set(int(x) for x in allowed)
    return members.__contains__
