"""How many memories per second does ``remember`` store? Batched against one by one.

Each method writes into its own fresh server (so no method pays for another's
index), and the methods take turns for ``--rounds`` rounds, so machine noise
falls on all of them alike. Vectors (clustered 384-d, seeded) are supplied by
the caller, server embedder ``none``; ``remember_many`` (the ``aimem import``
path) runs with vectors on its ``MemoryInput`` items, text-only, and text-only with
the server's local embedder.

Example::

    .venv/bin/python bench/ingest.py --rows 20000 --one-by-one 500 --rounds 3
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    base_parser,
    connect,
    dir_bytes,
    emit,
    latency_ms,
    log,
    quick,
    running_server,
    wait_until_indexed,
)
from _vectors import Dataset, make_dataset  # noqa: E402

TARGET_PER_S = 3000.0


def batched(client: Any, data: Dataset, count: int, batch: int) -> list[float]:
    """``remember`` of lists of ``batch`` texts with their vectors; seconds per call."""
    calls = []
    for first in range(0, count, batch):
        last = min(first + batch, count)
        start = time.perf_counter()
        client.remember(
            data.texts[first:last],
            embeddings=data.vectors[first:last],
            metadata={"source": "bench"},
        )
        calls.append(time.perf_counter() - start)
    return calls


def one_by_one(client: Any, data: Dataset, count: int) -> list[float]:
    """``remember`` of one text (and its vector) per call; seconds per call."""
    calls = []
    for row in range(count):
        start = time.perf_counter()
        client.remember(
            data.texts[row], embeddings=[data.vectors[row]], metadata={"source": "bench"}
        )
        calls.append(time.perf_counter() - start)
    return calls


def many(client: Any, data: Dataset, count: int, batch: int, vectors: bool = False) -> list[float]:
    """``remember_many`` of ``MemoryInput`` items, with their vectors or (``vectors=False``)
    text only, for the server to embed or not."""
    from aios_memory.client import MemoryInput

    items = [
        MemoryInput(
            text=t, metadata={"source": "bench"}, embedding=data.vectors[i] if vectors else None
        )
        for i, t in enumerate(data.texts[:count])
    ]
    start = time.perf_counter()
    client.remember_many(items, batch_size=batch)
    return [time.perf_counter() - start]


def run_method(
    name: str, fn: Callable[[Any], list[float]], rows: int, embedder: str, index: str
) -> dict:
    """One method against a fresh server: rate over the whole run, per-call latency, and
    the data directory's bytes once the server has stopped (and saved its indexes)."""
    with tempfile.TemporaryDirectory(prefix="aimem-ingest-") as folder:
        with (
            running_server(
                folder, embedder=embedder, checkpoint_seconds=0, vector_index=index
            ) as running,
            connect(running, timeout=600.0) as client,
        ):
            start = time.perf_counter()
            calls = fn(client)
            total = time.perf_counter() - start
            graph = wait_until_indexed(client)
            stored = client.stats()
        on_disk, _ = dir_bytes(folder)
    log(
        f"    {name}: {rows / total:,.0f}/s acknowledged, {rows / (total + graph):,.0f}/s in "
        f"graph, {on_disk / rows:,.0f} bytes a memory"
    )
    return {
        "bytes_per_memory": on_disk / rows,
        "per_s": rows / total,
        "per_s_graph": rows / (total + graph),
        "seconds": total,
        "graph_catch_up_s": graph,
        "calls": calls,
        "stats": stored,
    }


Method = tuple[Callable[[Any], list[float]], int, str, str]


def plan(args: Any, data: Dataset) -> dict[str, Method]:
    """Methods by name: (function of the client, rows it writes, server embedder, vector
    index kind); each method once per ``--vector-index`` kind, the kind in its name."""
    methods = {}
    wanted = set(args.methods.split(",")) if args.methods else None
    for index in args.vector_index.split(","):
        for name, (fn, rows, embedder) in _methods(args, data).items():
            if wanted is None or name in wanted:
                methods[f"{name}/{index}"] = (fn, rows, embedder, index)
    return methods


def _methods(args: Any, data: Dataset) -> dict[str, tuple[Callable[[Any], list[float]], int, str]]:
    n, batch, single = args.rows, args.batch, args.one_by_one
    return {
        f"remember_batch{batch}_vectors": (lambda c: batched(c, data, n, batch), n, "none"),
        f"remember_many_batch{batch}_vectors": (
            lambda c: many(c, data, n, batch, vectors=True),
            n,
            "none",
        ),
        f"remember_many_batch{batch}_text_only": (lambda c: many(c, data, n, batch), n, "none"),
        "remember_one_by_one_vectors": (lambda c: one_by_one(c, data, single), single, "none"),
        f"remember_many_batch{batch}_local_embedder": (
            lambda c: many(c, data, args.embedded_rows, batch),
            args.embedded_rows,
            "local",
        ),
    }


def summarize(name: str, runs: list[dict], rows: int, embedder: str, params: dict) -> None:
    """One JSON line for a method over its rounds."""
    rates = [r["per_s"] for r in runs]
    with_graph = [r["per_s_graph"] for r in runs]
    calls = [c for r in runs for c in r["calls"]]
    emit(
        "ingest",
        {**params, "method": name, "rows": rows, "embedder": embedder},
        method=name,
        rows=rows,
        memories_per_s_median=round(statistics.median(rates), 1),
        memories_per_s_each_round=[round(r, 1) for r in rates],
        memories_per_s_with_graph_median=round(statistics.median(with_graph), 1),
        graph_catch_up_s=[round(r["graph_catch_up_s"], 2) for r in runs],
        bytes_per_memory=[round(r["bytes_per_memory"], 1) for r in runs],
        per_call=latency_ms(calls),
        meets_target=statistics.median(rates) >= TARGET_PER_S,
        server_stats=runs[-1]["stats"],
    )


def main() -> None:
    """Run every method ``--rounds`` times, in turn."""
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20000, help="rows for the batched methods")
    parser.add_argument("--batch", type=int, default=1000, help="texts per remember call")
    parser.add_argument("--one-by-one", type=int, default=500, help="rows written one per call")
    parser.add_argument(
        "--embedded-rows",
        type=int,
        default=2000,
        help="rows for remember_many with the server's local embedder",
    )
    parser.add_argument("--rounds", type=int, default=3, help="times each method runs")
    parser.add_argument(
        "--vector-index", default="hnsw,ivf", help="the server's vector index kinds, side by side"
    )
    parser.add_argument("--methods", default="", help="comma-separated method names (default all)")
    parser.add_argument("--seed", type=int, default=0, help="data seed")
    args = parser.parse_args()
    if quick():
        args.rows, args.one_by_one, args.embedded_rows, args.rounds = 2000, 100, 128, 1
    data = make_dataset(args.rows, 1, seed=args.seed)
    methods = plan(args, data)
    runs: dict[str, list[dict]] = {name: [] for name in methods}
    for round_number in range(args.rounds):
        log(f"round {round_number + 1}/{args.rounds}")
        for name, (fn, rows, embedder, index) in methods.items():
            runs[name].append(run_method(name, fn, rows, embedder, index))
    params = {
        "batch": args.batch,
        "rounds": args.rounds,
        "dim": data.vectors.shape[1],
        "seed": args.seed,
    }
    for name, (_, rows, embedder, index) in methods.items():
        summarize(name, runs[name], rows, embedder, {**params, "vector_index": index})


if __name__ == "__main__":
    main()
