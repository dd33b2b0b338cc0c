"""Rows for search hits, kept in memory so recall never waits on a SQL point lookup.

Measured here: fetching 10 rows by ``seq`` from DuckDB costs about 2 ms even
through its ART index (about 0.1 ms a column), more than the hnswlib search
itself. Hits are looked up by ``seq``, which only grows, so appended Arrow
chunks and a sorted seq array answer with a binary search.

Each put appends a chunk, and Arrow's ``take`` over a chunked table costs what
concatenating its chunks costs (10 rows of 100,000: 0.013 ms at 1 chunk, 20 ms
at 1,000, 93 ms at 5,000, and about 20 ms already at 2 chunks of 20 MB). So rows
are taken from each chunk apart, and the chunks are merged like a binary
counter: a chunk is folded into the one before it while that one is at most
twice its size. Chunk sizes then at least double towards the front, there are
O(log n) of them, and each row is copied O(log n) times over its life
(bench/hit_cache.py).

Rows are cached without their embeddings (hits do not return vectors; ``get``
does): about 300 bytes a memory. Replaced and deleted rows stay until the
next reload but are never asked for, since the indexes only return live labels.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from aios_memory.schemas import HIT_SCHEMA, RECORD_SCHEMA

__all__ = ["HitCache", "CACHED_COLUMNS"]

CACHED_COLUMNS = [f.name for f in RECORD_SCHEMA if f.name not in ("embedding", "embedding_scale")]
_RELOAD_WHEN_DEAD = 0.5
# A chunk is merged into the one before it while that one holds at most this many times
# its rows: 2 keeps O(log2 n) chunks, each row copied O(log2 n) times.
_MERGE_RATIO = 2


class HitCache:
    """Record rows by ``seq``, loaded on first use from ``load()`` (rows ordered by seq).

    Readers take an immutable snapshot (table and seq array) under a short lock and
    work outside it, so concurrent ``take`` calls never wait on each other.
    """

    def __init__(self, load: Callable[[], pa.Table]) -> None:
        self._load = load
        self._lock = threading.Lock()
        self._chunks: list[pa.Table] = []  # each combined; sizes at least double frontwards
        self._table: pa.Table | None = None  # the chunks, concatenated (no copy)
        self._starts = np.zeros(1, np.int64)  # the row where each chunk starts
        self._seqs = np.empty(0, np.int64)
        self._replaced = 0

    @property
    def chunks(self) -> int:
        """How many Arrow chunks hold the rows (O(log n); for tests and benchmarks)."""
        with self._lock:
            return len(self._chunks)

    def warm(self) -> None:
        """Load the rows now (at start-up) instead of inside the first recall."""
        with self._lock:
            self._ensure()

    def _ensure(self) -> pa.Table:
        if self._table is None:
            table = self._load()
            self._seqs = table.column("seq").to_numpy().astype(np.int64)
            self._chunks = [_conform(table).combine_chunks()]
            self._table = self._chunks[0]
            self._starts = np.zeros(1, np.int64)
            self._replaced = 0
        return self._table

    def append(self, rows: pa.Table, replaced: int) -> None:
        """Rows just committed (with a ``seq`` column, increasing); ``replaced`` rows died."""
        with self._lock:
            if self._table is None:
                return  # not loaded yet: the load will read them from the store
            self._replaced += replaced
            if self._replaced > _RELOAD_WHEN_DEAD * max(len(self._seqs), 1):
                self._table, self._chunks = None, []  # mostly dead rows: reload lazily
                return
            seqs = rows.column("seq").to_numpy().astype(np.int64)
            fresh = seqs > (self._seqs[-1] if len(self._seqs) else 0)  # a load may have them
            if not fresh.any():
                return
            if not fresh.all():  # the usual put is all fresh: skip the kernel call
                rows = rows.filter(pa.array(fresh))
            self._push(_conform(rows).combine_chunks())
            self._seqs = np.concatenate([self._seqs, seqs[fresh]])

    def _push(self, chunk: pa.Table) -> None:
        chunks = self._chunks
        chunks.append(chunk)
        while len(chunks) > 1 and chunks[-2].num_rows <= _MERGE_RATIO * chunks[-1].num_rows:
            last = chunks.pop()
            chunks[-1] = pa.concat_tables([chunks[-1], last]).combine_chunks()
        self._table = pa.concat_tables(chunks)
        self._starts = np.cumsum([0] + [c.num_rows for c in chunks[:-1]], dtype=np.int64)

    def take(self, ranked: list[tuple[int, float]]) -> pa.Table:
        """HIT_SCHEMA rows in the order of ``ranked`` (seq, score); unknown seqs are skipped."""
        with self._lock:
            self._ensure()
            chunks, starts, seqs = list(self._chunks), self._starts, self._seqs
        wanted = np.asarray([seq for seq, _ in ranked], np.int64)
        positions = np.searchsorted(seqs, wanted)
        positions = np.minimum(positions, max(len(seqs) - 1, 0))
        found = (seqs[positions] == wanted) if len(seqs) else np.zeros(len(wanted), bool)
        picked = _take(chunks, starts, positions[found])
        scores = pa.array([s for (_, s), ok in zip(ranked, found, strict=True) if ok], pa.float64())
        n = picked.num_rows
        columns = [
            picked.column(f.name) if f.name in CACHED_COLUMNS else pa.nulls(n, f.type)
            for f in RECORD_SCHEMA
        ]
        return pa.Table.from_arrays([*columns, scores], schema=HIT_SCHEMA)


def _conform(rows: pa.Table) -> pa.Table:
    fields = [RECORD_SCHEMA.field(name) for name in CACHED_COLUMNS]
    return pa.Table.from_arrays(
        [rows.column(f.name).cast(f.type) for f in fields], schema=pa.schema(fields)
    )


def _take(chunks: list[pa.Table], starts: np.ndarray, positions: np.ndarray) -> pa.Table:
    """Rows at ``positions`` of the chunks laid end to end, in that order, each taken from
    its own chunk (a take over a chunked table would concatenate every chunk first)."""
    which = np.searchsorted(starts, positions, side="right") - 1
    if len(chunks) == 1 or not len(positions):
        return chunks[0].take(pa.array(positions, pa.int64())) if chunks else pa.table({})
    parts, order = [], []
    for chunk in np.unique(which):
        at = np.flatnonzero(which == chunk)
        parts.append(chunks[chunk].take(pa.array(positions[at] - starts[chunk], pa.int64())))
        order.append(at)
    taken = pa.concat_tables(parts).combine_chunks()
    return taken.take(pa.array(np.argsort(np.concatenate(order), kind="stable"), pa.int64()))
