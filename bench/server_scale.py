"""One tenant of ``--rows`` memories in one server: ingest, bytes, RSS, start-up, recall.

The server runs as its own process (``aimem serve``, embedder ``none``), so its RSS is
its own (``/proc/PID/status``: VmRSS now, VmHWM the peak). The vectors are the seeded
clustered 384-d set of ``_vectors.py`` with short made-up texts and a ``group`` key that
keeps 10% of the rows; they are made before anything is timed. Steps, each timed:

1. ingest through Flight in puts of ``--batch`` (vectors supplied), until acknowledged and
   until no vector is pending in the index;
2. stop (the server saves its indexes), then the data directory's bytes;
3. start again: seconds from the process's start to the first answered vector recall;
4. ``--queries`` queries one at a time, taking turns: a bare round trip (``health``),
   vector, vector filtered, hybrid, hybrid filtered; recall@10 against exact float32.

``--work DIR`` keeps the data directory: a later run with the same ``--rows`` skips step 1
(resumable: a run killed during the ingest starts it again).

Example::

    .venv/bin/python bench/server_scale.py --rows 1000000 --vector-index ivf --work /tmp/scale-1m
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import base_parser, dir_bytes, emit, latency_ms, log, quick  # noqa: E402
from _vectors import GROUPS, exact_top_k, make_dataset, overlap_at_k  # noqa: E402

K = 10
TOKEN = "bench-scale-secret"
DONE_MARK = "ingested.txt"  # written once every row is acknowledged and in the index


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server(data_dir: Path, index: str) -> Iterator[tuple[subprocess.Popen[bytes], str, float]]:
    """``aimem serve`` on ``data_dir``: (process, uri, monotonic time it was spawned)."""
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("aimem")), "serve", "--data", str(data_dir),
        "--port", str(port), "--embedder", "none", "--token", TOKEN,
        "--vector-index", index, "--checkpoint-seconds", "0",
    ]  # fmt: skip
    spawned = time.monotonic()
    log_file = open(data_dir.parent / f"{data_dir.name}-serve.log", "ab")  # noqa: SIM115
    process = subprocess.Popen(command, stdout=log_file, stderr=log_file)
    try:
        yield process, f"grpc://127.0.0.1:{port}", spawned
    finally:
        process.terminate()
        process.wait(600)
        log_file.close()


def client_for(uri: str) -> Any:
    from aios_memory.client import MemoryClient

    return MemoryClient(uri, TOKEN, timeout=600.0)


def first_answer(uri: str, query: np.ndarray, spawned: float) -> float:
    """Seconds from the spawn until a vector recall is answered (polling every 50 ms)."""
    while True:
        try:
            with client_for(uri) as client:
                client.recall(embedding=query, k=K, mode="vector")
            return time.monotonic() - spawned
        except Exception:  # not listening yet, or still opening its store
            if time.monotonic() - spawned > 600:
                raise
            time.sleep(0.05)


def rss_mib(process: subprocess.Popen[bytes]) -> dict[str, float]:
    """The server's resident memory now and at its peak, MiB."""
    fields = {}
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = round(int(value.split()[0]) / 1024, 1)
    return {"rss_mib": fields.get("VmRSS", 0.0), "peak_rss_mib": fields.get("VmHWM", 0.0)}


def ingest(uri: str, data: Any, batch: int) -> dict[str, Any]:
    """Every row through Flight; acknowledged and in-index rates."""
    from _common import wait_until_indexed

    with client_for(uri) as client:
        start = time.perf_counter()
        for first in range(0, len(data.texts), batch):
            last = first + batch
            client.remember(
                data.texts[first:last],
                embeddings=data.vectors[first:last],
                metadata=[{"group": int(g)} for g in data.groups[first:last]],
                tier="long_term",
            )
            if first // batch % 100 == 0:
                log(f"    ingested {last:,}")
        acked = time.perf_counter() - start
        in_index = acked + wait_until_indexed(client)
    n = len(data.texts)
    return {"acked_per_s": round(n / acked, 1), "in_index_per_s": round(n / in_index, 1)}


def queries(client: Any, data: Any) -> dict[str, Callable[[int], list[str] | None]]:
    """Each recall as a function of the query number: the hits' texts (None: no hits)."""

    def where(i: int) -> dict[str, int]:
        return {"group": i % GROUPS}

    def texts(hits: list[Any]) -> list[str]:
        return [h.text for h in hits]

    q, words = data.queries, data.query_texts
    return {
        "flight_health": lambda i: (client.health(), None)[1],
        "vector": lambda i: texts(client.recall(embedding=q[i], k=K, mode="vector")),
        "vector_filtered": lambda i: texts(
            client.recall(embedding=q[i], k=K, mode="vector", where=where(i))
        ),
        "hybrid": lambda i: texts(client.recall(words[i], embedding=q[i], k=K)),
        "hybrid_filtered": lambda i: texts(
            client.recall(words[i], embedding=q[i], k=K, where=where(i))
        ),
    }


