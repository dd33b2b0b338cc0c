"""The keyword side of the DuckDB store: rows a keyword index still needs, and the backlog.

A collaborator of ``duckdb_store``, apart so that module stays about records.
Rows whose text the write path could not produce (lm-coded, or sealed with a
key this side does not have yet) wait in ``text_backlog`` until
``_text_backfill`` indexes them (see ``payloads``). This class owns that
table and the catch-up of a keyword index from the records, which is where
such rows are found again after a restart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import duckdb
import pyarrow as pa

from aios_memory.flight_server.search.keyword_index import KeywordDoc
from aios_memory.schemas import Limits

from .payloads import PAYLOAD_COLUMNS, PayloadTexts

__all__ = ["TEXT_BACKLOG_DDL", "PAYLOAD_SQL", "TextBacklog"]

TEXT_BACKLOG_DDL = "CREATE TABLE IF NOT EXISTS text_backlog (seq BIGINT PRIMARY KEY);"
# What decoding a stored row for indexing needs (``payloads``), as SQL.
PAYLOAD_SQL = ", ".join(PAYLOAD_COLUMNS)


class TextBacklog:
    """The ``text_backlog`` table and the keyword catch-up from the records.

    Parameters
    ----------
    cursor
        Makes a cursor on the store's connection.
    payloads
        The store's payload decoder: it says which rows must wait for the background.
    """

    def __init__(
        self, cursor: Callable[[], duckdb.DuckDBPyConnection], payloads: PayloadTexts
    ) -> None:
        self._cursor, self._payloads = cursor, payloads

    def catch_up(self, tenant: str, watermark: int) -> Iterable[KeywordDoc]:
        """The keyword docs of ``tenant``'s rows after ``watermark``, in seq order.

        A row whose text must wait for the background (the model's, or sealed with a
        key still to come) goes into the backlog and comes out with no text.
        """
        cur = self._cursor()
        reader = cur.sql(
            f"SELECT seq, {PAYLOAD_SQL} FROM records WHERE tenant = ? AND seq > ? ORDER BY seq",
            params=[tenant, watermark],
        ).to_arrow_reader(8192)
        limits = Limits(max_text_bytes=1 << 30)
        for batch in reader:
            for row in batch.to_pylist():
                text, later = self._payloads.stored_text(row, limits)
                if later:
                    self._cursor().execute(
                        "INSERT OR IGNORE INTO text_backlog VALUES (?)", [row["seq"]]
                    )
                yield KeywordDoc(row["id"], row["seq"], row["tier"], row["privacy"], text)

    def rows(self, limit: int, exclude: set[int]) -> list[dict[str, Any]]:
        """Up to ``limit`` backlog rows, oldest first, with their records (id None: gone)."""
        cur = self._cursor()
        cur.register("excluded", pa.table({"seq": pa.array(sorted(exclude), pa.int64())}))
        columns = ", ".join(f"r.{c}" for c in PAYLOAD_COLUMNS)
        return (
            cur.sql(
                f"SELECT b.seq, {columns} FROM text_backlog b LEFT JOIN records r "
                "USING (seq) WHERE b.seq NOT IN (SELECT seq FROM excluded) ORDER BY b.seq LIMIT ?",
                params=[limit],
            )
            .to_arrow_table()
            .to_pylist()
        )

    def waiting(self, tenant: str, handled: list[int]) -> int:
        """Memories of ``tenant`` still waiting to be keyword-indexed.

        ``handled``: seqs the background is done with, still in the table until a checkpoint.
        """
        cur = self._cursor()
        cur.register("handled", pa.table({"seq": pa.array(handled, pa.int64())}))
        found = cur.execute(
            "SELECT count(*) FROM text_backlog b JOIN records r USING (seq) WHERE r.tenant = ? "
            "AND b.seq NOT IN (SELECT seq FROM handled)",
            [tenant],
        ).fetchone()
        return int(found[0]) if found else 0

    def forget(self, seqs: list[int]) -> None:
        """Delete ``seqs`` from the backlog (their texts are in a checkpointed index)."""
        if seqs:
            self._cursor().executemany(
                "DELETE FROM text_backlog WHERE seq = ?", [[seq] for seq in seqs]
            )
