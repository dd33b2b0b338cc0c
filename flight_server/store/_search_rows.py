"""What the hybrid search asks of the records, answered in SQL.

``search.hybrid`` knows no SQL: it takes callbacks. These are the DuckDB
store's, apart from ``duckdb_store`` so that module stays about writing and
reading records: the live vectors of an index's key, the hit rows it keeps in
memory, and the rows a filter admits.
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb
import numpy as np
import pyarrow as pa

from aios_memory.client.codec.vectors import dequantize
from aios_memory.flight_server.search.index_set import VectorKey
from aios_memory.schemas import SearchRequest, ServerInternalError, View

from ._sealed_fields import OPENED_VIEW
from ._sql_filters import Sql, compile_view, compile_where
from .sealed_vectors import VECTOR_ROWS

__all__ = ["SearchRows"]


class SearchRows:
    """The search's callbacks over one DuckDB connection.

    Parameters
    ----------
    cursor
        Makes a cursor on the store's connection (one per call: threads never share one).
    """

    def __init__(self, cursor: Callable[[], duckdb.DuckDBPyConnection]) -> None:
        self._cursor = cursor

    def live_labels(self, key: VectorKey) -> np.ndarray:
        """The seqs of every live vector of ``key`` (records' own and sealed ones)."""
        rows = (
            self._cursor()
            .execute(
                f"SELECT seq FROM {VECTOR_ROWS} WHERE tenant = ? AND tier = ? AND embed_model = ? "
                "ORDER BY seq",
                list(key),
            )
            .fetchnumpy()
        )
        return rows["seq"].astype(np.uint64)

    def fetch_vectors(self, key: VectorKey, labels: np.ndarray) -> np.ndarray:
        """The float vectors of ``labels`` (sorted, as ``live_labels`` gives them), in order."""
        if len(labels) > 1 and not bool(np.all(labels[1:] > labels[:-1])):
            unique, back = np.unique(labels, return_inverse=True)
            fetched: np.ndarray = self.fetch_vectors(key, unique)[back]
            return fetched
        # The key's rows in the labels' seq range, in seq order, then the labels' own: DuckDB
        # skips every row group outside the range (an index opening a million vectors asks
        # in chunks; a join with the labels scanned the whole table for each).
        low, high = (int(labels[0]), int(labels[-1])) if len(labels) else (0, -1)
        table = (
            self._cursor()
            .sql(
                f"SELECT seq, embedding, embedding_scale FROM {VECTOR_ROWS} WHERE tenant = ? "
                "AND tier = ? AND embed_model = ? AND seq BETWEEN ? AND ? ORDER BY seq",
                params=[*key, low, high],
            )
            .to_arrow_table()
        )
        seqs = table.column("seq").to_numpy().astype(np.uint64)
        if not np.array_equal(seqs, labels):  # rows in the range the caller did not ask for
            table = table.filter(pa.array(np.isin(seqs, labels.astype(np.uint64))))
        if table.num_rows != len(labels):
            raise ServerInternalError(f"vectors of {key} changed while the index was opening")
        return dequantize(
            table.column("embedding").combine_chunks(),
            table.column("embedding_scale").combine_chunks().cast(pa.float32()),
        )

    def hit_rows(self, columns: list[str]) -> pa.Table:
        """Every live row's ``seq`` and ``columns``, ordered by ``seq``."""
        return (
            self._cursor()
            .sql(f"SELECT seq, {', '.join(columns)} FROM records WHERE NOT deleted ORDER BY seq")
            .to_arrow_table()
        )

    def allowed_seqs(
        self,
        request: SearchRequest,
        tiers: list[str],
        view: View | None,
        after_seq: int | None = None,
    ) -> np.ndarray:
        """The seqs of the live rows in ``tiers`` that ``request.where`` and ``view`` admit
        (sealed rows by their opened fields); only those above ``after_seq`` if given (the
        search's cache asks for the rows written since it last looked)."""
        sql = Sql()
        sql.add("tenant = ?", request.tenant)
        if after_seq is not None:
            sql.add("seq > ?", after_seq)
        compile_where(sql, {"tier": {"$in": tiers}, **(request.where or {})})
        compile_view(sql, view)
        sql.add("NOT deleted")
        rows = (
            self._cursor()
            .execute(f"SELECT seq FROM {OPENED_VIEW} WHERE {sql.where()}", sql.params)
            .fetchnumpy()
        )
        return rows["seq"]

    def index_keys(self) -> tuple[list[str], list[VectorKey]]:
        """Every tenant with records, and the (tenant, tier, model) of every live vector:
        the indexes to open at start-up."""
        cur = self._cursor()
        tenants = [row[0] for row in cur.execute("SELECT DISTINCT tenant FROM records").fetchall()]
        keys = cur.execute(
            f"SELECT DISTINCT tenant, tier, embed_model FROM {VECTOR_ROWS} ORDER BY ALL"
        ).fetchall()
        return sorted(tenants), [(t, tier, model) for t, tier, model in keys]
