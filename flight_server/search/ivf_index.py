"""A vector index whose only stored copy of each vector is the record's (issue 18).

hnswlib's saved graph keeps every vector again as float32 (1,684 bytes a vector);
this index saves none. Small, it is exact (faiss ``IndexFlatIP`` in memory); from
``train_min`` vectors on, it is a faiss IVF over 8-bit scalar codes (``IndexIVFScalarQuantizer``,
about 384 bytes a vector in memory) whose coarse centroids and code ranges are trained
once on the vectors it holds. What it saves is that trained state (kilobytes) and which
list each label went to (12 bytes a label); on open it takes the vectors again from the
records (``fetch``) and puts each back into its list without assigning it again. Adding is
an encode and one product with the centroids: no graph to walk, so a large put is
searchable at once (``bench/vector_layouts.py``: 24,000 vectors/s on 2 threads at 100k,
against hnswlib's 1,800; recall@10 0.98 against 0.99).

Searches, filters and the pending tail are ``VectorIndex``'s; this class replaces only
what touches the ANN structure. A filter is a bitmap over the labels (no over-fetch), with
more lists probed the fewer rows it keeps, and exact over the codes when that still
finds fewer than asked.
"""

from __future__ import annotations

import importlib
import io
import logging
import math
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from aios_memory.flight_server._files import atomic_write_bytes, read_manifest, verify_files

from .vector_index import HnswParams, VectorIndex, _sorted_contains

__all__ = ["IvfIndex"]

# Untyped on purpose: faiss's generated stubs lack most of what its SWIG classes have.
# faiss's loader logs, at INFO, a ModuleNotFoundError for each CPU build it does not ship
# (AVX512, AVX2) before loading the generic one: alarming lines at every start, no news.
logging.getLogger("faiss.loader").setLevel(logging.WARNING)
faiss: Any = importlib.import_module("faiss")

KIND = "ivf-sq8"
STATE_FILE = "ivf.faiss"  # the trained, empty index: centroids and code ranges
LISTS_FILE = "lists.npy"  # (label, list) of every vector at the last save
# Vectors fetched from the records and added at once while opening.
OPEN_CHUNK = 65_536
# Training sees at most this many vectors per list (faiss warns below 39).
TRAIN_PER_LIST = 40
# A filter keeping this share of the rows or more probes the usual lists; fewer, more.
FILTER_FULL_FRACTION = 0.1
# ... and at least as many lists as hold this many allowed rows, on average: a small index
# has few rows a list (100 at 10,000 vectors), and 16 of its lists under a 10% filter held
# 160 allowed rows, which missed 13% of the true top 10 (bench/RESULTS.md 15e).
FILTER_CANDIDATES = 512
# Trained on n vectors, the lists are retrained once they hold this many times n: sqrt(n)
# lists hold ever more vectors as a tenant grows, and a probe scans ever more codes.
RETRAIN_GROWTH = 4


