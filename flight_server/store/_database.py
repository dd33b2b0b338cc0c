"""The DuckDB file of a store: its tables, and opening it.

Apart from ``duckdb_store`` so that module stays about writing and reading
records. The records and facts tables are defined here; each collaborator
owns its own tables' DDL (models, sync books, text backlog, sealed vectors and
fields), and opening the file creates them all, so every part finds its
tables whatever opened the file first.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from aios_memory.flight_server.sync.bookkeeping import SYNC_DDL
from aios_memory.schemas import RECORD_SCHEMA, ServerInternalError

from ._embed_models import MODELS_DDL
from ._sealed_fields import SEALED_FIELDS_DDL
from ._text_backlog import TEXT_BACKLOG_DDL
from .sealed_vectors import SEALED_VECTORS_DDL

__all__ = ["COLUMNS", "connect"]

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
    ServerInternalError
        When DuckDB cannot open it, naming the way to recover.
    """
    try:
        # 16 KiB blocks for a new file (an existing one keeps its own): with the default
        # 256 KiB, each small table costs a whole block, about 190 bytes a memory at
        # LoCoMo's size (bench/disk_bytes.py).
        con = duckdb.connect(str(path), config={"default_block_size": "16384"})
    except duckdb.Error as exc:
        raise ServerInternalError(
            f"cannot open the database {path}: {exc}. If it was damaged by a crash or a full "
            f"disk, move it aside and restore from `aimem export` or the cloud copy."
        ) from None
    con.execute("SET TimeZone = 'UTC'")
    con.execute(_RECORDS_DDL)
    con.execute(MODELS_DDL)
    con.execute(SYNC_DDL)
    con.execute(TEXT_BACKLOG_DDL)
    con.execute(SEALED_VECTORS_DDL)
    con.execute(SEALED_FIELDS_DDL)
    return con
