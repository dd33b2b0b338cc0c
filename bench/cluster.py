"""How does the cloud endpoint scale with replicas over one lake? Throughput and recall.

Runs, side by side in one invocation on this machine:

- ``embedded``: one ``aimem serve --role cloud`` on its embedded DuckDB store;
- ``lake-N`` for N = 1, 2, 3: N ``aimem serve --role cloud --lake`` processes over one
  lake on SeaweedFS (``weed mini`` on 127.0.0.1, a real S3 server).

Every run gets the same load: ``--writers`` processes, spread round-robin over
the replicas, each storing one memory per call (a text and a 64-dimensional
vector, as an agent that embeds on its side would) for ``--seconds``; and one
reader process per replica recalling (hybrid, k=10) in a loop meanwhile. Two
layouts: ``shared`` (everyone on one tenant through every replica: each replica
applies every other's writes) and ``affinity`` (a tenant per writer, always
through the same replica, as a router by tenant would send them). The lake runs
also try ``--max-staleness-ms 250``. Each
run prints one JSON line: acknowledged memories/s, write latency, recall
latency under that load, and how many lake commits the writes took (group
commit). A last line times a cold start: a tenant of ``--cold-memories`` memories loaded
and compacted, then a new replica's first answer for it (its cache rebuilt from
the lake), with the lake's bytes per memory and the replica's cache bytes.

    .venv/bin/python bench/cluster.py > bench/results/cluster.jsonl
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from _common import base_parser, emit, latency_ms, log, quick  # noqa: E402
from support.s3_server import credentials_env, lake_uri, s3_server  # noqa: E402

BENCH = "cluster"
# Where the servers' logs are kept after a run (``--logs``): a stall can be read there.
LOGS: Path | None = None
TOKEN = "bench-token"
AIMEM = [sys.executable, "-c", "from aios_memory.client.cli import main; main()"]

_WORKER = r"""
import json, sys, time
import numpy as np
from aios_memory.client import MemoryClient
role, uri, name, seconds, tenant, token = sys.argv[1:7]
seconds = float(seconds)
client = MemoryClient(uri, token, tenant=tenant)
rng = np.random.default_rng(abs(hash(name)) % 2**32)
words = "kitchen garden boat river market school train letter doctor concert".split()
def vector():
    v = rng.normal(size=64)
    return (v / np.linalg.norm(v)).tolist()
latencies, errors, n = [], [], 0
stop = time.monotonic() + seconds
while time.monotonic() < stop:
    start = time.perf_counter()
    try:
        if role == "writer":
            text = f"{name} noted the {words[n % 10]} and the {words[(n * 7) % 10]}, entry {n}"
            client.remember(text, tier="long_term", embeddings=[vector()])
        else:
            client.recall(f"the {words[n % 10]} and the {words[(n * 3) % 10]}",
                          embedding=vector(), k=10)
        latencies.append(time.perf_counter() - start)
    except Exception as exc:  # counted, not hidden: a timeout is a result too
        errors.append(type(exc).__name__)
    n += 1
