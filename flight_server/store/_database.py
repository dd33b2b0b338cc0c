"""The DuckDB file of a store: its tables, and opening it.

Apart from ``duckdb_store`` so that module stays about writing and reading
records. The records and facts tables are defined here; each collaborator
owns its own tables' DDL (models, sync books, text backlog, sealed vectors and
fields), and opening the file creates them all, so every part finds its
tables whatever opened the file first.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from aios_memory.flight_server.sync.bookkeeping import SYNC_DDL
from aios_memory.schemas import (
    RECORD_SCHEMA,
    AiosMemoryError,
    CorruptDataError,
    ServerInternalError,
    StorageFullError,
)

from ._embed_models import MODELS_DDL
from ._sealed_fields import SEALED_FIELDS_DDL
from ._storage import is_disk_full
from ._text_backlog import TEXT_BACKLOG_DDL
from .sealed_vectors import SEALED_VECTORS_DDL

__all__ = ["COLUMNS", "connect", "open_error", "damaged_message", "is_damage"]

# DuckDB's lock error: '... Conflicting lock is held in /usr/bin/python3 (PID 13120) ...'.
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in .*?\(PID (?P<pid>\d+)\)")
# A block whose checksum failed, a file that is not (or no longer) a DuckDB database, or
# one cut short (its header names blocks past its end).
_CORRUPT = re.compile(
    r"corrupt|checksum|not a valid DuckDB database|could not read enough bytes", re.IGNORECASE
)

COLUMNS = ", ".join(f.name for f in RECORD_SCHEMA)
_RECORDS_DDL = """
CREATE TABLE IF NOT EXISTS records (
    seq BIGINT NOT NULL, id VARCHAR NOT NULL, tenant VARCHAR NOT NULL, tier VARCHAR NOT NULL,
    agent VARCHAR, session VARCHAR, kind VARCHAR NOT NULL, created_at TIMESTAMPTZ NOT NULL,
    hlc UBIGINT NOT NULL, origin VARCHAR NOT NULL, privacy UTINYINT NOT NULL,
    codec VARCHAR NOT NULL, dict_id UINTEGER, payload BLOB NOT NULL, raw_size UINTEGER NOT NULL,
    content_hash BLOB NOT NULL, embedding TINYINT[], embedding_scale FLOAT, embed_model VARCHAR,
    metadata VARCHAR, deleted BOOLEAN NOT NULL
);
CREATE TABLE IF NOT EXISTS facts (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
"""


def connect(path: Path) -> duckdb.DuckDBPyConnection:
    """Open (or create) the store's file at ``path`` with every table of the store.

    Raises
    ------
    AiosMemoryError
        When DuckDB cannot open it: ``open_error`` says why (in use by another process,
        damaged, a full disk) and how to recover.
    """
    try:
        # 16 KiB blocks for a new file (an existing one keeps its own): with the default
        # 256 KiB, each small table costs a whole block, about 190 bytes a memory at
        # LoCoMo's size (bench/disk_bytes.py).
        con = duckdb.connect(str(path), config={"default_block_size": "16384"})
    except duckdb.Error as exc:
        raise open_error(path, exc) from None
    try:
        _create_tables(con)
    except duckdb.Error as exc:
        con.close()
        raise open_error(path, exc) from None
    return con


def _create_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("SET TimeZone = 'UTC'")
    for ddl in (
        _RECORDS_DDL,
        MODELS_DDL,
        SYNC_DDL,
        TEXT_BACKLOG_DDL,
        SEALED_VECTORS_DDL,
        SEALED_FIELDS_DDL,
    ):
        con.execute(ddl)


def open_error(path: Path, exc: BaseException) -> AiosMemoryError:
    """The typed error, in one line, for DuckDB failing to open (or read) ``path``.

    DuckDB's own text names the lock holder's PID, or the block whose checksum failed;
    it is kept at the end so nothing it knows is lost.
    """
    text = " ".join(str(exc).split())
    holder = _LOCK_HOLDER.search(text)
    if holder:
        pid = int(holder.group("pid"))
        return ServerInternalError(
            f"{path} is in use by process {pid} ({_describe_process(pid)}): a server is "
            f"probably already running on this data directory. Stop it (kill {pid}) or "
            "serve another --data."
        )
    if is_disk_full(exc):
        return StorageFullError(
            f"the disk holding {path} is full ({text}). Free some space on it and start "
            "again; nothing stored was lost."
        )
    if _CORRUPT.search(text):
        return CorruptDataError(damaged_message(path, text))
    return ServerInternalError(
        f"cannot open the database {path}: {text}. If it was damaged by a crash or a full "
        "disk, restore it from a backup or re-sync it from the cloud."
    )


def is_damage(text: str) -> bool:
    """Whether DuckDB's error ``text`` says the file is damaged (a checksum, a cut file)."""
    return bool(_CORRUPT.search(text))


def damaged_message(path: Path, detail: str) -> str:
    """What to say about a database whose blocks fail their checksums: what, and how to
    recover (the three ways, the last one on purpose)."""
    return (
        f"the database {path} is damaged ({detail}). Recover one of three ways: restore "
        f"{path.name} from a backup; or re-sync from the cloud into a new data directory "
        f"(aimem sync); or move {path.name} aside and start empty with --accept-empty."
    )


def _describe_process(pid: int) -> str:
    """The command line of ``pid`` where /proc tells it, shortened; else that it is unknown."""
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "command unknown"
    line = " ".join(w.decode(errors="replace") for w in words if w)
    return line if len(line) <= 120 else line[:117] + "..."
