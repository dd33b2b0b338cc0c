"""Does recall stay flat under an agent's real use? Single writes between mixed recalls, for long.

One agent-like client does single ``remember`` calls interleaved with recalls of
every mode (vector, keyword, hybrid) and filter (a ``where`` on metadata, a tier
list, privacy) on a store that already holds ``--memories`` memories; then
``--clients`` clients (processes: 2 cores and a GIL make threads meaningless)
share the same number of operations. Latency percentiles (p50/p90/p99 per kind)
are printed for every window of ``--window`` operations, one JSON line each, and
one summary line per run with the ratio of the last window's p50 to the first's
(issue 16's target: within 1.2x for vector, hybrid and filtered recall).

The server is ``aimem serve --embedder none`` run as a subprocess on a temporary
data directory (vectors are supplied by the clients), preloaded with batched
``remember`` calls, and restarted before each run so both runs start from a
fresh process on the same store. With ``--uri`` the script uses a running server
instead (token from ``--token`` or ``AIMEM_TOKEN``), preloads only what is
missing and restarts nothing; with ``--store DIR`` it keeps (and reuses) the
store in DIR.

Example::

    .venv/bin/python bench/soak.py --memories 100000 --ops 20000 --clients 8
    .venv/bin/python bench/soak.py --quick          # a smoke run of a few seconds
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import base_parser, code_state, emit, log, quick, wait_until_indexed  # noqa: E402
from _soak_report import merged, summary, windows  # noqa: E402
from _soak_server import TOKEN, serve  # noqa: E402
from _soak_workload import KINDS, WEIGHTS, World, make_world, preload_batches  # noqa: E402

BENCH = "soak"
CLIENT_SCRIPT = Path(__file__).resolve().parent / "_soak_client.py"
PRELOAD_BATCH = 2000
PRELOAD_THREADS = 2  # one encodes while the other's batch commits
QUICK = {"memories": 2000, "ops": 600, "window": 100, "clients": 2}


def parse_args() -> Any:
    parser = base_parser(__doc__.splitlines()[0], data=True, data_optional=True)
    parser.add_argument("--memories", type=int, default=100_000, help="store size before a run")
    parser.add_argument("--ops", type=int, default=20_000, help="operations per run")
    parser.add_argument("--clients", type=int, default=8, help="clients of the second run")
    parser.add_argument(
        "--only",
        choices=("single", "concurrent"),
        default=None,
        help="run only the one-client run or only the --clients run (default: both)",
    )
    parser.add_argument("--window", type=int, default=1000, help="operations per window")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--uri", default=None, help="a running server to use instead")
    parser.add_argument(
        "--store",
        default=None,
        help="keep the server's data directory here and reuse it (preloading only what is "
        "missing) instead of a temporary one",
    )
    parser.add_argument("--token", default=os.environ.get("AIMEM_TOKEN"), help="with --uri")
    parser.add_argument("--quick", action="store_true", help="a small smoke run (BENCH_QUICK=1)")
    args = parser.parse_args()
    if args.quick or quick():
        os.environ["BENCH_QUICK"] = "1"  # so every line says it was a smoke run
        for name, value in QUICK.items():
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)
    if min(args.memories, args.ops, args.clients, args.window) < 1:
        parser.error("--memories, --ops, --clients and --window must be at least 1")
    return args


def params(args: Any) -> dict[str, Any]:
    """The parameters every line carries."""
    return {
        "memories": args.memories,
        "ops": args.ops,
        "window": args.window,
        "seed": args.seed,
        "data": Path(args.data).name if args.data else "generated",
        "mix": dict(zip(KINDS, WEIGHTS, strict=True)),
        "server": "external" if args.uri else "aimem serve --embedder none",
        "preload_batch": PRELOAD_BATCH,
    }


@contextlib.contextmanager
def server(args: Any, work: Path) -> Iterator[tuple[str, str]]:
    """The address and token of the server a phase uses: a fresh process, or ``--uri``."""
    if args.uri:
        yield args.uri, args.token
    else:
        data = Path(args.store) if args.store else work / "data"
        with serve(data, work / "keys") as uri:
            yield uri, TOKEN


def client(uri: str, token: str) -> Any:
    from aios_memory.client import MemoryClient

    return MemoryClient(uri, token, timeout=600.0, encrypt_at=4)


def preload(uri: str, token: str, world: World, args: Any) -> None:
    """Store what the store lacks of ``--memories``, batched, then wait for the graph."""
    with client(uri, token) as probe:
        have = probe.stats().get("memories", 0)
        missing = max(0, args.memories - have)
        start = time.perf_counter()
        if missing:
            log(f"preloading {missing} memories ({have} there)")
            with ThreadPoolExecutor(PRELOAD_THREADS) as pool:
                parts = range(PRELOAD_THREADS)
                list(pool.map(lambda part: _write_part(uri, token, world, missing, part), parts))
        acked = time.perf_counter() - start
        graph = wait_until_indexed(probe)
        emit(
            BENCH,
            params(args),
            result="preload",
            memories=missing,
            acked_s=round(acked, 2),
            memories_per_s=round(missing / acked, 1) if missing else None,
            graph_catch_up_s=round(graph, 2),
        )


def _write_part(uri: str, token: str, world: World, total: int, part: int) -> None:
    with client(uri, token) as writer:
        batches = preload_batches(world, total, PRELOAD_BATCH, part, PRELOAD_THREADS)
        for number, batch in enumerate(batches, 1):
            writer.remember(**batch)
            if number % 10 == 0:
                log(f"  writer {part}: {number * PRELOAD_BATCH} memories stored")


def run_clients(uri: str, token: str, count: int, args: Any, work: Path) -> list[dict[str, Any]]:
    """``count`` client processes sharing ``--ops``; each one's results, once all finished."""
    shares = [args.ops // count + (1 if n < args.ops % count else 0) for n in range(count)]
    outs = [work / f"run{count}-client{n}.json" for n in range(count)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(CLIENT_SCRIPT), "--uri", uri, "--client", str(n)]
            + ["--ops", str(share), "--seed", str(args.seed), "--out", str(out)]
            + (["--data", args.data] if args.data else []),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "AIMEM_TOKEN": token},
            text=True,
        )
        for n, (share, out) in enumerate(zip(shares, outs, strict=True))
    ]
    for proc in procs:  # every client connected and warmed up before anyone starts
        if proc.stdout is None or proc.stdout.readline().strip() != "ready":
            raise RuntimeError("a soak client failed to start (its stderr is above)")
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.close()
    if any(proc.wait() != 0 for proc in procs):
        raise RuntimeError("a soak client failed (its stderr is above)")
    return [json.loads(out.read_text(encoding="utf-8")) for out in outs]


