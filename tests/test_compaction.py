"""Compaction: the DuckDB file rewritten without dead space, online, on real stores and servers.

What must hold: every table holds exactly what it held (rows, seqs, sync books), searches
answer the same, the file shrinks by what was dead, reads and writes go on meanwhile,
``memory.duckdb`` always names a complete database (a restart opens the rewrite, leftovers
go), a refusal (a full disk, a link placed by hand, a caller who is not the owner) changes
nothing. The ``kill -9`` at any moment of a compaction is ``test_compaction_crash``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest
from support.stores import TENANT, memories, scan, search, write
from test_serve_cli import aimem

from aios_memory.client import MemoryClient
from aios_memory.client.importers import MemoryInput
from aios_memory.flight_server import _running
from aios_memory.flight_server.store import compaction
from aios_memory.flight_server.store._generations import DB_FILE, current_path
from aios_memory.flight_server.store.duckdb_store import DuckDBStore
from aios_memory.schemas import (
    TIERS,
    InvalidRequestError,
    InvalidValueError,
    PermissionDeniedError,
    ScanRequest,
    StorageFullError,
)

ROWS = 3_000


def fill(store: DuckDBStore, rows: int = ROWS, seed: int = 0) -> list[str]:
    """``rows`` memories with 16-d vectors, in puts of 500; returns their ids."""
    rng = np.random.default_rng(seed)
    ids: list[str] = []
    for start in range(0, rows, 500):
        texts = [f"note {start + i}: the parcel went to locker {rng.integers(1e6)}" for i in
                 range(min(500, rows - start))]  # fmt: skip
        vectors = rng.normal(size=(len(texts), 16)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        batch = memories(texts, vectors)
        write(store, batch)
        ids.extend(batch["id"])
    return ids


def every_table(store: DuckDBStore) -> dict[str, list[tuple]]:
    """Every row of every table, sorted: what a compaction must keep exactly."""
    cur = store._file.cursor()
    names = [
        n
        for (n,) in cur.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
        ).fetchall()
    ]
    return {n: sorted(map(repr, cur.execute(f'SELECT * FROM "{n}"').fetchall())) for n in names}


def files(data: Path) -> list[str]:
    return sorted(p.name for p in data.iterdir() if "duckdb" in p.name)


@pytest.fixture
def wasteful(tmp_path: Path) -> Iterator[tuple[DuckDBStore, list[str]]]:
    """A store whose file is two-thirds dead: 3,000 memories written, 2,000 forgotten."""
    store = DuckDBStore(tmp_path / "data")
    ids = fill(store)
    store.forget(TENANT, ids[:2000])
    store.checkpoint()
    yield store, ids[2000:]
    store.close()  # a second close (after a test's own) does nothing


def test_compaction_keeps_every_row_and_gives_back_the_dead_space(wasteful):
    store, kept = wasteful
    before, query = every_table(store), np.eye(16, dtype=np.float32)[3]
    hits_before = search(store, query, k=10, mode="vector").column("id").to_pylist()
    waste = store.waste()
    assert waste["dead_rows"] >= 2000 and waste["fraction"] > 0.3, waste

    report = store.compact()

    assert report["compacted"] and report["file"] == "memory-1.duckdb", report
    assert report["after_bytes"] < report["before_bytes"] * 0.75, report
    assert every_table(store) == before
    assert search(store, query, k=10, mode="vector").column("id").to_pylist() == hits_before
    assert sorted(scan(store).column("id").to_pylist()) == sorted(kept)
    data = store.data_dir
    assert os.readlink(data / DB_FILE) == "memory-1.duckdb"
    assert store.waste()["dead_rows"] == 0
    assert not deleted_files_open(data), "the replaced file is still open: its space is not back"


def deleted_files_open(data: Path) -> list[str]:
    """Files of ``data`` this process still holds open although they were deleted."""
    held = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(str(data)) and target.endswith("(deleted)"):
            held.append(target)
    return held


def test_a_restart_opens_the_rewrite_and_a_second_compaction_removes_the_first(wasteful):
    store, kept = wasteful
    data = store.data_dir
    store.compact()
    store.close()
    reopened = DuckDBStore(data)
    try:
        assert current_path(data) == data / "memory-1.duckdb"
        assert sorted(scan(reopened).column("id").to_pylist()) == sorted(kept)
        fill(reopened, 500, seed=1)  # writes land in the rewrite
        assert reopened.compact()["file"] == "memory-2.duckdb"
        assert "memory-1.duckdb" not in files(data)
        assert len(scan(reopened)) == len(kept) + 500
    finally:
        reopened.close()
    # No stray log of the plain file the first link replaced, nor of the first rewrite.
    assert files(data) == sorted(["memory.duckdb", "memory-2.duckdb"] + _wal(data, 2)), files(data)


def _wal(data: Path, generation: int) -> list[str]:
    name = f"memory-{generation}.duckdb.wal"
    return [name] if (data / name).exists() else []


def test_reads_stream_through_a_compaction_and_writes_go_on(wasteful):
    store, kept = wasteful
    reader = store.scan(ScanRequest(tenant=TENANT), batch_rows=100)
    first = next(reader)  # a stream open on the old file
    written: list[str] = []
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for round_ in range(20):
                written.extend(fill_ids(store, 25, seed=100 + round_))
        except BaseException as exc:  # the test fails below with it
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    report = store.compact()
    thread.join()
    assert not errors, errors
    assert report["compacted"]
    assert deleted_files_open(store.data_dir), "the stream should keep the old file open"
    streamed = first.num_rows + sum(b.num_rows for b in reader)
    assert streamed == len(kept)  # the whole stream, from the snapshot it started on
    del reader
    assert len(scan(store)) and not deleted_files_open(store.data_dir)  # closed after its last
    assert sorted(scan(store).column("id").to_pylist()) == sorted(kept + written)
    store.close()
    reopened = DuckDBStore(store.data_dir)
    try:
        assert len(scan(reopened)) == len(kept) + len(written) == len(kept) + 500
    finally:
        reopened.close()


def test_what_changes_between_the_copy_and_the_switch_is_caught_up(wasteful, monkeypatch):
    store, kept = wasteful
    synced = compaction.fsync_file
    late: dict[str, Any] = {}

    def after_the_copy(path: Path) -> None:
        synced(path)
        if late:  # the second sync is under the write lock
            return
        # Between the copy's snapshot and the catch-up: a forget (rows deleted and
        # inserted), new memories, and a small table changed (the facts).
        late["forgotten"] = kept[:100]
        store.forget(TENANT, kept[:100])
        late["written"] = fill_ids(store, 50, seed=9)
        store._file.cursor().execute("INSERT INTO facts VALUES ('late', 'fact')")
        late["tables"] = every_table(store)

    monkeypatch.setattr(compaction, "fsync_file", after_the_copy)
    assert store.compact()["compacted"]
    assert every_table(store) == late["tables"]
    live = set(scan(store).column("id").to_pylist())
    assert live == (set(kept) - set(late["forgotten"])) | set(late["written"])


def fill_ids(store: DuckDBStore, rows: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(rows, 16)).astype(np.float32)
    batch = memories([f"written during compaction {seed}.{i}" for i in range(rows)], vectors)
    write(store, batch)
    return list(batch["id"])


def test_min_waste_and_min_bytes_skip_a_rewrite_that_would_not_pay(wasteful):
    store, _ = wasteful
    skipped = store.compact(min_waste=0.99)
    assert not skipped["compacted"] and "under 99.0%" in skipped["reason"]
    assert not store.compact(min_bytes=1 << 40)["compacted"]
    assert files(store.data_dir)[0] == DB_FILE and not (store.data_dir / DB_FILE).is_symlink()


def test_the_background_trigger_compacts_only_a_wasteful_file(wasteful, monkeypatch):
    store, kept = wasteful
    assert _running.compact_if_wasteful(store, 0.3) == {  # under 64 MiB: left alone
        "compacted": False,
        "reason": "the file is under 64 MiB",
        "waste": store.waste(),
    }
    monkeypatch.setattr(_running, "AUTO_COMPACT_MIN_BYTES", 0)
    done = _running.compact_if_wasteful(store, 0.3)
    assert done is not None and done["compacted"], done
    again = _running.compact_if_wasteful(store, 0.3)
    assert again is not None and not again["compacted"]  # nothing dead any more
    assert len(scan(store)) == len(kept)


def test_a_disk_without_room_for_the_copy_refuses_before_writing_anything(wasteful, monkeypatch):
    store, kept = wasteful
    before = every_table(store)

    class Full:
        f_bavail, f_frsize = 10, 4096

    monkeypatch.setattr(compaction.os, "statvfs", lambda path: Full())
    with pytest.raises(StorageFullError, match="nothing was changed"):
        store.compact()
    assert files(store.data_dir) == [DB_FILE] + _plain_wal(store.data_dir)
    assert every_table(store) == before
    fill_ids(store, 10, seed=5)  # still writable
    assert len(scan(store)) == len(kept) + 10


def _plain_wal(data: Path) -> list[str]:
    return [DB_FILE + ".wal"] if (data / (DB_FILE + ".wal")).exists() else []


def test_a_failure_mid_copy_deletes_the_partial_file_and_changes_nothing(wasteful, monkeypatch):
    store, kept = wasteful
    before = every_table(store)

    def broken(self: Any, cur: Any) -> None:
        raise duckdb.IOException("Could not write file: No space left on device")

    monkeypatch.setattr(compaction.Compactor, "_catch_up", broken)
    with pytest.raises(StorageFullError, match="partial copy was deleted"):
        store.compact()
    assert not any(name.startswith("memory-") for name in files(store.data_dir))
    assert every_table(store) == before
    monkeypatch.undo()
    assert store.compact()["compacted"]  # and a later one works
    assert len(scan(store)) == len(kept)


def test_leftovers_of_an_interrupted_compaction_are_removed_on_open(tmp_path: Path):
    data = tmp_path / "data"
    store = DuckDBStore(data)
    kept = fill(store, 500)
    store.close()
    for name in ("memory-1.duckdb", "memory-1.duckdb.wal", "memory.duckdb.link-tmp"):
        (data / name).write_bytes(b"half a copy")
    reopened = DuckDBStore(data)
    try:
        assert files(data) == [DB_FILE] + _plain_wal(data)
        assert len(scan(reopened)) == len(kept)
    finally:
        reopened.close()


def test_a_link_placed_by_hand_is_opened_but_never_replaced(tmp_path: Path):
    elsewhere = tmp_path / "disk2"
    store = DuckDBStore(elsewhere)
    fill(store, 200)
    store.close()
    data = tmp_path / "data"
    data.mkdir()
    (data / DB_FILE).symlink_to(elsewhere / DB_FILE)
    linked = DuckDBStore(data)
    try:
        assert len(scan(linked)) == 200
        with pytest.raises(InvalidValueError, match="made by hand"):
            linked.compact()
        assert os.readlink(data / DB_FILE) == str(elsewhere / DB_FILE)
    finally:
        linked.close()


# -- over Flight, and the CLI -------------------------------------------------------------------
def test_compact_over_flight_is_for_the_owner_and_reports(server_factory, tmp_path: Path):
    from aios_memory.flight_server.auth.tokens import TokenAuthority

    with server_factory() as running:
        owner = MemoryClient(running.uri, running.token, timeout=60)
        vectors = np.random.default_rng(0).normal(size=(600, 16)).astype(np.float32)
        ids = owner.remember_many(
            [MemoryInput(f"fact {i}", embedding=v) for i, v in enumerate(vectors)],
            tier="long_term",
        )
        owner.forget(ids[:400])
        dry = owner.compact(dry_run=True)
        assert not dry["compacted"] and dry["waste"]["dead_rows"] >= 400, dry
        done = owner.compact()
        assert done["compacted"] and done["after_bytes"] < done["before_bytes"], done
        assert sorted(m.id for m in owner.get(ids[400:])) == sorted(ids[400:])

        agent_token, _ = TokenAuthority(running.data_dir).create(
            "default", "agent", TIERS, TIERS, 3, None
        )
        with (
            MemoryClient(running.uri, agent_token, timeout=30) as agent,
            pytest.raises(PermissionDeniedError, match="owner token only"),
        ):
            agent.compact()
        with pytest.raises(InvalidRequestError, match="min_waste"):
            owner.compact(min_waste=2.0)
        assert owner.health()["status"] == "ok"
        owner.close()


def test_aimem_compact_prints_what_it_gave_back(server_factory, key_store: Path):
    with server_factory() as running:
        with MemoryClient(running.uri, running.token, timeout=60) as client:
            ids = client.remember_many(
                [MemoryInput(f"line {i} " * 20) for i in range(800)], tier="core"
            )
            client.forget(ids[:700])
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AIMEM_")},
            "AIMEM_SERVER": running.uri,
            "AIMEM_TOKEN": running.token,
            "AIMEM_KEYS": str(key_store),
            "AIMEM_KEYRING": "0",
        }
        dry = aimem("compact", "--dry-run", env=env)
        assert dry.returncode == 0, dry.stderr
        assert "not compacted: dry run" in dry.stdout and "dead space" in dry.stdout
        done = aimem("compact", env=env)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("compacted ") and "given back" in done.stdout
        bad = aimem("compact", "--min-waste", "3", env=env)
        assert bad.returncode != 0 and "--min-waste" in bad.stderr


def test_the_wal_is_checkpointed_in_the_background_past_its_threshold(tmp_path, monkeypatch):
    from aios_memory.flight_server.store import _durable

    monkeypatch.setattr(_durable, "WAL_CHECKPOINT_BYTES", 64 << 10)
    store = DuckDBStore(tmp_path / "data")
    try:
        fill(store, 1000)  # each put of 500 grows the WAL well past 64 KiB
        deadline = time.monotonic() + 10
        while store._file.wal_bytes() > 64 << 10 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert store._file.wal_bytes() <= 64 << 10, "no checkpoint after the puts"
        assert len(scan(store)) == 1000
    finally:
        store.close()


def test_a_lake_server_refuses_compact_and_says_who_compacts_its_lake(server_factory, tmp_path):
    with (
        server_factory(role="cloud", lake=str(tmp_path / "lake")) as cloud,
        MemoryClient(cloud.uri, cloud.token, timeout=30) as client,
    ):
        client.remember("kept in the lake", tier="long_term")
        with pytest.raises(InvalidRequestError, match="--compact-seconds"):
            client.compact()
        with pytest.raises(InvalidRequestError, match="--compact-seconds"):
            client.compact(dry_run=True)
        assert client.health()["status"] == "ok"
