"""One soak client as its own process: connect, warm up, wait for "go", run its operations.

The parent (``soak.py``) starts one of these per client, so eight clients are
eight processes, each with its own interpreter and GIL. Protocol: the client
prints ``ready`` on stdout once connected and warmed up, waits for a line on
stdin, then runs and writes its results to ``--out`` as JSON::

    {"client": 0, "ops": [[kind, end_monotonic_s, seconds, failed, loadavg_1min], ...]}

``time.monotonic`` is one clock for every process on the machine, so the parent
can merge the clients' operations in the order they finished.

Example (what ``soak.py`` runs)::

    python bench/_soak_client.py --uri grpc://127.0.0.1:8815 --token T --client 0 \\
        --ops 2500 --seed 0 --out /tmp/client-0.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _soak_workload import make_world, operations  # noqa: E402

WARMUP = 20  # recalls before the timed part: the first ones load the tenant's indexes
WARMUP_STREAM = 10_000  # seed stream numbers of the warm-up, apart from the clients' 0..N-1
PROGRESS_EVERY = 1000
CALL_TIMEOUT = 300.0


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Warm up, signal ready, wait for go, run every operation; the timed results."""
    from aios_memory.client import MemoryClient

    world = make_world(args.seed, args.data)
    with MemoryClient(args.uri, args.token, timeout=CALL_TIMEOUT, encrypt_at=4) as client:
        # Warm-up draws from a seed stream of its own and writes nothing.
        for kind, call in operations(world, WARMUP_STREAM + args.client, WARMUP):
            if kind != "write":
                call(client)
        print("ready", flush=True)
        sys.stdin.readline()
        return {"client": args.client, "ops": _timed(client, world, args)}


def _timed(client: Any, world: Any, args: argparse.Namespace) -> list[list[Any]]:
    done: list[list[Any]] = []
    for number, (kind, call) in enumerate(operations(world, args.client, args.ops), 1):
        start = time.monotonic()
        failed = False
        try:
            call(client)
        except Exception as error:  # a soak counts failures and goes on, as an agent would
            failed = True
            print(f"client {args.client}: {kind} failed: {error}", file=sys.stderr, flush=True)
        end = time.monotonic()
        # The 1-minute load average beside each operation (outside the timed part): on a
        # shared machine a window's figures mean little without it.
        done.append([kind, end, end - start, failed, round(os.getloadavg()[0], 2)])
        if number % PROGRESS_EVERY == 0:
            print(f"client {args.client}: {number}/{args.ops}", file=sys.stderr, flush=True)
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", required=True)
    parser.add_argument("--token", default=os.environ.get("AIMEM_TOKEN"))
    parser.add_argument("--client", type=int, required=True)
    parser.add_argument("--ops", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=None)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    result = run(args)
    Path(args.out).write_text(json.dumps(result), encoding="utf-8")


if __name__ == "__main__":
    main()
