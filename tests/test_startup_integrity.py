"""`aimem serve` refuses a data directory that is damaged, missing its records, in use or on
a full disk: a real process, exit code 1, one line on stderr that says what and what to do.

The damage is real: bytes flipped inside the data blocks of a real DuckDB file with records
(found through ``pragma_storage_info``), which DuckDB itself opens and counts without
complaint. The full disk is a real small tmpfs (we run as root in CI); elsewhere the test
is skipped with its reason, or fails under ``AIMEM_REQUIRE_FAULTS=1``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pytest
from support.stores import TENANT, memories, write
from test_serve_cli import AIMEM, aimem, serving, wait_for_uri

from aios_memory.flight_server.store.duckdb_store import DB_FILE, DuckDBStore

# DuckDB's file: three 4 KiB headers, then blocks that each start with an 8-byte checksum.
_HEADERS = 3 * 4096
_CHECKSUM = 8
ROWS = 3_000


@pytest.fixture
def env(key_store: Path) -> dict[str, str]:
    """The environment of a user's shell: no AIMEM_ settings but this test's key store."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AIMEM_")}
    return {**clean, "AIMEM_KEYS": str(key_store), "AIMEM_KEYRING": "0"}


def fill_store(data: Path, rows: int = ROWS) -> None:
    """A real store with ``rows`` records (and its keyword index), closed."""
    store = DuckDBStore(data)
    rng = np.random.default_rng(7)
    try:
        for start in range(0, rows, 1_000):
            texts = [f"memory {start + i}: the key is under pot {rng.integers(1e9)}" * 3
                     for i in range(min(1_000, rows - start))]  # fmt: skip
            vectors = rng.normal(size=(len(texts), 16)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            write(store, memories(texts, vectors))
    finally:
        store.close()


def flip_bytes_in(
    database: Path, column: str, segment_type: str = "%", count: int = 20, seed: int = 0
) -> int:
    """Flip ``count`` bytes inside the first data block of ``column`` of the records table
    (of its segments of ``segment_type``, a LIKE pattern: a list's elements are segments of
    their own type); returns the block id. Only the block's data is touched, not its
    checksum."""
    with contextlib.closing(duckdb.connect(str(database), read_only=True)) as con:
        (block_size,) = con.execute("SELECT block_size FROM pragma_database_size()").fetchone()
        (block,) = con.execute(
            "SELECT min(block_id) FROM pragma_storage_info('records') "
            "WHERE column_name = ? AND segment_type LIKE ? AND block_id >= 0",
            [column, segment_type],
        ).fetchone()
    rnd = random.Random(seed)
    with database.open("r+b") as f:
        for offset in rnd.sample(range(_CHECKSUM, block_size), count):
            f.seek(_HEADERS + block * block_size + offset)
            byte = f.read(1)[0]
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte ^ 0xFF]))
    return int(block)


def serve_refused(data: Path, env: dict[str, str], *flags: str) -> str:
    """Run `aimem serve` expecting a refusal; returns its one line of stderr."""
    done = subprocess.run(
        [*AIMEM, "serve", "--data", str(data), "--port", "0", "--embedder", "none", *flags],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def memory_count(client_env: dict[str, str]) -> int:
    """How many memories of ``TENANT`` (the records ``fill_store`` wrote) the server counts."""
    out = aimem("stats", "--json", "--tenant", TENANT, env=client_env)
    assert out.returncode == 0, out.stderr
    return int(json.loads(out.stdout)["tiers"]["long_term"]["memories"])


# -- damaged --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("column", "segment_type"),
    [("payload", "%"), ("embedding", "TINYINT[]"), ("embedding", "TINYINT"), ("id", "%")],
)
def test_a_database_with_flipped_bytes_is_refused_with_the_recovery_steps(
    tmp_path: Path, env: dict[str, str], column: str, segment_type: str
):
    data = tmp_path / "data"
    fill_store(data)
    flip_bytes_in(data / DB_FILE, column, segment_type)
    # Unnoticed without the check: DuckDB opens the file and counts its rows.
    with contextlib.closing(duckdb.connect(str(data / DB_FILE))) as con:
        assert con.execute("SELECT count(*) FROM records").fetchone() == (ROWS,)
    line = serve_refused(data, env)
    assert "is damaged" in line and str(data / DB_FILE) in line
    assert "checksum" in line
    assert "backup" in line and "re-sync from the cloud" in line and "--accept-empty" in line