def measure_queries(uri: str, data: Any, count: int) -> dict[str, dict[str, Any]]:
    """Every method on each query in turn; latency, and recall@10 where exact is defined."""
    row_of = {text: row for row, text in enumerate(data.texts)}  # texts are unique enough
    with client_for(uri) as client:
        fns = queries(client, data)
        seconds: dict[str, list[float]] = {name: [] for name in fns}
        found: dict[str, list[list[int]]] = {name: [] for name in fns}
        for i in range(count):
            for name, fn in fns.items():
                start = time.perf_counter()
                hits = fn(i)
                seconds[name].append(time.perf_counter() - start)
                found[name].append([row_of.get(t, -1) for t in hits or []])
    out = {name: latency_ms(s) for name, s in seconds.items()}
    plain = exact_top_k(data.vectors, data.queries[:count], K)
    out["vector"]["recall@10_vs_exact"] = overlap_at_k(found["vector"], plain, K)
    filtered = [
        exact_top_k(
            data.vectors, data.queries[i : i + 1], K, np.flatnonzero(data.groups == i % GROUPS)
        )[0]
        for i in range(count)
    ]
    out["vector_filtered"]["recall@10_vs_exact"] = overlap_at_k(
        found["vector_filtered"], np.array(filtered), K
    )
    return out


def main() -> None:
    """Ingest (unless ``--work`` already holds it), stop, start, ask."""
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="memories in the one tenant")
    parser.add_argument("--queries", type=int, default=500, help="queries per method")
    parser.add_argument("--batch", type=int, default=1000, help="memories per put")
    parser.add_argument("--vector-index", default="ivf", choices=("hnsw", "ivf"))
    parser.add_argument("--work", default="", help="keep the data directory here (resumable)")
    parser.add_argument("--seed", type=int, default=0, help="data seed")
    args = parser.parse_args()
    if quick():
        args.rows, args.queries = 5000, 50
    params = {k: getattr(args, k) for k in ("rows", "queries", "batch", "vector_index", "seed")}
    log(f"making {args.rows:,} vectors and texts")
    data = make_dataset(args.rows, args.queries, seed=args.seed)
    with contextlib.ExitStack() as stack:
        work = Path(args.work or stack.enter_context(tempfile.TemporaryDirectory()))
        data_dir = work / f"data-{args.vector_index}-{args.rows}"
        run(data, data_dir, args, params)


def run(data: Any, data_dir: Path, args: Any, params: dict[str, Any]) -> None:
    if not (data_dir / DONE_MARK).exists():
        shutil.rmtree(data_dir, ignore_errors=True)
        data_dir.mkdir(parents=True)
        with server(data_dir, args.vector_index) as (process, uri, spawned):
            first_answer(uri, data.queries[0], spawned)
            log(f"ingesting {args.rows:,} into {data_dir}")
            rates = ingest(uri, data, args.batch)
            memory = rss_mib(process)
            stop_started = time.monotonic()
        stop_s = time.monotonic() - stop_started
        (data_dir / DONE_MARK).write_text(f"{rates}\n")
        emit("server_scale", params, step="ingest", **rates, **memory, stop_s=round(stop_s, 2))
    total, files = dir_bytes(data_dir)
    parts: dict[str, int] = {}
    for name, size in files.items():
        part = "vectors" if "/vectors/" in name else "keyword" if "/keyword/" in name else name
        parts[part] = parts.get(part, 0) + size
    per_memory = {k: round(v / args.rows, 1) for k, v in parts.items() if v >= args.rows}
    emit("server_scale", params, step="bytes", bytes_per_memory=round(total / args.rows, 1),
         parts=per_memory)  # fmt: skip
    with server(data_dir, args.vector_index) as (process, uri, spawned):
        start_s = first_answer(uri, data.queries[0], spawned)
        after_start = rss_mib(process)
        log(f"first answer {start_s:.2f} s after the start; asking {args.queries} x 5")
        results = measure_queries(uri, data, args.queries)
        after_queries = rss_mib(process)
    emit("server_scale", params, step="start", first_answer_s=round(start_s, 2), **after_start)
    for name, stats in results.items():
        emit("server_scale", params, step="recall", method=name, **stats, **after_queries)


if __name__ == "__main__":
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    main()
