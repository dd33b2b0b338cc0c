"""A real server on a real full filesystem: typed refusals, reads that answer, healing, no phantom.

The data directory lives on a small tmpfs mounted for the test (root can mount one;
elsewhere the test is skipped with its reason, or fails when ``AIMEM_REQUIRE_FAULTS=1``,
as CI sets it). ``aimem serve`` runs as its own process and checkpoints every second,
so DuckDB's checkpoint also meets the full disk (and invalidates its database, which
the store opens again by itself).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import unit_vectors

from aios_memory.client import MemoryClient
from aios_memory.schemas import StorageFullError

AIMEM = [sys.executable, "-c", "from aios_memory.client.cli import main; main()"]
SIZE_MB = 24


@contextlib.contextmanager
def small_filesystem(path: Path) -> Iterator[Path]:
    """A ``SIZE_MB`` tmpfs at ``path``, or a skip (a failure under AIMEM_REQUIRE_FAULTS=1)."""
    path.mkdir()
    reason = _mount(path)
    if reason is not None:
        if os.environ.get("AIMEM_REQUIRE_FAULTS") == "1":
            pytest.fail(f"AIMEM_REQUIRE_FAULTS=1 but no small filesystem: {reason}")
        pytest.skip(f"no small filesystem to fill: {reason}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _mount(path: Path) -> str | None:
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    return None if done.returncode == 0 else f"mount failed: {done.stderr.strip()}"


@contextlib.contextmanager
def serving(data: Path, log: Path) -> Iterator[MemoryClient]:
    """``aimem serve`` on ``data`` (its log in ``log``), and a client of it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIMEM_")}
    command = [*AIMEM, "serve", "--data", str(data), "--port", "0", "--embedder", "none"]
    with (
        log.open("w") as log_file,
        subprocess.Popen(
            [*command, "--checkpoint-seconds", "1"], stderr=log_file, env=env
        ) as server,
    ):
        try:
            uri = _address(server, log)
            with MemoryClient(uri, (data / "token").read_text().strip(), timeout=60) as client:
                yield client
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)


def _address(server: subprocess.Popen, log: Path) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(r"grpc://127\.0\.0\.1:\d+", log.read_text())
        if found:
            return found.group(0)
        assert server.poll() is None, log.read_text()
        time.sleep(0.1)
    raise AssertionError(f"no address printed:\n{log.read_text()}")


def fill(filler: Path) -> None:
    """Write ``filler`` until the filesystem refuses a single byte more."""
    with filler.open("wb", buffering=0) as out:
        for chunk in (1 << 20, 1 << 16, 1 << 12, 1 << 9, 1):
            with contextlib.suppress(OSError):
                while True:
                    out.write(b"\0" * chunk)


def stored_count(client: MemoryClient) -> int:
    return int(client.stats()["memories"])


def test_a_full_disk_refuses_writes_keeps_reads_and_heals_without_a_restart(
    tmp_path: Path,
) -> None:
    vectors = unit_vectors(400, dim=16, seed=7)
    acked: list[str] = []
    refused: list[Any] = []

    def remember(i: int) -> None:
        try:
            acked.extend(client.remember(f"memory number {i}", embeddings=vectors[i : i + 1]))
        except StorageFullError as exc:
            refused.append(exc)

    with (
        small_filesystem(tmp_path / "small") as small,
        serving(small / "data", tmp_path / "server.log") as client,
    ):
        for i in range(20):
            remember(i)
        assert len(acked) == 20
        fill(small / "filler")
        for i in range(20, 320):
            remember(i)
            if len(refused) >= 3:
                break
        assert len(refused) >= 3, "the full disk refused no write"
        assert all(exc.code == "STORAGE_FULL" for exc in refused)

        health = client.health()
        assert health["status"] == "degraded"
        assert "STORAGE_FULL" in health["reason"]
        assert [m.id for m in client.get(acked[:5])] == acked[:5]
        hits = client.recall(embedding=vectors[0], k=3, mode="vector")
        assert hits and hits[0].id == acked[0]
        time.sleep(2.5)  # the server's checkpoints meet the full disk too
        assert [m.id for m in client.get(acked[:5])] == acked[:5]

        (small / "filler").unlink()
        before = len(acked)
        remember(390)
        assert len(acked) == before + 1, "the first write after space returned was refused"
        assert client.health()["status"] == "ok"
        assert stored_count(client) == len(acked)
    # No call failed untyped (the index upkeep threads meeting the full disk log their own).
    log = (tmp_path / "server.log").read_text()
    failed = [
        line for line in log.splitlines() if re.search(r"aios_memory.server: \S+ failed", line)
    ]
    assert not [line for line in failed if "index checkpoint failed" not in line], log


