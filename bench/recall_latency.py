"""How fast is ``recall`` through Flight, and is it right? Beside raw hnswlib and a bare round trip.

For each size: ingest seeded clustered 384-d unit vectors (embeddings supplied,
server embedder ``none``), build the same hnswlib graph in process, then ask the
same queries of every method in turn (so machine noise falls on all alike):
a bare Flight round trip (``health``), ``recall(embedding=..., mode="vector")``,
raw ``knn_query`` at k=10 and at the server's candidate depth, a hybrid recall
(text + vector) and filtered recalls on a metadata key matching ~10% of rows.
Recall@10 is measured against exact brute force on the original vectors.

Example::

    .venv/bin/python bench/recall_latency.py --sizes 10000,100000 --queries 1000
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    base_parser,
    connect,
    emit,
    latency_ms,
    log,
    quick,
    running_server,
    wait_until_indexed,
)
from _vectors import GROUPS, Dataset, exact_top_k, int8_roundtrip, make_dataset, overlap_at_k  # noqa: E402

K = 10
SERVER_DEPTH = 50  # the store asks the graph for max(2k, 50) candidates before fusing
WARMUP = 20
TARGET_P99_MS = 10.0


def ingest(client: Any, data: Dataset, batch: int) -> tuple[float, dict[str, int]]:
    """Write every row with its vector, ``batch`` per call; seconds taken and id -> row."""
    ids: list[str] = []
    start = time.perf_counter()
    for first in range(0, len(data.texts), batch):
        last = first + batch
        metadata = [{"group": int(g)} for g in data.groups[first:last]]
        ids += client.remember(
            data.texts[first:last], embeddings=data.vectors[first:last], metadata=metadata
        )
        if first // batch % 20 == 0:
            log(f"    ingested {len(ids)}")
    return time.perf_counter() - start, {memory_id: row for row, memory_id in enumerate(ids)}


def build_hnswlib(data: Dataset, m: int, ef_construction: int, ef: int) -> tuple[Any, float]:
    """The same graph the server builds (cosine, same M/ef), in process; index and seconds."""
    import hnswlib

    start = time.perf_counter()
    index = hnswlib.Index(space="cosine", dim=data.vectors.shape[1])
    index.init_index(max_elements=len(data.vectors), M=m, ef_construction=ef_construction)
    index.set_num_threads(2)
    index.add_items(data.vectors, np.arange(len(data.vectors)))
    index.set_ef(ef)
    index.set_num_threads(1)
    return index, time.perf_counter() - start


def methods(
    client: Any, raw: Any, data: Dataset, rows: dict[str, int]
) -> dict[str, Callable[[int], list[int] | None]]:
    """Each method as a function of the query number returning row numbers (None: no rows)."""

    def hits_rows(hits: list[Any]) -> list[int]:
        return [rows[h.id] for h in hits]

    def where(i: int) -> dict[str, int]:
        return {"group": i % GROUPS}

    return {
        "flight_health": lambda i: (client.health(), None)[1],
        "server_vector": lambda i: hits_rows(
            client.recall(embedding=data.queries[i], k=K, mode="vector")
        ),
        "hnswlib_k10": lambda i: raw.knn_query(data.queries[i], k=K)[0][0].tolist(),
        f"hnswlib_k{SERVER_DEPTH}": lambda i: raw.knn_query(data.queries[i], k=SERVER_DEPTH)[0][0][
            :K
        ].tolist(),
        "server_hybrid": lambda i: hits_rows(
            client.recall(data.query_texts[i], embedding=data.queries[i], k=K, mode="hybrid")
        ),
        "server_vector_filtered": lambda i: hits_rows(
            client.recall(embedding=data.queries[i], k=K, mode="vector", where=where(i))
        ),
        "server_hybrid_filtered": lambda i: hits_rows(
            client.recall(
                data.query_texts[i], embedding=data.queries[i], k=K, mode="hybrid", where=where(i)
            )
        ),
    }


def run_round_robin(
    fns: dict[str, Callable[[int], Any]], queries: int
) -> tuple[dict[str, list[float]], dict[str, list[Any]]]:
    """Every method on query 0, then every method on query 1, ...: durations and results."""
    for i in range(min(WARMUP, queries)):
        for fn in fns.values():
            fn(i)
    durations: dict[str, list[float]] = {name: [] for name in fns}
    results: dict[str, list[Any]] = {name: [] for name in fns}
    for i in range(queries):
        for name, fn in fns.items():
            start = time.perf_counter()
            found = fn(i)
            durations[name].append(time.perf_counter() - start)
            results[name].append(found)
    return durations, results


def int8_ceiling(data: Dataset, plain: np.ndarray) -> float:
    """Recall@10 of exact search over int8-rounded vectors: the best the server can do."""
    return overlap_at_k(
        exact_top_k(int8_roundtrip(data.vectors), data.queries, K).tolist(), plain, K
    )


def truths(data: Dataset) -> dict[str, np.ndarray]:
    """Exact top-k per query, unfiltered and within the query's filter group."""
    plain = exact_top_k(data.vectors, data.queries, K)
    filtered = np.vstack(
        [
            exact_top_k(
                data.vectors, data.queries[i : i + 1], K, np.flatnonzero(data.groups == i % GROUPS)
            )
            for i in range(len(data.queries))
        ]
    )
    return {"plain": plain, "filtered": filtered}