def soak(uri: str, token: str, count: int, args: Any, work: Path) -> None:
    """One run of ``count`` clients: a line per window, then the summary line."""
    with client(uri, token) as probe:
        wait_until_indexed(probe)
        before = probe.stats().get("memories", 0)
        load_before = _loadavg()
        log(f"run with {count} client(s): {args.ops} operations on {before} memories")
        ops = merged(run_clients(uri, token, count, args, work))
        after = probe.stats().get("memories", 0)
    cut = windows(ops, args.window)
    run = {**params(args), "clients": count}
    for line in cut:
        emit(BENCH, run, result="window", clients=count, **line)
    emit(
        BENCH,
        run,
        result="summary",
        clients=count,
        memories_before=before,
        memories_after=after,
        commit=code_state()["commit"],
        loadavg_at_start=load_before,
        loadavg_at_end=_loadavg(),
        **summary(cut, ops),
    )


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    args = parse_args()
    world = make_world(args.seed, args.data)
    counts = {"single": [1], "concurrent": [args.clients]}.get(args.only, [1, args.clients])
    counts = list(dict.fromkeys(counts))
    with tempfile.TemporaryDirectory(prefix="aimem-soak-") as scratch:
        work = Path(scratch)
        (work / "keys").mkdir()
        # The bench's own key store, inherited by the server and every client: nothing
        # touches ~/.config or the OS keyring (memories are stored below the encryption
        # threshold anyway: encrypt_at=4).
        os.environ["AIMEM_KEYS"] = str(work / "keys")
        os.environ.setdefault("AIMEM_KEYRING", "0")
        with server(args, work) as (uri, token):
            preload(uri, token, world, args)
        for count in counts:  # a fresh server process per run, on the same store
            with server(args, work) as (uri, token):
                soak(uri, token, count, args, work)


if __name__ == "__main__":
    main()
