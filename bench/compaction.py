"""Space given back by ``aimem compact``, and what a compaction costs the requests around it.

One ``aimem serve`` process (embedder ``none``, IVF index) holds one tenant of ``--rows``
memories (the seeded 384-d set of ``_vectors.py``, vectors supplied). Two ways a store
fills with dead space, each followed by a compaction:

- **forget**: ``--forget`` of the memories forgotten (tombstones stay, rows go);
- **recompress**: every live memory re-encoded (zstd to none, then back), the case the
  storage issue found leaving 2.6 KB a memory of free blocks behind.

For each: the database file's bytes (and the estimate of its dead share) before and after,
the compaction's seconds and the seconds writes waited; and, side by side in one run,
vector recall and single ``remember`` latency while nothing runs (``idle``) and while the
compaction runs (``compacting``), from one reader and one writer thread.

Example::

    .venv/bin/python bench/compaction.py --rows 100000 --work /tmp/compaction-100k
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import base_parser, emit, latency_ms, log, quick  # noqa: E402
from _vectors import make_dataset  # noqa: E402
from server_scale import client_for, first_answer, server  # noqa: E402

from aios_memory.flight_server.store._generations import current_path, wal_of  # noqa: E402


def database_bytes(data_dir: Path) -> int:
    """The database the link names and its log (what compaction rewrites)."""
    target, wal = current_path(data_dir), wal_of(current_path(data_dir))
    return target.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


class Load:
    """One reader (vector recall) and one writer (single remember), timed per window."""

    def __init__(self, uri: str, data: Any) -> None:
        self.uri, self.data = uri, data
        self.window = "idle"
        self.seconds: dict[tuple[str, str], list[float]] = {}
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._loop, args=(name,), daemon=True)
            for name in ("recall", "remember")
        ]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def _loop(self, name: str) -> None:
        with client_for(self.uri) as client:
            i = 0
            while not self.stop.is_set():
                window = self.window
                start = time.perf_counter()
                if name == "recall":
                    q = self.data.queries[i % len(self.data.queries)]
                    client.recall(embedding=q, k=10, mode="vector")
                else:
                    client.remember(f"written under load {i}", tier="long_term")
                self.seconds.setdefault((name, window), []).append(time.perf_counter() - start)
                i += 1

    def report(self) -> dict[str, dict[str, Any]]:
        return {f"{name}_{window}": latency_ms(s) for (name, window), s in self.seconds.items()}


def compact_under_load(uri: str, data: Any, idle_seconds: float) -> dict[str, Any]:
    with Load(uri, data) as load, client_for(uri) as client:
        time.sleep(idle_seconds)
        load.window = "compacting"
        report = client.compact()
        load.window = "after"
    return {**report, "latency": load.report()}


def fill(uri: str, data: Any, batch: int) -> list[str]:
    ids: list[str] = []
    with client_for(uri) as client:
        for first in range(0, len(data.texts), batch):
            last = first + batch
            ids += client.remember(
                data.texts[first:last], embeddings=data.vectors[first:last], tier="long_term"
            )
    return ids


def scenario(name: str, uri: str, data_dir: Path, data: Any, args: Any, params: dict) -> None:
    with client_for(uri) as client:
        waste = client.compact(dry_run=True)["waste"]
    before = database_bytes(data_dir)
    done = compact_under_load(uri, data, args.idle_seconds)
    after = database_bytes(data_dir)
    emit(
        "compaction",
        params,
        scenario=name,
        bytes_before=before,
        bytes_after=after,
        per_memory_before=round(before / args.rows, 1),
        per_memory_after=round(after / args.rows, 1),
        waste_estimate=waste["fraction"],
        given_back=round(1 - after / before, 3),
        seconds=done["seconds"],
        copy_seconds=done["copy_seconds"],
        writes_paused_seconds=done["writes_paused_seconds"],
        latency=done["latency"],
    )


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="memories in the one tenant")
    parser.add_argument("--forget", type=float, default=0.5, help="share of memories forgotten")
    parser.add_argument("--batch", type=int, default=1000, help="memories per put")
    parser.add_argument("--idle-seconds", type=float, default=5.0, help="load before compacting")
    parser.add_argument("--work", default="", help="keep the data directory here")
    args = parser.parse_args()
    if quick():
        args.rows, args.idle_seconds = 3000, 1.0
    params = {k: getattr(args, k) for k in ("rows", "forget", "batch", "idle_seconds")}
    data = make_dataset(args.rows, 200, seed=0)
    work = Path(args.work or tempfile.mkdtemp(prefix="compaction-"))
    data_dir = work / f"data-{args.rows}"
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    try:
        with server(data_dir, "ivf") as (_, uri, spawned):
            first_answer(uri, data.queries[0], spawned)
            log(f"writing {args.rows:,} memories")
            ids = fill(uri, data, args.batch)
            with client_for(uri) as client:
                client.forget(ids[: int(len(ids) * args.forget)])
            log("compacting after forgetting")
            scenario("forget", uri, data_dir, data, args, params)
            with client_for(uri) as client:
                log("re-encoding every memory twice")
                client.recompress("long_term", "none")
                client.recompress("long_term", "zstd")
            scenario("recompress", uri, data_dir, data, args, params)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    main()
