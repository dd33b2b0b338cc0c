"""Vectors of sealed records on a device: derived, local, never in the records.

A sealed record is stored byte for byte as its client sealed it: replicas
hold identical records and a sync sends rows as stored, so nothing opened
(text, vector) may go back into ``records``. A device server that opens a
sealed record keeps its vector (the envelope's, or its embedder's of the
opened text) in ``sealed_vectors``, keyed by the record's ``seq``: written in
the same transaction as the record, deleted in the same transaction as the
record is replaced. The vector indexes read it beside ``records`` (the
``VECTOR_ROWS`` union), so a restart rebuilds them from the table without
any key. A cloud never opens a record and its table stays empty.

The functions here are the write path's (a put keeps the vectors of the sealed
rows it opened in its own transaction); ``SealedVectors`` is the store's
collaborator for a sealed record opened later, in the background, once its key
came: it takes the store's cursor factory, write lock, search and models.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa

from aios_memory.client.codec.vectors import normalize_rows, quantize
from aios_memory.flight_server.search.hybrid import HybridSearch
from aios_memory.flight_server.search.keyword_index import KeywordDoc
from aios_memory.schemas import AiosMemoryError

from ._embed_models import EmbedModels
from ._sealed_fields import fields_table, replace_derived, write_fields

if TYPE_CHECKING:
    from .payloads import Decoded

__all__ = [
    "SEALED_VECTORS_DDL",
    "VECTOR_ROWS",
    "SealedVector",
    "SealedVectors",
    "vectors_of",
    "vector_table",
    "dimension_rows",
    "write_vectors",
    "models_of",
]

log = logging.getLogger("aios_memory.server")

SEALED_VECTORS_DDL = """
CREATE TABLE IF NOT EXISTS sealed_vectors (
    seq BIGINT PRIMARY KEY, tenant VARCHAR NOT NULL, tier VARCHAR NOT NULL,
    embed_model VARCHAR NOT NULL, embedding TINYINT[] NOT NULL, embedding_scale FLOAT NOT NULL
);
"""
# Every live vector a (tenant, tier, model) index holds: the records' own and the sealed ones.
VECTOR_ROWS = (
    "(SELECT seq, tenant, tier, embed_model, embedding, embedding_scale FROM records "
    "WHERE NOT deleted AND embedding IS NOT NULL UNION ALL "
    "SELECT s.seq, s.tenant, s.tier, s.embed_model, s.embedding, s.embedding_scale "
    "FROM sealed_vectors s JOIN records r USING (seq) WHERE NOT r.deleted)"
)
_TABLE_SCHEMA = pa.schema(
    [
        pa.field("seq", pa.int64()),
        pa.field("tenant", pa.string()),
        pa.field("tier", pa.string()),
        pa.field("embed_model", pa.string()),
        pa.field("embedding", pa.list_(pa.int8())),
        pa.field("embedding_scale", pa.float32()),
        pa.field("deleted", pa.bool_()),
    ]
)


@dataclass(frozen=True)
class SealedVector:
    """The vector of one opened sealed record: int8 codes, their scale, and the model."""

    embed_model: str
    embedding: np.ndarray
    embedding_scale: float


def vectors_of(decoded: Decoded, embedder: Any) -> dict[int, SealedVector]:
    """A vector per opened row of a put: the envelope's, else ``embedder``'s of its text."""
    found: dict[int, SealedVector] = {}
    to_embed: list[int] = []
    for number, row in decoded.opened.items():
        if row.get("embedding") is not None:
            found[number] = SealedVector(
                row["embed_model"],
                np.asarray(row["embedding"], np.int8),
                float(row["embedding_scale"]),
            )
        elif embedder is not None and decoded.texts[number] is not None:
            to_embed.append(number)
    if to_embed:
        unit = normalize_rows(embedder.embed_passages([decoded.texts[i] for i in to_embed]))
        codes, scales = quantize(unit)
        for j, number in enumerate(to_embed):
            found[number] = SealedVector(embedder.name, codes[j], float(scales[j]))
    return found


def vector_table(
    rows: pa.Table, written: list[tuple[int, int]], vectors: dict[int, SealedVector]
) -> pa.Table:
    """The ``sealed_vectors`` rows of a put: ``written`` is (row number, seq) of rows stored."""
    picked = [(i, seq) for i, seq in written if i in vectors]
    tenants, tiers = rows.column("tenant").to_pylist(), rows.column("tier").to_pylist()
    return pa.table(
        {
            "seq": [seq for _, seq in picked],
            "tenant": [tenants[i] for i, _ in picked],
            "tier": [tiers[i] for i, _ in picked],
            "embed_model": [vectors[i].embed_model for i, _ in picked],
            "embedding": [vectors[i].embedding.tolist() for i, _ in picked],
            "embedding_scale": [vectors[i].embedding_scale for i, _ in picked],
            "deleted": [False] * len(picked),
        },
        schema=_TABLE_SCHEMA,
    )


def dimension_rows(new_rows: pa.Table, sealed: pa.Table) -> pa.Table:
    """``(tenant, embed_model, embedding)`` of a put's records and sealed vectors together, so
    one check sees a new model's first dimension whichever table brings it."""
    names = ["tenant", "embed_model", "embedding"]
    schema = pa.schema([_TABLE_SCHEMA.field(name) for name in names])
    return pa.concat_tables([new_rows.select(names).cast(schema), sealed.select(names)])