print(json.dumps({"latencies": latencies, "errors": errors}))
"""


def _wait_for_uri(proc: subprocess.Popen, log_path: Path) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = re.search(r"grpc://127\.0\.0\.1:\d+", log_path.read_text(errors="replace"))
        if found:
            return found.group(0)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError(f"no address from the server:\n{log_path.read_text()}")


@contextlib.contextmanager
def server(data: Path, lake: str | None, staleness_ms: float = 0) -> Iterator[str]:
    """One ``aimem serve --role cloud`` process (on the lake when given)."""
    data.mkdir(parents=True)
    log_path = data.parent / f"{data.name}.log"
    extra = ["--lake", lake, "--max-staleness-ms", str(staleness_ms)] if lake else []
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            [
                *AIMEM,
                "serve",
                "--data",
                str(data),
                "--port",
                "0",
                "--embedder",
                "none",
                "--role",
                "cloud",
                "--token",
                TOKEN,
                "--checkpoint-seconds",
                "0",
                *extra,
            ],
            stderr=out,
            env={**os.environ, **credentials_env()},
        )
    try:
        yield _wait_for_uri(proc, log_path)
    finally:
        proc.send_signal(signal.SIGUSR1)  # every thread's stack into the log, kept below
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
        if LOGS is not None:
            LOGS.mkdir(parents=True, exist_ok=True)
            (LOGS / log_path.name).write_bytes(log_path.read_bytes())


def load(uris: list[str], writers: int, seconds: float, layout: str) -> dict[str, Any]:
    """The writers and one reader per replica, all at once; their latencies. ``shared``:
    every writer and reader on one tenant, through every replica; ``affinity``: each
    writer its own tenant, always through the same replica (as a router by tenant would),
    each reader a tenant of its replica."""

    def tenant(i: int) -> str:
        return "bench" if layout == "shared" else f"t{i}"

    procs = [
        (
            "writer",
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _WORKER,
                    "writer",
                    uris[i % len(uris)],
                    f"w{i}",
                    str(seconds),
                    tenant(i),
                    TOKEN,
                ],
                stdout=subprocess.PIPE,
                text=True,
            ),
        )
        for i in range(writers)
    ]
    procs += [
        (
            "reader",
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _WORKER,
                    "reader",
                    uri,
                    f"r{i}",
                    str(seconds),
                    tenant(i),
                    TOKEN,
                ],
                stdout=subprocess.PIPE,
                text=True,
            ),
        )
        for i, uri in enumerate(uris)
    ]
    times: dict[str, list[float]] = {"writer": [], "reader": []}
    errors: dict[str, list[str]] = {"writer": [], "reader": []}
    for role, proc in procs:
        out, _ = proc.communicate(timeout=seconds + 300)
        report = json.loads(out.strip().splitlines()[-1])
        times[role] += report["latencies"]
        errors[role] += report["errors"]
    return {
        "acked_per_s": round(len(times["writer"]) / seconds, 1),
        "acked": len(times["writer"]),
        "write": latency_ms(times["writer"]),
        "recall": latency_ms(times["reader"]),
        "errors": {
            role: sorted(set(e)) and {name: e.count(name) for name in set(e)}
            for role, e in errors.items()
        },
    }


def lake_commits(lake: str) -> int:
    """Lance versions made in the lake: one per group commit (and one per dataset made)."""
    from aios_memory.flight_server.lake._log import TenantLog
    from aios_memory.flight_server.lake._objects import LakeObjects
    from aios_memory.flight_server.lake.uri import parse_lake

    location = parse_lake(lake)
    return sum(
        TenantLog(location, "", uri=f"{location.root}/tenants/{name}").latest_version()
        for name in LakeObjects(location).datasets("tenants")
    )


def cold_start(root: Path, lake: str, memories: int) -> dict[str, Any]:
    """Load ``memories`` into a tenant through one replica, compact, then time a new
    replica's first answer for it (its cache built from the lake) and the lake's bytes."""
    import numpy as np

    from aios_memory.client import MemoryClient
    from aios_memory.flight_server.lake.store import LakeStore
    from aios_memory.flight_server.lake.uri import parse_lake

    rng = np.random.default_rng(1)
    with server(root / "loader", lake) as uri:
        client = MemoryClient(uri, TOKEN, tenant="cold")
        for start in range(0, memories, 500):
            count = min(500, memories - start)
            vectors = rng.normal(size=(count, 64))
            client.remember(
                [
                    f"memory {start + i} of a long life, the river and the market"
                    for i in range(count)
                ],
                tier="long_term",
                embeddings=vectors / np.linalg.norm(vectors, axis=1, keepdims=True),
            )
    with contextlib.closing(LakeStore(parse_lake(lake), root / "compactor")) as store:
        store.compact_tenants(min_fragments=2)
        log_ = store.caught_up("cold").log
        lake_bytes = _dataset_bytes(log_.uri.removeprefix(parse_lake(lake).root + "/"), lake)
    with server(root / "cold", lake) as uri:
        client = MemoryClient(uri, TOKEN, tenant="cold")
        start = time.perf_counter()
        found = client.stats()["memories"]
        first = time.perf_counter() - start
        start = time.perf_counter()
        client.recall("the river", embedding=vectors[0].tolist(), k=10)
        recall_ms = (time.perf_counter() - start) * 1000
        cache_bytes = sum(p.stat().st_size for p in (root / "cold").rglob("*") if p.is_file())
    return {
        "memories": found,
        "first_answer_s": round(first, 3),
        "first_recall_ms": round(recall_ms, 2),
        "lake_bytes_per_memory": round(lake_bytes / found, 1),
        "replica_cache_bytes_per_memory": round(cache_bytes / found, 1),
    }


def _dataset_bytes(path: str, lake: str) -> int:
    import obstore

    from aios_memory.flight_server.lake._objects import _store_of
    from aios_memory.flight_server.lake.uri import parse_lake

    store = _store_of(parse_lake(lake))
    return sum(meta["size"] for chunk in obstore.list(store, path) for meta in chunk)


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--writers", type=int, default=6)
    parser.add_argument(
        "--cold-memories",
        type=int,
        default=20_000,
        help="memories in the tenant a new replica starts cold on",
    )
    parser.add_argument("--logs", type=Path, help="keep every server's log here")
    args = parser.parse_args()
    global LOGS
    LOGS = args.logs
    seconds = 5.0 if quick() else args.seconds
    for key, value in credentials_env().items():
        os.environ[key] = value
    with tempfile.TemporaryDirectory() as tmp, s3_server(Path(tmp) / "weed") as endpoint:
        root = Path(tmp)
        params = {"seconds": seconds, "writers": args.writers, "s3": "seaweedfs weed mini"}
        for layout in ("shared", "affinity"):
            log(f"embedded, {layout}")
            with server(root / f"embedded-{layout}", None) as uri:
                emit(
                    BENCH,
                    {**params, "mode": "embedded", "replicas": 1, "layout": layout},
                    kind="run",
                    **load([uri], args.writers, seconds, layout),
                )
            for replicas, staleness in ((1, 0), (2, 0), (3, 0), (1, 250), (3, 250)):
                log(f"lake, {replicas} replicas, {layout}, staleness {staleness} ms")
                lake = lake_uri(endpoint, f"bench-{layout}-{replicas}-{staleness}")
                with contextlib.ExitStack() as stack:
                    uris = [
                        stack.enter_context(
                            server(
                                root / f"lake-{layout}-{replicas}-{staleness}-{i}", lake, staleness
                            )
                        )
                        for i in range(replicas)
                    ]
                    result = load(uris, args.writers, seconds, layout)
                emit(
                    BENCH,
                    {
                        **params,
                        "mode": f"lake-{replicas}",
                        "replicas": replicas,
                        "layout": layout,
                        "max_staleness_ms": staleness,
                    },
                    kind="run",
                    lake_commits=lake_commits(lake),
                    **result,
                )
        lake = lake_uri(endpoint, "bench-cold")
        memories = 500 if quick() else args.cold_memories
        log(f"cold start, {memories} memories")
        emit(
            BENCH,
            {**params, "mode": "lake-cold-start", "memories": memories},
            kind="cold_start",
            **cold_start(root, lake, memories),
        )


if __name__ == "__main__":
    main()