def measure_size(n: int, args: Any) -> None:
    """Ingest ``n`` rows, run every method, print one line per method."""
    log(f"size {n}: generating data")
    data = make_dataset(n, args.queries, seed=args.seed)
    truth = truths(data)
    hnsw = {
        "hnsw_m": args.m,
        "hnsw_ef_construction": args.ef_construction,
        "hnsw_ef_search": args.ef,
        "vector_index": args.vector_index,
    }
    params = {
        "size": n,
        "queries": args.queries,
        "k": K,
        "dim": data.vectors.shape[1],
        "centres": 200,
        "groups": GROUPS,
        "batch": args.batch,
        "seed": args.seed,
        **hnsw,
    }
    with (
        running_server(embedder="none", checkpoint_seconds=0, **hnsw) as running,
        connect(running, timeout=600.0) as client,
    ):
        log(f"size {n}: ingesting through Flight")
        ingest_s, rows = ingest(client, data, args.batch)
        log(f"size {n}: acknowledged in {ingest_s:.1f} s; waiting for the graph")
        graph_s = wait_until_indexed(client)
        log(f"size {n}: building raw hnswlib")
        raw, build_s = build_hnswlib(data, args.m, args.ef_construction, args.ef)
        emit(
            "recall_latency",
            params,
            method="build",
            size=n,
            server_ingest_s=round(ingest_s, 2),
            server_memories_per_s=round(n / ingest_s, 1),
            server_graph_catch_up_s=round(graph_s, 2),
            server_memories_per_s_with_graph=round(n / (ingest_s + graph_s), 1),
            hnswlib_build_s=round(build_s, 2),
            **{"int8_exact_recall@10_vs_exact": int8_ceiling(data, truth["plain"])},
        )
        log(f"size {n}: {args.queries} queries x 7 methods, round robin")
        durations, results = run_round_robin(methods(client, raw, data, rows), args.queries)
    report(params, durations, results, truth)


def report(
    params: dict[str, Any],
    durations: dict[str, list[float]],
    results: dict[str, list[Any]],
    truth: dict[str, np.ndarray],
) -> None:
    """One JSON line per method: latency, and recall@10 against exact search where defined."""
    for name, seconds in durations.items():
        extra: dict[str, Any] = {}
        if name in ("server_vector", "hnswlib_k10", f"hnswlib_k{SERVER_DEPTH}"):
            extra["recall@10_vs_exact"] = overlap_at_k(results[name], truth["plain"], K)
        if name == "server_vector_filtered":
            extra["recall@10_vs_exact"] = overlap_at_k(results[name], truth["filtered"], K)
        if name.endswith("filtered"):
            extra["filtered_hits_per_query"] = round(
                float(np.mean([len(r) for r in results[name]])), 2
            )
        stats = latency_ms(seconds)
        if name.startswith("server_vector"):
            extra["meets_p99_target"] = stats["p99_ms"] < TARGET_P99_MS
        emit("recall_latency", params, method=name, size=params["size"], **stats, **extra)


def main() -> None:
    """Run every size in ``--sizes``."""
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated row counts")
    parser.add_argument("--queries", type=int, default=1000, help="queries per method")
    parser.add_argument("--batch", type=int, default=1000, help="rows per remember call")
    parser.add_argument("--m", type=int, default=16, help="hnsw M (server and raw)")
    parser.add_argument("--ef-construction", type=int, default=200, help="hnsw ef_construction")
    parser.add_argument("--ef", type=int, default=64, help="hnsw ef at search time")
    parser.add_argument("--seed", type=int, default=0, help="data seed")
    parser.add_argument(
        "--vector-index", default="hnsw", choices=("hnsw", "ivf"), help="the server's vector index"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if quick():
        sizes, args.queries = [2000], 50
    for n in sizes:
        measure_size(n, args)


if __name__ == "__main__":
    main()