class IvfIndex(VectorIndex):
    """Cosine kNN over uint64 labels: exact while small, IVF over 8-bit codes after."""

    background_step = 1024  # an IVF add of 1,024 vectors takes a few ms

    def __init__(self, directory: Path, dim: int, params: HnswParams) -> None:
        self._trained = False
        self._trained_on = 0
        self._saved_lists: tuple[np.ndarray, np.ndarray] | None = None
        self._expected = 0  # vectors an open is about to add: sizes the lists it trains
        # Build steps one at a time: a retrain copies the lists while nothing moves into them.
        self._building = threading.Lock()
        super().__init__(directory, dim, params)

    # -- the structure ----------------------------------------------------------------------
    def _new_index(self, capacity: int) -> Any:
        self._trained = False
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    def _insert(self, labels: np.ndarray, unit_vectors: np.ndarray, threads: int) -> None:
        faiss.omp_set_num_threads(threads)
        if not self._trained and self._index.ntotal + len(labels) >= self.params.persist_min:
            self._train(labels, unit_vectors)
            return
        self._index.add_with_ids(_rows(unit_vectors), labels.astype(np.int64))

    def _train(self, labels: np.ndarray, unit_vectors: np.ndarray) -> None:
        """Replace the exact index by an IVF trained on what it held plus these vectors."""
        old_ids = faiss.vector_to_array(self._index.id_map)
        old = _flat_vectors(self._index, self.dim)
        ids = np.concatenate([old_ids, labels.astype(np.int64)])
        vectors = np.concatenate([old, _rows(unit_vectors)])
        self._index = _trained_ivf(vectors, ids, max(len(ids), self._expected))
        self._trained, self._trained_on = True, len(ids)

    def build_step(self, max_items: int = 64) -> int:
        # Never waits for another thread's step: a save holds the write lock while it builds,
        # and a retrain in the builder thread waits for that lock to copy the lists.
        if not self._building.acquire(blocking=False):
            return 0
        try:
            if self._retrain_due() and not self._lock.held_for_write():
                self._retrain()  # not inside a save's write lock: searches would wait for it
            return super().build_step(max_items)
        finally:
            self._building.release()

    def _retrain_due(self) -> bool:
        return self._trained and self._index.ntotal >= RETRAIN_GROWTH * max(self._trained_on, 1)

    def _retrain(self) -> None:
        """Lists for the size the index has grown to, built beside the ones searches use.

        Nothing moves into the lists meanwhile (build steps wait on ``_building``; new
        vectors stay in the pending tail, searched exactly), so the copy misses nothing;
        labels removed meanwhile are skipped or removed from it before it replaces them.
        Copied a chunk at a time, each under the read lock only while it is copied, so a
        forget waits for one chunk, and memory holds one chunk of floats.
        """
        with self._lock.read():
            ids = np.sort(_list_pairs(self._index)["label"]).astype(np.int64)
        faiss.omp_set_num_threads(1)  # in the background: leave a core for searches
        nlist = _list_count(len(ids))
        index = _empty_ivf(self.dim, nlist)
        sample = np.sort(np.random.default_rng(0).permutation(ids)[: nlist * TRAIN_PER_LIST])
        index.train(self._copy(sample)[1])
        for first in range(0, len(ids), OPEN_CHUNK):
            live, vectors = self._copy(ids[first : first + OPEN_CHUNK])
            index.add_with_ids(vectors, live)
        with self._lock.write():
            gone = ids[~_sorted_contains(self._live_sorted, ids.astype(np.uint64))]
            if len(gone):
                index.remove_ids(faiss.IDSelectorArray(gone))
            self._index, self._trained_on, self.dirty = index, len(ids), True

    def _copy(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(ids still live, their unit vectors)`` as the lists hold them now."""
        with self._lock.read():
            live = ids[_sorted_contains(self._live_sorted, ids.astype(np.uint64))]
            return live, self._items(live)

    def _forget(self, label: int) -> None:
        self._index.remove_ids(faiss.IDSelectorArray(np.array([label], np.int64)))

    def _stored_labels(self) -> set[int]:
        saved = self._saved_lists
        return set() if saved is None else set(int(x) for x in saved[0])

    def _items(self, labels: np.ndarray) -> np.ndarray:
        if not len(labels):
            return np.empty((0, self.dim), np.float32)
        return _unit(self._index.reconstruct_batch(labels.astype(np.int64)))

    # -- searching --------------------------------------------------------------------------
    def _graph_search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None, available: int
    ) -> tuple[np.ndarray, np.ndarray]:
        bitmap = None if allowed is None else _Bitmap(allowed)  # alive until the search ends
        return self._probe(query, k, bitmap, available, every_list=False)

    def _probe(
        self,
        query: np.ndarray,
        k: int,
        bitmap: _Bitmap | None,
        available: int,
        every_list: bool,
    ) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, available)
        if k <= 0:
            return np.empty(0, np.uint64), np.empty(0, np.float32)
        faiss.omp_set_num_threads(1)  # a query is small; the server's parallelism is requests
        params = self._params(bitmap, every_list)
        similarity, found = self._index.search(_rows(query.reshape(1, -1)), k, params=params)
        keep = found[0] >= 0
        # A decoded 8-bit code is unit length only to within its rounding: a cosine is kept in
        # [-1, 1] (a hit's score of 1.001 would read as better than identical).
        cosine = np.clip(similarity[0][keep], -1.0, 1.0)
        return found[0][keep].astype(np.uint64), (1.0 - cosine).astype(np.float32)

    def _filtered_graph_search(
        self, query: np.ndarray, k: int, indexed: np.ndarray, in_graph: int
    ) -> tuple[np.ndarray, np.ndarray]:
        bitmap = _Bitmap(indexed)  # built once, for the probe and the fallback
        labels, distances = self._probe(query, k, bitmap, in_graph, every_list=False)
        if len(labels) >= min(k, len(indexed)) or not self._trained:
            return labels, distances
        # The probed lists held too few allowed rows: every list, still over the codes.
        return self._probe(query, k, bitmap, in_graph, every_list=True)

    def _params(self, bitmap: _Bitmap | None, every_list: bool) -> Any:
        params = faiss.SearchParametersIVF() if self._trained else faiss.SearchParameters()
        if self._trained:
            nlist = self._index.nlist
            share = 1.0 if bitmap is None else bitmap.count / max(self._index.ntotal, 1)
            widen = 1 if share >= FILTER_FULL_FRACTION else math.ceil(FILTER_FULL_FRACTION / share)
            nprobe = self.params.nprobe * widen
            if bitmap is not None:  # and enough lists to hold a few hundred allowed rows
                nprobe = max(nprobe, math.ceil(FILTER_CANDIDATES * nlist / max(bitmap.count, 1)))
            params.nprobe = nlist if every_list else min(nlist, nprobe)
        if bitmap is not None:
            params.sel = bitmap.selector
        return params

    # -- opening and saving -----------------------------------------------------------------
    def open(self, live_labels: np.ndarray, fetch: Callable[[np.ndarray], np.ndarray]) -> None:
        """Take every live vector from the records again; reuse the saved training and lists."""
        with self._lock.write():
            self.loaded_from_disk = self._load_verified()
            labels = _sorted_unique(np.asarray(live_labels, np.uint64))
            self._live = set(labels.tolist())
            self._live_sorted = labels
            self._expected, added_fresh = len(labels), 0
            for chunk, vectors in _fetched_ahead(labels, fetch):
                added_fresh += self._refill(chunk, vectors)
            saved = self._saved_lists
            same = saved is not None and np.array_equal(np.sort(saved[0]), labels)
            self.dirty = not (self.loaded_from_disk and same and not added_fresh)
            self._saved_lists, self._expected = None, 0

    def _refill(self, labels: np.ndarray, unit_vectors: np.ndarray) -> int:
        """Add vectors on open: into their saved lists where known; how many were not."""
        saved = self._saved_lists
        if not self._trained or saved is None:
            self._insert(labels, unit_vectors, self.params.threads)
            return len(labels)
        at = np.minimum(np.searchsorted(saved[0], labels), len(saved[0]) - 1)
        known = saved[0][at] == labels
        if known.any():
            vectors = _rows(unit_vectors[known])
            ids = labels[known].astype(np.int64)
            lists = saved[1][at[known]].astype(np.int64)
            self._index.add_core(
                len(ids), faiss.swig_ptr(vectors), faiss.swig_ptr(ids), faiss.swig_ptr(lists)
            )
        if (~known).any():
            self._insert(labels[~known], unit_vectors[~known], self.params.threads)
        return int((~known).sum())

    def _load_verified(self) -> bool:
        manifest = read_manifest(self.directory)
        if manifest is None or manifest.get("kind") != KIND or manifest.get("dim") != self.dim:
            return False
        if not verify_files(self.directory, manifest):
            return False
        state = np.fromfile(self.directory / STATE_FILE, np.uint8)
        index = faiss.deserialize_index(state)
        index.set_direct_map_type(faiss.DirectMap.Hashtable)
        pairs = np.load(self.directory / LISTS_FILE, allow_pickle=False)
        order = np.argsort(pairs["label"])
        self._saved_lists = (pairs["label"][order], pairs["list"][order])
        self._index, self._trained = index, True
        self._trained_on = int(manifest.get("trained_on", len(order)))
        return True

    def save(self) -> bool:
        # An exact index rebuilds from the records as fast as it would load: nothing saved.
        self.build_all()  # pending vectors may be what makes it train
        with self._lock.read():
            trained = self._trained
        if not trained:
            with self._lock.write():
                self.discard_files()
                self.dirty = False
            return False
        return super().save()

    def _write_files(self) -> tuple[list[str], dict[str, object]]:
        empty = faiss.clone_index(self._index)
        empty.reset()
        atomic_write_bytes(self.directory / STATE_FILE, faiss.serialize_index(empty).tobytes())
        lists = io.BytesIO()
        np.save(lists, _list_pairs(self._index), allow_pickle=False)
        atomic_write_bytes(self.directory / LISTS_FILE, lists.getvalue())
        (self.directory / "index.hnsw").unlink(missing_ok=True)  # a graph from before
        facts = {"kind": KIND, "nlist": int(self._index.nlist), "trained_on": self._trained_on}
        return [STATE_FILE, LISTS_FILE], facts


class _Bitmap:
    """A faiss selector of ``labels`` (sorted, unique): one bit a label up to the largest."""

    def __init__(self, labels: np.ndarray) -> None:
        size = int(labels[-1]) + 1 if len(labels) else 1
        mask = np.zeros(size, bool)
        mask[labels.astype(np.int64)] = True
        self.count = len(labels)
        self.bits = np.packbits(mask, bitorder="little")  # faiss reads it: kept with the selector
        self.selector = faiss.IDSelectorBitmap(size, faiss.swig_ptr(self.bits))


def _trained_ivf(vectors: np.ndarray, ids: np.ndarray, expected: int) -> Any:
    """An IVF trained on a sample of ``vectors`` with lists for ``expected`` vectors, holding
    them all."""
    nlist = _list_count(expected)
    index = _empty_ivf(vectors.shape[1], nlist)
    sample = np.random.default_rng(0).permutation(len(vectors))[: nlist * TRAIN_PER_LIST]
    index.train(vectors[sample])
    index.add_with_ids(vectors, ids)
    return index


def _empty_ivf(dim: int, nlist: int) -> Any:
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFScalarQuantizer(
        quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
    )
    index.set_direct_map_type(faiss.DirectMap.Hashtable)  # remove and reconstruct by label
    return index


def _list_count(n: int) -> int:
    # sqrt(n) lists of about sqrt(n) vectors: a probe of 16 scans 16 sqrt(n) codes (16,000 at
    # 1M), and training (40 vectors a list) stays a few seconds at 1M.
    return max(16, min(65_536, int(math.sqrt(n))))


def _list_pairs(index: Any) -> np.ndarray:
    """``(label, list)`` of every vector an IVF holds."""
    lists = index.invlists
    labels, numbers = [], []
    for number in range(index.nlist):
        size = lists.list_size(number)
        if size:
            labels.append(faiss.rev_swig_ptr(lists.get_ids(number), size).copy())
            numbers.append(np.full(size, number, np.int32))
    pairs = np.empty(sum(len(x) for x in labels), [("label", "<u8"), ("list", "<i4")])
    if labels:
        pairs["label"], pairs["list"] = np.concatenate(labels), np.concatenate(numbers)
    return pairs


def _flat_vectors(index: Any, dim: int) -> np.ndarray:
    flat = faiss.downcast_index(index.index)
    return faiss.rev_swig_ptr(flat.get_xb(), flat.ntotal * dim).reshape(-1, dim).copy()


def _rows(vectors: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(vectors, dtype=np.float32)


def _fetched_ahead(
    labels: np.ndarray, fetch: Callable[[np.ndarray], np.ndarray]
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(chunk, its unit vectors)`` for ``labels`` in ``OPEN_CHUNK``s, the next chunk read
    from the records on a second thread while the caller adds this one (DuckDB's read and
    faiss's add both let go of the GIL: at a million vectors they overlap by about 1.3 s)."""
    chunks = [labels[i : i + OPEN_CHUNK] for i in range(0, len(labels), OPEN_CHUNK)]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ivf-open") as pool:
        ahead = pool.submit(lambda c: _unit_in_place(fetch(c)), chunks[0]) if chunks else None
        for number, chunk in enumerate(chunks):
            assert ahead is not None
            vectors = ahead.result()
            if number + 1 < len(chunks):
                ahead = pool.submit(lambda c: _unit_in_place(fetch(c)), chunks[number + 1])
            yield chunk, vectors


def _sorted_unique(labels: np.ndarray) -> np.ndarray:
    """``np.unique(labels)``, without its sort when they are sorted and unique already (the
    store gives them so: a million labels cost 0.8 s of sorting at start-up)."""
    if len(labels) < 2 or bool(np.all(labels[1:] > labels[:-1])):
        return labels
    return np.unique(labels)


def _unit_in_place(vectors: np.ndarray) -> np.ndarray:
    """``_unit`` of a float32 array nobody else holds, without a full-size temporary."""
    rows = _rows(vectors)
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))
    rows /= np.maximum(norms, 1e-12)[:, None]
    return rows


def _unit(vectors: np.ndarray) -> np.ndarray:
    rows = _rows(vectors)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
