"""The filterable fields of sealed records on a device: agent, session, metadata.

A sealed record keeps these inside its ciphertext, so a ``where`` on them
would never match a private memory, silently. A device server that opens a
sealed record keeps them here, keyed by ``seq``, written and deleted in the
same transaction as the record (like ``_sealed_vectors``), and filters run
over ``records_opened``: the records with these fields put back. Scans still
return the records as stored (their bound fields must stay as sealed). A
cloud never opens a record: its table stays empty and its view is the records.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa

__all__ = ["SEALED_FIELDS_DDL", "OPENED_VIEW", "fields_table", "write_fields", "replace_derived"]

SEALED_FIELDS_DDL = """
CREATE TABLE IF NOT EXISTS sealed_fields (
    seq BIGINT PRIMARY KEY, agent VARCHAR, session VARCHAR, metadata VARCHAR
);
CREATE OR REPLACE VIEW records_opened AS
    SELECT r.* REPLACE (coalesce(f.agent, r.agent) AS agent,
                        coalesce(f.session, r.session) AS session,
                        coalesce(f.metadata, r.metadata) AS metadata)
    FROM records r LEFT JOIN sealed_fields f USING (seq);
"""
OPENED_VIEW = "records_opened"
_NAMES = ("agent", "session", "metadata")
_SCHEMA = pa.schema([pa.field("seq", pa.int64())] + [pa.field(n, pa.string()) for n in _NAMES])


def fields_table(written: list[tuple[int, int]], opened: dict[int, dict[str, Any]]) -> pa.Table:
    """The ``sealed_fields`` rows of a put: ``written`` is (row number, seq) of rows stored."""
    picked = [(i, seq) for i, seq in written if i in opened]
    return pa.table(
        {
            "seq": [seq for _, seq in picked],
            **{n: [opened[i].get(n) for i, _ in picked] for n in _NAMES},
        },
        schema=_SCHEMA,
    )


def write_fields(cur: duckdb.DuckDBPyConnection, table: pa.Table, replaced_seqs: list[int]) -> None:
    """Inside the put's transaction: drop the replaced rows' fields, add the new ones."""
    replace_derived(cur, "sealed_fields", ("seq", *_NAMES), table, replaced_seqs)


def replace_derived(
    cur: duckdb.DuckDBPyConnection,
    name: str,
    columns: tuple[str, ...],
    table: pa.Table,
    replaced_seqs: list[int],
) -> None:
    """In a derived table keyed by ``seq`` (``name``, a constant): delete the rows of
    ``replaced_seqs``, then insert ``table``'s ``columns``."""
    if replaced_seqs:
        cur.register(
            "replaced_derived_seqs", pa.table({"seq": pa.array(replaced_seqs, pa.int64())})
        )
        cur.execute(f"DELETE FROM {name} WHERE seq IN (SELECT seq FROM replaced_derived_seqs)")
    if table.num_rows:
        cur.register("new_derived", table)
        cur.execute(f"INSERT OR REPLACE INTO {name} SELECT {', '.join(columns)} FROM new_derived")
