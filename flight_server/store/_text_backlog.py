"""The keyword side of the DuckDB store: rows the keyword index still needs, and the backlog.

A mixin so ``duckdb_store`` stays about records and indexes. Rows whose text
the write path could not produce (lm-coded, or sealed with a key this side
does not have yet) wait in ``text_backlog`` until ``_text_backfill`` indexes
them (see ``_payloads``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from aios_memory.flight_server.search.keyword_index import KeywordDoc
from aios_memory.schemas import Limits

from .payloads import PAYLOAD_COLUMNS

__all__ = ["TextBacklogMixin", "PAYLOAD_SQL"]

# What decoding a stored row for indexing needs (``_payloads``), as SQL.
PAYLOAD_SQL = ", ".join(PAYLOAD_COLUMNS)


class TextBacklogMixin:
    """The keyword catch-up and ``text_backlog`` methods of ``DuckDBStore``."""

    _write_lock: Any
    _backfill: Any
    indexes: Any
    payloads: Any

    def _cursor(self) -> Any:
        raise NotImplementedError

    def _keyword_backlog(self, tenant: str, watermark: int) -> Iterable[KeywordDoc]:
        cur = self._cursor()
        reader = cur.sql(
            f"SELECT seq, {PAYLOAD_SQL} FROM records WHERE tenant = ? AND seq > ? ORDER BY seq",
            params=[tenant, watermark],
        ).to_arrow_reader(8192)
        limits = Limits(max_text_bytes=1 << 30)
        for batch in reader:
            for row in batch.to_pylist():
                text, later = self.payloads.stored_text(row, limits)
                if later:  # the model's, or sealed with a key still to come: background
                    self._cursor().execute(
                        "INSERT OR IGNORE INTO text_backlog VALUES (?)", [row["seq"]]
                    )
                yield KeywordDoc(row["id"], row["seq"], row["tier"], row["privacy"], text)

    # -- the keyword backlog of lm-coded rows (see _text_backfill) --------------------------
    def text_backlog_rows(self, limit: int, exclude: set[int]) -> list[dict[str, Any]]:
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

    def index_if_current(self, tenant: str, doc: KeywordDoc) -> bool:
        """Give ``doc`` to the keyword index if its row is still the current version."""
        with self._write_lock:
            found = (
                self._cursor()
                .execute("SELECT count(*) FROM records WHERE seq = ?", [doc.seq])
                .fetchone()
            )
            if not found or not found[0]:
                return False
            self.indexes.keyword(tenant).apply([doc])
            return True

    def _keyword_backlog_count(self, tenant: str) -> int:
        """lm-coded memories of ``tenant`` still waiting for the model to be keyword-indexed."""
        cur = self._cursor()
        cur.register("handled", pa.table({"seq": pa.array(self._backfill.handled(), pa.int64())}))
        found = cur.execute(
            "SELECT count(*) FROM text_backlog b JOIN records r USING (seq) WHERE r.tenant = ? "
            "AND b.seq NOT IN (SELECT seq FROM handled)",
            [tenant],
        ).fetchone()
        return int(found[0]) if found else 0

    def _forget_backlog(self, seqs: list[int]) -> None:
        if seqs:
            self._cursor().executemany(
                "DELETE FROM text_backlog WHERE seq = ?", [[seq] for seq in seqs]
            )
