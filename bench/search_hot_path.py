"""Recall under one-at-a-time writes, and recall from several threads (issue 16, item 1).

One JSON line per result (``bench`` = ``search_hot_path``), told apart by ``kind``:

- ``after_put``: p50/p95 of a recall (``mode`` vector, filtered, hybrid, keyword) over an
  in-process ``DuckDBStore`` of ``--memories`` memories, without writes and with one
  single-memory put before each recall;
- ``threads``: searches a second with 1 and with 4 threads (vector recall with a supplied
  query vector, no embedder), and their ratio.

The store's own code is whatever ``aios_memory`` this Python imports, so running the script
with two environments compares two versions side by side (``code_under_test`` says which:
the commit of the checkout that package comes from)::

    for py in BEFORE/.venv/bin/python .venv/bin/python; do
        $py bench/search_hot_path.py; done > bench/results/search_hot_path.jsonl
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from _common import emit, latency_ms, log, quick  # noqa: E402
from support.stores import memories, search, write  # noqa: E402

import aios_memory.flight_server as server_package  # noqa: E402
from aios_memory.flight_server.store.duckdb_store import DuckDBStore  # noqa: E402

DIM = 64
WORDS = [
    "apple",
    "river",
    "stone",
    "cloud",
    "violin",
    "garden",
    "tiger",
    "lamp",
    "ocean",
    "maple",
    "copper",
    "winter",
]


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def texts(rng: np.random.Generator, n: int) -> list[str]:
    return [" ".join(rng.choice(WORDS, 6)) + f" note{i}" for i in range(n)]


def fill(store: DuckDBStore, rng: np.random.Generator, n: int) -> None:
    for start in range(0, n, 5000):
        m = min(5000, n - start)
        groups = [{"group": "ab"[i % 2]} for i in range(m)]
        write(store, memories(texts(rng, m), unit(rng, m), metadata=groups))
    store._search._indexes.flush()  # every vector in its graph before timing


REQUESTS = {
    "vector": dict(mode="vector", k=10),
    "filtered": dict(mode="vector", k=10, where={"group": "a"}),
    "hybrid": dict(query="violin garden", k=10),
    "keyword": dict(query="violin garden", mode="keyword", k=10),
}


def after_put(store: DuckDBStore, rng: np.random.Generator, reads: int, params: dict) -> None:
    for mode, request in REQUESTS.items():
        for with_put in (False, True):
            times = []
            for _ in range(reads):
                if with_put:
                    write(store, memories(texts(rng, 1), unit(rng, 1), metadata=[{"group": "a"}]))
                query = unit(rng, 1)[0] if mode != "keyword" else None
                t0 = time.perf_counter()
                search(store, query, **request)
                times.append(time.perf_counter() - t0)
            stats = latency_ms(times)
            log(f"{mode} put_before_each={with_put}: {stats}")
            emit(
                "search_hot_path",
                params,
                kind="after_put",
                mode=mode,
                put_before_each=with_put,
                **stats,
            )


def threads(store: DuckDBStore, rng: np.random.Generator, total: int, params: dict) -> None:
    queries = unit(rng, total)
    rates = {}
    for n in (1, 4):

        def run(part: int, n: int = n) -> None:
            for q in queries[part::n]:
                search(store, q, mode="vector", k=10)

        workers = [threading.Thread(target=run, args=(p,)) for p in range(n)]
        t0 = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        rates[n] = total / (time.perf_counter() - t0)
        log(f"{n} threads: {rates[n]:.0f} searches/s")
    emit(
        "search_hot_path",
        params,
        kind="threads",
        per_second_1=round(rates[1], 1),
        per_second_4=round(rates[4], 1),
        ratio_4_to_1=round(rates[4] / rates[1], 3),
    )


def _package_commit() -> str:
    """The commit of the checkout this Python's ``aios_memory`` comes from (not a path:
    results must not name this machine's folders)."""
    folder = Path(server_package.__file__).parent
    done = subprocess.run(
        ["git", "-C", str(folder), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def main() -> None:
    n = 2_000 if quick() else 20_000
    params = {"memories": n, "dim": DIM, "code_under_test": _package_commit()}
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        store = DuckDBStore(Path(tmp) / "data")
        try:
            fill(store, rng, n)
            after_put(store, rng, 30 if quick() else 150, params)
            threads(store, rng, 200 if quick() else 2000, params)
        finally:
            store.close()


if __name__ == "__main__":
    main()
