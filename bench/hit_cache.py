"""Does the hit cache's ``take`` slow down with the number of single-row writes?

One JSON line per (cache, appends): the p50 of ``take`` of 10 random rows over a
cache of ``base`` loaded rows after that many single-row appends, for the
consolidating ``HitCache`` and for ``OneChunkPerWrite`` (the cache before issue 16,
which added one Arrow chunk per write), side by side in one run (the old one only up
to 1,000 appends: each of its appends costs O(chunks)).

Example::

    .venv/bin/python bench/hit_cache.py > bench/results/hit_cache.jsonl
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, log, quick  # noqa: E402

from aios_memory.flight_server.search._hit_cache import CACHED_COLUMNS, HitCache
from aios_memory.schemas import RECORD_SCHEMA

OLD_MAX_APPENDS = 1_000


class OneChunkPerWrite(HitCache):
    """The old behaviour: every append concatenates one more chunk."""

    def _push(self, chunk: pa.Table) -> None:
        assert self._table is not None
        self._table = pa.concat_tables([self._table, chunk])
        self._chunks = [self._table]


def rows(first_seq: int, n: int) -> pa.Table:
    seqs = np.arange(first_seq, first_seq + n, dtype=np.int64)
    columns: dict[str, pa.Array] = {"seq": pa.array(seqs)}
    for name in CACHED_COLUMNS:
        kind = RECORD_SCHEMA.field(name).type
        if pa.types.is_string(kind):
            columns[name] = pa.array([f"{name}-{s}" for s in seqs], kind)
        elif pa.types.is_integer(kind):
            columns[name] = pa.array(seqs % 200, kind)
        elif pa.types.is_boolean(kind):
            columns[name] = pa.array(np.zeros(n, bool))
        elif pa.types.is_binary(kind):
            columns[name] = pa.array([b"x" * 200] * n, kind)
        else:
            columns[name] = pa.nulls(n, kind)
    return pa.table(columns)


def p50_take(cache: HitCache, top: int, repeats: int) -> float:
    rng = np.random.default_rng(0)
    times = []
    for _ in range(repeats):
        ranked = [(int(s), 1.0) for s in rng.integers(1, top + 1, 10)]
        t0 = time.perf_counter()
        cache.take(ranked)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1000


def main() -> None:
    base = 2_000 if quick() else 100_000
    checkpoints = [1, 1_000] if quick() else [1, 1_000, 10_000]
    loaded = rows(1, base)
    caches = {
        "consolidated": HitCache(lambda: loaded),
        "one_chunk_per_write": OneChunkPerWrite(lambda: loaded),
    }
    for cache in caches.values():
        cache.warm()
    done, seq = 0, base + 1
    for target in checkpoints:
        while done < target:
            one = rows(seq, 1)
            for cache in caches.values():
                cache.append(one, 0)
            done, seq = done + 1, seq + 1
        for name, cache in caches.items():
            ms = p50_take(cache, seq - 1, 50)
            table = cache._table
            chunks = table.column(0).num_chunks if table is not None else 0
            log(f"{name}: {done} appends, {chunks} chunks, take p50 {ms:.3f} ms")
            emit(
                "hit_cache",
                {"base_rows": base, "take_rows": 10},
                cache=name,
                appends=done,
                chunks=chunks,
                take_p50_ms=round(ms, 4),
            )
        if done >= OLD_MAX_APPENDS:
            # Each append to the old cache costs O(chunks): 10,000 took many minutes here.
            caches.pop("one_chunk_per_write", None)


if __name__ == "__main__":
    main()