def test_a_checkpoint_on_a_full_disk_costs_no_write_and_the_store_opens_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint is not tried without room for it; this one is (as if the estimate were
    wrong): DuckDB invalidates its database, the store opens it again (read-only while
    the disk is full), reads go on, and the first write after space returns is stored."""
    from support.stores import memories, scan, search, texts, write

    from aios_memory.flight_server.store import _durable
    from aios_memory.flight_server.store.duckdb_store import DuckDBStore

    words = [os.urandom(600).hex() for _ in range(300)]  # incompressible: a checkpoint needs space
    with small_filesystem(tmp_path / "small") as small:
        store = DuckDBStore(small / "data")
        try:
            for start in range(0, 300, 10):
                write(
                    store,
                    memories(
                        words[start : start + 10], id=[f"m{i}" for i in range(start, start + 10)]
                    ),
                )
            search(store, query="nothing", mode="keyword")  # the keyword index commits now
            fill(small / "filler")
            monkeypatch.setattr(_durable, "room_for_checkpoint", lambda path, wal: True)
            # DuckDB's checkpoint fails (invalidating its database); saving the derived
            # indexes may fail too, which the next checkpoint retries.
            with contextlib.suppress(OSError, ValueError):
                store.checkpoint()
            assert "STORAGE" in (store.degraded() or "")
            assert len(texts(scan(store))) == 300  # the store opened the file again: reads work
            acked = [f"m{i}" for i in range(300)]
            for i in range(300):  # whatever still fits is stored, then writes are refused
                try:
                    write(store, memories([os.urandom(3000).hex()], id=f"late{i}"))
                except StorageFullError:
                    break
                acked.append(f"late{i}")
            else:
                raise AssertionError("the full disk refused no write")
            (small / "filler").unlink()
            write(store, memories(["after"], id="after"))
            assert store.degraded() is None
            assert sorted(texts(scan(store))) == sorted([*acked, "after"])
        finally:
            store.close()


def test_a_keyword_commit_refused_by_a_full_disk_loses_nothing_and_commits_later(
    tmp_path: Path,
) -> None:
    from aios_memory.flight_server.search.keyword_index import KeywordDoc, KeywordIndex

    with small_filesystem(tmp_path / "disk") as disk:
        index = KeywordIndex(disk / "keyword")
        index.apply([KeywordDoc("a", 1, "core", 0, "the lighthouse keeper")])
        index.flush()
        filler = disk / "filler"
        with contextlib.suppress(OSError), filler.open("wb") as out:
            while True:
                out.write(b"\0" * (1 << 20))
        docs = [KeywordDoc(f"m{i}", 10 + i, "core", 0, _long_note(i)) for i in range(40)]
        index.apply(docs + [KeywordDoc("a", 60, "core", 0, None)], dead=[1])
        with pytest.raises(ValueError):  # "No space left", or "index writer was killed"
            index.flush()
        found = {seq for seq, _ in index.search("lighthouse", 100)}
        assert found == {10 + i for i in range(40)}  # staged: searched, the old one dropped
        filler.unlink()
        index.flush()  # the writer given up after the failure was replaced, tail and all
        assert index.commits >= 2
        assert {seq for seq, _ in index.search("lighthouse", 100)} == found
        assert len(index) == 40
        index.close()


def _long_note(number: int) -> str:
    return f"lighthouse note {number} " * 400
