"""Start-up checks of a data directory, before the embedded store opens it.

A server must not start on a directory it would serve wrongly:

- **damaged**: DuckDB checksums every block, but only the blocks a query reads; a file
  with flipped bytes opens, answers ``health`` and fails every ``get``. ``verify_database``
  reads every block of every table (a hash of every column) and refuses the file if one
  fails its checksum.
- **missing**: a data directory whose ``memory.duckdb`` is gone but whose indexes, WAL or
  owner token are there once held records; starting would silently serve an
  empty store beside them. ``check_records_present`` refuses unless told ``accept_empty``
  (then the orphaned indexes are moved aside, since they describe records that are gone).
- **in use**: a second server on the same directory: DuckDB's lock names the holder's PID
  (``_database.open_error``).
- **full**: a disk with too little room to open the database (a WAL to replay, a
  checkpoint) and answer a write: ``check_free_space``.

Each refusal is one typed error whose message is one line: what, where, what to do.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from pathlib import Path

import duckdb

from aios_memory.schemas import (
    AiosMemoryError,
    CorruptDataError,
    InvalidValueError,
    ServerInternalError,
    StorageFullError,
)

from ._database import damaged_message, is_damage, open_error
from ._generations import DB_FILE, current_path
from ._storage import is_disk_full

__all__ = [
    "MIN_FREE_BYTES",
    "DATA_EVIDENCE",
    "check_data_dir",
    "check_free_space",
    "check_records_present",
    "verify_database",
    "storage_error",
]

log = logging.getLogger("aios_memory.server")

_INTEGERS = frozenset(
    ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT")
)

# Room a start needs: replaying a WAL and checkpointing it writes blocks, and the first
# write appends to the WAL. Well below any real disk, well above a full one.
MIN_FREE_BYTES = 4 << 20

# What a data directory holds once it has served records (besides the database and its
# WAL): the derived indexes, and the owner token (written by the first ``serve``). The auth
# files (signing key, token list, revocations, audit log) are not evidence: ``aimem token
# create`` writes them before a first ``serve`` on purpose.
DATA_EVIDENCE = ("index", "token")


def check_data_dir(
    data_dir: Path, db_file: str, *, accept_empty: bool = False, verify: bool = True
) -> None:
    """Every start-up check of an embedded store's ``data_dir``, cheapest first.

    Raises
    ------
    AiosMemoryError
        One line naming what is wrong and how to recover (see the module docstring).
    """
    check_free_space(data_dir)
    check_records_present(data_dir, db_file, accept_empty=accept_empty)
    database = current_path(data_dir) if db_file == DB_FILE else data_dir / db_file
    if verify and database.exists():
        verify_database(database)


def check_free_space(data_dir: Path, minimum: int = MIN_FREE_BYTES) -> None:
    """Refuse to start on a disk with less than ``minimum`` bytes free for this user."""
    found = _existing_parent(data_dir)
    stats = os.statvfs(found)
    free = stats.f_bavail * stats.f_frsize
    if free < minimum:
        raise StorageFullError(
            f"the disk holding {data_dir} is full ({free // 1024} KiB free, a start needs "
            f"{minimum >> 20} MiB). Free some space on it and start again; nothing stored "
            "was lost."
        )


def check_records_present(data_dir: Path, db_file: str, *, accept_empty: bool = False) -> None:
    """Refuse a directory whose database is missing beside what only records leave behind.

    With ``accept_empty`` the start goes on, on purpose: the orphaned ``index`` folder is
    renamed aside (kept, not deleted) so no search answers from records that are gone.
    """
    if (data_dir / db_file).exists():
        return
    evidence = (f"{db_file}.wal", *DATA_EVIDENCE)  # a WAL without its database, too
    found = [name for name in evidence if _holds_something(data_dir / name)]
    if not found:
        return
    if not accept_empty:
        raise InvalidValueError(
            f"{data_dir / db_file} is missing, but {data_dir} holds {', '.join(found)} "
            f"of a store that had records: it was deleted or moved. Restore {db_file} from "
            "a backup, or re-sync from the cloud into a new data directory (aimem sync), or "
            "start empty on purpose with --accept-empty (AIMEM_ACCEPT_EMPTY=1).",
            field="data_dir",
        )
    index = data_dir / "index"
    if index.exists():
        aside = data_dir / f"index.orphaned-{int(time.time())}"
        shutil.move(str(index), str(aside))
        log.warning("--accept-empty: %s had no records; moved its indexes to %s", data_dir, aside)


def verify_database(path: Path) -> None:
    """Read every block of every table of the DuckDB file at ``path``; DuckDB checks each
    block's checksum as it reads it.

    Opening it also replays a WAL left by a crash, so the blocks read are the ones the
    store will serve.

    Raises
    ------
    CorruptDataError
        A block failed its checksum (or the file is not a database): names the recovery.
    AiosMemoryError
        Anything else that stops DuckDB opening it (``_database.open_error``): in use, a
        full disk.
    """
    try:
        # Read-only: the check never writes to a file it may find damaged.
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise open_error(path, exc) from None
    try:
        for table in _tables(con):
            for query in _full_scan_sql(con, table):
                con.execute(query).fetchall()
    except duckdb.Error as exc:
        if is_disk_full(exc):
            raise open_error(path, exc) from None
        # The queries are plain reads: whatever else fails in them is the file.
        raise CorruptDataError(damaged_message(path, " ".join(str(exc).split()))) from None
    finally:
        with contextlib.suppress(duckdb.Error):
            con.close()


def storage_error(exc: BaseException, database: Path | None = None) -> AiosMemoryError | None:
    """One line for an OSError or DuckDB error met while starting or stopping, or None
    when ``exc`` is not about storage (a bug, to be shown in full).

    A block that fails its checksum while the store opens (its warm-up reads the rows, when
    ``--skip-integrity-check`` skipped the full check) gets the damaged line and its steps.
    """
    text = " ".join(str(exc).split())
    if is_disk_full(exc):
        return StorageFullError(
            f"the disk holding the data directory is full ({text}). Free some space on it "
            "and start again; nothing acknowledged was lost."
        )
    if database is not None and is_damage(text):
        return CorruptDataError(damaged_message(database, text))
    if isinstance(exc, (OSError, duckdb.Error)):
        return ServerInternalError(f"storage error: {text}")
    return None


def _tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = con.execute(
        "SELECT table_name FROM duckdb_tables() "
        "WHERE database_name = current_database() AND NOT temporary ORDER BY table_name"
    ).fetchall()
    return [str(name) for (name,) in rows]


def _full_scan_sql(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """Queries that read every block of ``table``: a hash of every value of every column.

    A hash reads a whole value (long strings and blobs included), where ``count(*)`` reads
    no data block at all. A list column's elements are hashed one by one after ``unnest``:
    hashing whole lists cost 8x more on 384-dimension embeddings (bench/startup_check.py).
    """
    columns = con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() "
        "WHERE database_name = current_database() AND table_name = ? ORDER BY column_index",
        [table],
    ).fetchall()
    name = _quoted(table)
    scalars = [_quoted(c) for c, kind in columns if not str(kind).endswith("[]")]
    hashes = "".join(f", bit_xor(hash({c}))" for c in scalars)
    queries = [f"SELECT count(*){hashes} FROM {name}"]
    for column, kind in columns:
        if str(kind).endswith("[]"):
            # Integers fold as they are (3x cheaper than their hashes); other elements hash.
            value = "v" if str(kind)[:-2] in _INTEGERS else "hash(v)"
            queries.append(
                f"SELECT count(*), bit_xor({value}) "
                f"FROM (SELECT unnest({_quoted(column)}) AS v FROM {name})"
            )
    return queries


def _quoted(name: str) -> str:
    return '"' + str(name).replace('"', '""') + '"'


def _holds_something(path: Path) -> bool:
    """A file that exists, or a folder with anything in it (an empty ``index`` is no sign)."""
    if path.is_dir():
        return any(path.iterdir())
    return path.exists()


def _existing_parent(path: Path) -> Path:
    """``path`` or its nearest existing ancestor (a new data directory is made later)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