def test_a_database_cut_short_is_refused_as_damaged(tmp_path: Path, env: dict[str, str]):
    data = tmp_path / "data"
    fill_store(data)
    database = data / DB_FILE
    os.truncate(database, database.stat().st_size // 2)  # a copy cut off by a full disk
    line = serve_refused(data, env)
    assert "is damaged" in line and "backup" in line and "--accept-empty" in line


def test_skip_integrity_check_leaves_the_damage_to_the_warm_up_which_says_the_same(
    tmp_path: Path, env: dict[str, str]
):
    data = tmp_path / "data"
    fill_store(data)
    flip_bytes_in(data / DB_FILE, "payload")
    # Without the full check the store's warm-up (it loads the hit rows) meets the block:
    # still one line, still the recovery steps, never a server that fails every get.
    line = serve_refused(data, {**env, "AIMEM_SKIP_INTEGRITY_CHECK": "1"})
    assert f"the database {data / DB_FILE} is damaged" in line
    assert "backup" in line and "--accept-empty" in line


def test_a_healthy_store_with_records_starts_and_serves_them(tmp_path: Path, env: dict[str, str]):
    data = tmp_path / "data"
    fill_store(data)
    with serving(data, env) as (_, client_env):
        assert memory_count(client_env) == ROWS


# -- missing --------------------------------------------------------------------------------
def test_a_deleted_database_beside_its_indexes_and_token_is_refused(
    tmp_path: Path, env: dict[str, str]
):
    data = tmp_path / "data"
    fill_store(data)
    with serving(data, env) as (_, client_env):  # writes the owner token, as a first start does
        # A call before the stop: SIGTERM right after the address line may beat its handler.
        assert aimem("stats", env=client_env).returncode == 0
    (data / DB_FILE).unlink()
    line = serve_refused(data, env)
    assert f"{data / DB_FILE} is missing" in line
    assert "index" in line and "token" in line
    assert "backup" in line and "--accept-empty" in line
    assert not (data / DB_FILE).exists()  # refused before anything was created


def test_a_wal_without_its_database_is_refused(tmp_path: Path, env: dict[str, str]):
    data = tmp_path / "data"
    data.mkdir()
    (data / f"{DB_FILE}.wal").write_bytes(b"a write-ahead log of records")
    line = serve_refused(data, env)
    assert f"{DB_FILE}.wal" in line and "is missing" in line


def test_accept_empty_starts_empty_on_purpose_and_moves_the_orphaned_indexes_aside(
    tmp_path: Path, env: dict[str, str]
):
    data = tmp_path / "data"
    fill_store(data)
    (data / DB_FILE).unlink()
    with serving(data, {**env, "AIMEM_ACCEPT_EMPTY": "1"}) as (_, client_env):
        assert aimem("stats", "--json", env=client_env).returncode == 0
        found = aimem("recall", "key", "--mode", "keyword", "--json", env=client_env)
        assert found.returncode == 0 and found.stdout.strip() == "[]"
    assert any(p.name.startswith("index.orphaned-") for p in data.iterdir())


def test_a_new_empty_data_directory_still_starts(tmp_path: Path, env: dict[str, str]):
    data = tmp_path / "new"
    with serving(data, env) as (_, client_env):
        assert aimem("stats", env=client_env).returncode == 0
    assert (data / DB_FILE).exists()


# -- in use ---------------------------------------------------------------------------------
def test_a_second_server_on_a_directory_in_use_names_the_running_one(
    tmp_path: Path, env: dict[str, str]
):
    data = tmp_path / "data"
    with serving(data, env) as (_, client_env):
        running = _pid_listening(client_env)
        line = serve_refused(data, env)
        assert f"in use by process {running}" in line and "already running" in line
        assert f"kill {running}" in line
        assert "move" not in line  # the cause is a running server, not a damaged file
        assert aimem("stats", env=client_env).returncode == 0  # the first one is untouched


def _pid_listening(client_env: dict[str, str]) -> int:
    """The PID of the server at AIMEM_SERVER: the one process with memory.duckdb open."""
    database = Path(client_env["AIMEM_TOKEN_FILE"]).parent / DB_FILE
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            fds = [os.readlink(fd) for fd in (proc / "fd").iterdir()]
            if str(database.resolve()) in fds:
                return int(proc.name)
    raise AssertionError(f"no process holds {database}")


# -- full disk ------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 24 MiB filesystem (tmpfs), unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        reason = f"cannot mount a small tmpfs here ({done.stderr.strip() or 'not root'})"
        if os.environ.get("AIMEM_REQUIRE_FAULTS") == "1":
            pytest.fail(reason + " and AIMEM_REQUIRE_FAULTS=1")
        pytest.skip(reason)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill_disk(mount: Path) -> Path:
    """Write zeros until the filesystem is full; returns the file to delete to free it."""
    filler = mount / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
    assert shutil.disk_usage(mount).free < 64 << 10
    return filler


def test_a_restart_on_a_full_disk_exits_with_one_line_and_starts_once_space_returns(
    small_disk: Path, env: dict[str, str]
):
    data = small_disk / "data"
    with serving(data, env) as (_, client_env):
        stored = aimem("remember", "kept through a full disk", "--tier", "core", env=client_env)
        assert stored.returncode == 0, stored.stderr
    filler = fill_disk(small_disk)
    line = serve_refused(data, env)
    assert "is full" in line and "Free some space" in line
    filler.unlink()
    with serving(data, env) as (_, client_env):
        out = aimem("recall", "full disk", "--mode", "keyword", "--json", env=client_env)
        assert "kept through a full disk" in out.stdout


def test_a_server_stopped_on_a_full_disk_says_so_in_one_line_and_loses_nothing(
    small_disk: Path, env: dict[str, str]
):
    data = small_disk / "data"
    command = [*AIMEM, "serve", "--data", str(data), "--port", "0", "--embedder", "none"]
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env) as server:
        uri = wait_for_uri(server)
        client_env = {**env, "AIMEM_SERVER": uri, "AIMEM_TOKEN_FILE": str(data / "token")}
        stored = aimem("remember", "written before the disk filled", env=client_env)
        assert stored.returncode == 0, stored.stderr
        filler = fill_disk(small_disk)  # the checkpoint at stop has no room
        server.send_signal(signal.SIGTERM)
        code, stderr = server.wait(timeout=60), server.stderr.read()
    assert "Traceback" not in stderr, stderr
    if code != 0:  # the stop could not checkpoint: one line says why
        assert code == 1 and "is full" in stderr.strip().splitlines()[-1], stderr
    filler.unlink()
    with serving(data, env) as (_, client_env):
        out = aimem("recall", "disk filled", "--mode", "keyword", "--json", env=client_env)
        assert "written before the disk filled" in out.stdout
