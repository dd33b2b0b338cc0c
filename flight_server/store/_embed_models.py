"""The embedding models of a DuckDB store and the dimension each stores, per tenant.

Apart from ``duckdb_store`` because three of its parts ask it: a put checks and
registers the vectors it writes, the sealed vectors opened late do the same,
and the hybrid search needs a model's dimension to open its index and check a
query. The ``models`` table is the truth; a dict in memory answers on the
search path without SQL.
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb
import pyarrow as pa

from aios_memory.schemas import InvalidVectorError

__all__ = ["MODELS_DDL", "EmbedModels"]

MODELS_DDL = """
CREATE TABLE IF NOT EXISTS models (
    tenant VARCHAR NOT NULL, embed_model VARCHAR NOT NULL, dim INTEGER NOT NULL,
    PRIMARY KEY (tenant, embed_model)
);
"""


class EmbedModels:
    """``(tenant, embed_model) -> dimension``, loaded from the ``models`` table.

    Parameters
    ----------
    cursor
        Makes a cursor on the store's connection.
    """

    def __init__(self, cursor: Callable[[], duckdb.DuckDBPyConnection]) -> None:
        self.reload(cursor)

    def reload(self, cursor: Callable[[], duckdb.DuckDBPyConnection]) -> None:
        """Read the table again (a write that registered models may not have been stored)."""
        self._dims: dict[tuple[str, str], int] = {
            (t, m): d
            for t, m, d in cursor()
            .execute("SELECT tenant, embed_model, dim FROM models")
            .fetchall()
        }

    def dimension(self, tenant: str, model: str) -> int | None:
        """The dimension ``tenant`` stores for ``model``, None before its first vector."""
        return self._dims.get((tenant, model))

    def of_tenant(self, tenant: str) -> dict[str, int]:
        """``embed_model -> dimension`` of every model ``tenant`` stores."""
        return {m: d for (t, m), d in self._dims.items() if t == tenant}

    def check(self, table: pa.Table) -> None:
        """Refuse vectors whose dimension differs from the one their model stores.

        A model new to a tenant takes the dimension of its first vector in ``table``.

        Raises
        ------
        InvalidVectorError
            Naming the first row whose vector has another dimension.
        """
        lengths = table.column("embedding").combine_chunks().value_lengths().to_pylist()
        dims = dict(self._dims)
        for row, (tenant, model, dim) in enumerate(
            zip(
                table.column("tenant").to_pylist(),
                table.column("embed_model").to_pylist(),
                lengths,
                strict=True,
            )
        ):
            if dim is None:
                continue
            known = dims.setdefault((tenant, model), dim)
            if known != dim:
                raise InvalidVectorError(
                    f"embedding at row {row} has dimension {dim}; tenant {tenant!r} stores "
                    f"{known}-dimensional vectors for model {model!r}",
                    row=row,
                    expected=known,
                    got=dim,
                    embed_model=model,
                )

    def register(self, cur: duckdb.DuckDBPyConnection, rows: pa.Table) -> None:
        """Inside a write's transaction on ``cur``: store the models ``rows`` bring first."""
        tenants, names = rows.column("tenant").to_pylist(), rows.column("embed_model").to_pylist()
        models = set(zip(tenants, names, strict=True))
        if all(key in self._dims for key in models if key[1] is not None):
            return
        lengths = rows.column("embedding").combine_chunks().value_lengths().to_pylist()
        for tenant, model, dim in zip(tenants, names, lengths, strict=True):
            if dim is not None and (tenant, model) not in self._dims:
                cur.execute("INSERT INTO models VALUES (?, ?, ?)", [tenant, model, dim])
                self._dims[(tenant, model)] = dim