def write_vectors(
    cur: duckdb.DuckDBPyConnection, table: pa.Table, replaced_seqs: list[int]
) -> None:
    """Inside the put's transaction: drop the replaced rows' vectors, add the new ones."""
    replace_derived(
        cur,
        "sealed_vectors",
        ("seq", "tenant", "tier", "embed_model", "embedding", "embedding_scale"),
        table,
        replaced_seqs,
    )


def models_of(cur: duckdb.DuckDBPyConnection, seqs: list[int]) -> dict[int, str]:
    """``seq -> embed_model`` of the sealed vectors of ``seqs`` (rows about to be replaced)."""
    if not seqs:
        return {}
    cur.register("asked_seqs", pa.table({"seq": pa.array(seqs, pa.int64())}))
    return dict(
        cur.execute(
            "SELECT seq, embed_model FROM sealed_vectors WHERE seq IN (SELECT seq FROM asked_seqs)"
        ).fetchall()
    )


class SealedVectors:
    """Indexes a sealed record opened in the background, once its key came.

    A collaborator of the DuckDB store: the write path keeps a sealed record's vector
    in the put's own transaction; this keeps the vector and the filterable fields of
    one opened later, and hands it to the search.

    Parameters
    ----------
    cursor
        Makes a cursor on the store's connection.
    write_lock
        The store's write lock: a record is checked current and indexed under it.
    search
        The store's hybrid search, which indexes the opened record.
    models
        The store's models, which check and register the vector's dimension.
    """

    def __init__(
        self,
        cursor: Callable[[], duckdb.DuckDBPyConnection],
        write_lock: threading.Lock,
        search: HybridSearch,
        models: EmbedModels,
    ) -> None:
        self._cursor, self._write_lock = cursor, write_lock
        self._search, self._models = search, models

    def index_opened_if_current(
        self, tenant: str, doc: KeywordDoc, vector: SealedVector | None, opened: dict[str, Any]
    ) -> bool:
        """Index a sealed record opened in the background, if it is still the current version
        (its vector and its filterable fields go beside it, see ``_sealed_fields``).

        Returns
        -------
        bool
            False when the record was replaced or deleted meanwhile (nothing indexed).
        """
        with self._write_lock:
            cur = self._cursor()
            found = cur.execute("SELECT count(*) FROM records WHERE seq = ?", [doc.seq]).fetchone()
            if not found or not found[0]:
                return False
            write_fields(self._cursor(), fields_table([(0, doc.seq)], {0: opened}), [])
            self._search.forget_filters()
            had = cur.execute(
                "SELECT count(*) FROM sealed_vectors WHERE seq = ?", [doc.seq]
            ).fetchone()
            if vector is not None and not (had and had[0]):
                self._add_sealed_vector(cur, tenant, doc, vector)
            self._search.index_keywords(tenant, [doc])
            return True

    def _add_sealed_vector(
        self, cur: duckdb.DuckDBPyConnection, tenant: str, doc: KeywordDoc, vector: SealedVector
    ) -> None:
        known = self._models.dimension(tenant, vector.embed_model)
        if known is not None and known != len(vector.embedding):
            log.error(
                "memory %s: its vector has %d dimensions, model %r stores %d; it is "
                "searchable by keyword only",
                doc.id,
                len(vector.embedding),
                vector.embed_model,
                known,
            )
            return
        table = vector_table(
            pa.table({"tenant": [tenant], "tier": [doc.tier]}), [(0, doc.seq)], {0: vector}
        )
        try:
            cur.execute("BEGIN")
            write_vectors(cur, table, [])
            self._models.register(cur, table)
            cur.execute("COMMIT")
        except (duckdb.Error, AiosMemoryError):
            cur.execute("ROLLBACK")
            raise
        self._search.add_vectors(table)
