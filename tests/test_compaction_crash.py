"""kill -9 at any moment of a compaction: real `aimem serve` processes, restarted on their data.

The store holds 24,000 memories, half of them forgotten, so a rewrite has real work. Each
round starts the server, runs a writer that keeps remembering, asks for a compaction and
SIGKILLs the server after a delay; the delays sweep from before the copy starts to after
the switch. After each kill the server starts again and must hold every acknowledged write,
exactly one database (``memory.duckdb`` and the file it names; no copy, log or half-made
link of the interrupted compaction left), and answer. The sweep must land kills on both
sides of the switch and at least one inside the copy, or the test proves nothing and fails.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from support.stores import memories, write
from test_sync_crash import TOKEN, Served

from aios_memory.client import MemoryClient
from aios_memory.flight_server.store._generations import DB_FILE, current_path, generation_of
from aios_memory.flight_server.store.duckdb_store import DuckDBStore
from aios_memory.schemas import AiosMemoryError

pytestmark = pytest.mark.slow

SEEDED, FORGOTTEN = 24_000, 12_000
# Seconds from asking for the compaction to the kill: none, inside the copy, around the
# switch, after it (a rewrite of this store takes about 0.3 s here).
DELAYS = (0.0, 0.02, 0.06, 0.1, 0.15, 0.2, 0.3, 0.45, 0.7, 1.2, 2.5)


def seed(data: Path) -> list[str]:
    """The store, written directly (faster than over Flight); the ids that stay live."""
    store = DuckDBStore(data)
    rng = np.random.default_rng(3)
    ids: list[str] = []
    try:
        for start in range(0, SEEDED, 2_000):
            texts = [f"seeded {start + i}: code {rng.integers(1e9)} " * 4 for i in range(2_000)]
            vectors = rng.normal(size=(2_000, 16)).astype(np.float32)
            batch = memories(texts, vectors, tenant="default", tier="core")
            write(store, batch)
            ids.extend(batch["id"])
        store.forget("default", ids[:FORGOTTEN])
    finally:
        store.close()
    return ids[FORGOTTEN:]


class Writer(threading.Thread):
    """Remembers one memory after another; ``acked`` holds those the server acknowledged."""

    def __init__(self, uri: str, round_: int) -> None:
        super().__init__(daemon=True)
        self.uri, self.round = uri, round_
        self.acked: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with MemoryClient(self.uri, TOKEN, timeout=10) as client:
            n = 0
            while not self.stop.is_set():
                try:
                    self.acked.extend(client.remember(f"round {self.round} write {n}", tier="core"))
                except AiosMemoryError:
                    return  # the server is gone: what it acknowledged is in acked
                n += 1


def compact_in_background(uri: str) -> threading.Thread:
    def run() -> None:
        try:
            with MemoryClient(uri, TOKEN, timeout=60) as client:
                client.compact()
        except AiosMemoryError:
            pass  # killed mid-call: the restart shows what it left

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def database_files(data: Path) -> list[str]:
    return sorted(p.name for p in data.iterdir() if p.name.startswith("memory"))


def check_one_database(data: Path) -> None:
    """``memory.duckdb`` (or the rewrite it names) and its log, nothing else of a compaction."""
    current = current_path(data)
    expected = {DB_FILE, DB_FILE + ".wal", current.name, current.name + ".wal"}
    assert set(database_files(data)) <= expected, database_files(data)


def test_kill_9_at_any_moment_of_a_compaction_keeps_one_whole_database(tmp_path: Path) -> None:
    data = tmp_path / "data"
    live = set(seed(data))
    served = Served(data, "device")
    switched: list[bool] = []
    mid_copy: list[bool] = []  # killed with the copy begun, not yet switched to
    try:
        for round_, delay in enumerate(DELAYS):
            served.start()
            generation = generation_of(current_path(data))
            writer = Writer(served.uri, round_)
            writer.start()
            time.sleep(0.2)  # writes under way before the compaction starts
            compaction = compact_in_background(served.uri)
            time.sleep(delay)
            served.kill()
            writer.stop.set()
            writer.join(30)
            compaction.join(30)
            live |= set(writer.acked)
            switched.append(generation_of(current_path(data)) > generation)
            copy = data / f"memory-{generation + 1}.duckdb"
            mid_copy.append(not switched[-1] and copy.exists())

            served.start()  # opens whichever file memory.duckdb names, removes the rest
            check_one_database(data)
            with served.client() as client:
                wanted = sorted(live)
                found = {
                    m.id
                    for i in range(0, len(wanted), 1000)
                    for m in client.get(wanted[i : i + 1000])
                }
                assert found == live, f"round {round_}: {len(live - found)} acked writes lost"
                assert client.health()["status"] == "ok"
            served.stop()
    finally:
        served.close()
    assert any(switched) and not all(switched), f"kills landed only on one side: {switched}"
    assert any(mid_copy), f"no kill landed inside the copy: {switched}"
    print(f"switched {switched}\nmid-copy {mid_copy}")
    reopened = DuckDBStore(data)  # and a clean stop leaves a store that opens directly
    try:
        count = (
            reopened._file.cursor()
            .execute("SELECT count(*) FROM records WHERE NOT deleted AND tenant = ?", ["default"])
            .fetchone()
        )
        assert count is not None and count[0] >= len(live)
    finally:
        reopened.close()
