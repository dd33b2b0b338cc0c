"""One memory per call: how close the server comes to DuckDB's own single-row commit rate.

Three figures, side by side in one run on the same disk (``--dir``, default a temp folder):

- ``duckdb``: DuckDB alone, one ``INSERT`` + ``COMMIT`` per transaction into the store's own
  ``records`` table (``_database.connect``), from one thread;
- ``clients-1``: one client process calling ``remember`` (one memory, its vector supplied)
  through a real ``aimem serve --embedder none``;
- ``clients-N``: N client processes (default 8) doing the same at once.

The server's store holds ``--prefill`` memories first (the issue measured at 100k).

Targets (issue 16): clients-1 at least 50% of duckdb; clients-8 at least 5x clients-1. Every
line carries the load average (``/proc/loadavg``): on a shared machine, read the ratios.
Rounds alternate the three so that a burst of outside load does not land on one alone.

    .venv/bin/python bench/single_writes.py --seconds 10 --rounds 2
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
from _common import base_parser, emit, log, quick  # noqa: E402

BENCH = "single_writes"
TOKEN = "bench-token"
AIMEM = [sys.executable, "-c", "from aios_memory.client.cli import main; main()"]

_WORKER = r"""
import json, sys, time
import numpy as np
from aios_memory.client import MemoryClient
uri, token, name, start_at, seconds = sys.argv[1:6]
client = MemoryClient(uri, token, timeout=60)
rng = np.random.default_rng(abs(hash(name)) % 2**32)
vectors = rng.normal(size=(512, 64)).astype(np.float32)
vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
client.remember(f"{name} warms up", embeddings=vectors[:1])
time.sleep(max(0.0, float(start_at) - time.time()))
stop, n, errors = time.monotonic() + float(seconds), 0, []
while time.monotonic() < stop:
    try:
        vector = vectors[n % 512 : n % 512 + 1]
        client.remember(f"{name} noted entry {n} of the day", embeddings=vector)
        n += 1
    except Exception as exc:  # counted, not hidden
        errors.append(type(exc).__name__)
print(json.dumps({"acked": n, "errors": errors}))
"""


def duckdb_rate(folder: Path, seconds: float) -> float:
    """Single-row transactions per second into a store's ``records`` table, DuckDB alone."""
    import numpy as np

    from aios_memory.flight_server.store._database import connect

    folder.mkdir(parents=True, exist_ok=True)
    con = connect(folder / "raw.duckdb")
    vector = np.arange(64, dtype=np.int8).tolist()
    sql = (
        "INSERT INTO records (seq, id, tenant, tier, kind, created_at, hlc, origin, privacy, "
        "codec, payload, raw_size, content_hash, embedding, embedding_scale, embed_model, "
        "deleted) VALUES (?, ?, 'bench', 'working', 'text', now(), ?, 'r', 1, 'zstd', ?, 40, "
        "?, ?, 0.01, 'external', false)"
    )
    cur, n = con.cursor(), 0
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        n += 1
        cur.execute("BEGIN")
        cur.execute(sql, [n, f"id{n}", n, os.urandom(40), os.urandom(16), vector])
        cur.execute("COMMIT")
    con.close()
    return n / seconds


@contextlib.contextmanager
def server(data: Path) -> Iterator[str]:
    """``aimem serve --embedder none`` on ``data``; yields its address."""
    data.mkdir(parents=True)
    log_path = data.parent / f"{data.name}.log"
    command = [*AIMEM, "serve", "--data", str(data), "--port", "0", "--embedder", "none"]
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            [*command, "--token", TOKEN, "--checkpoint-seconds", "0"], stderr=out
        )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            found = re.search(r"grpc://127\.0\.0\.1:\d+", log_path.read_text(errors="replace"))
            if found:
                break
            assert proc.poll() is None, log_path.read_text()
            time.sleep(0.1)
        else:
            raise RuntimeError(f"no address from the server:\n{log_path.read_text()}")
        yield found.group(0)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)


def prefill(uri: str, memories: int) -> None:
    """Store ``memories`` first (1,000 a call), so that each put meets a store of that size."""
    import numpy as np

    from aios_memory.client import MemoryClient

    rng = np.random.default_rng(0)
    with MemoryClient(uri, TOKEN, timeout=300) as client:
        for start in range(0, memories, 1000):
            n = min(1000, memories - start)
            vectors = rng.normal(size=(n, 64)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            client.remember([f"prefill {start + i}" for i in range(n)], embeddings=vectors)


def clients_rate(uri: str, clients: int, seconds: float, round_: int) -> dict[str, Any]:
    """``clients`` processes calling ``remember`` at once for ``seconds``; acks per second."""
    start_at = time.time() + 3.0 + 0.5 * clients  # every process imported and warmed up
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _WORKER,
                uri,
                TOKEN,
                f"c{round_}-{clients}-{i}",
                str(start_at),
                str(seconds),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(clients)
    ]
    reports = [json.loads(p.communicate(timeout=seconds + 300)[0].splitlines()[-1]) for p in procs]
    acked = sum(r["acked"] for r in reports)
    errors = [e for r in reports for e in r["errors"]]
    return {"per_s": round(acked / seconds, 1), "acked": acked, "errors": len(errors)}


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each timed run")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the three runs")
    parser.add_argument("--clients", type=int, default=8, help="client processes at once")
    parser.add_argument("--prefill", type=int, default=20_000, help="memories stored first")
    parser.add_argument("--dir", default=None, help="folder on the disk to measure (temp)")
    args = parser.parse_args()
    seconds, rounds = (2.0, 1) if quick() else (args.seconds, args.rounds)
    prefilled = 0 if quick() else args.prefill
    params = {"seconds": seconds, "rounds": rounds, "clients": args.clients, "prefill": prefilled}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        totals: dict[str, list[float]] = {"duckdb": [], "clients-1": [], "clients-n": []}
        with server(root / "data") as uri:
            prefill(uri, prefilled)
            for round_ in range(rounds):
                rate = duckdb_rate(root / f"raw{round_}", seconds)
                totals["duckdb"].append(rate)
                emit(BENCH, params, run="duckdb", round=round_, per_s=round(rate, 1))
                for name, n in (("clients-1", 1), ("clients-n", args.clients)):
                    result = clients_rate(uri, n, seconds, round_)
                    totals[name].append(result["per_s"])
                    emit(BENCH, params, run=name, round=round_, **result)
                    log(name, result)
        mean = {name: sum(v) / len(v) for name, v in totals.items()}
        emit(
            BENCH,
            params,
            run="summary",
            **{f"{name}_per_s": round(v, 1) for name, v in mean.items()},
            one_client_vs_duckdb=round(mean["clients-1"] / mean["duckdb"], 3),
            n_clients_vs_one=round(mean["clients-n"] / mean["clients-1"], 2),
        )


if __name__ == "__main__":
    main()
