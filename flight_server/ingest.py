"""What happens to a put before the store sees it: validate, decode, embed.

Kept apart from any store so that every backend (the embedded DuckDB one
now, a lakehouse later) accepts exactly the same records.
"""

from __future__ import annotations

import pyarrow as pa

from aios_memory.client.codec.vectors import normalize_rows, quantize
from aios_memory.flight_server.auth.access import check_reader_lists, check_rows
from aios_memory.flight_server.store.base import PreparedWrite
from aios_memory.flight_server.store.payloads import PayloadTexts
from aios_memory.flight_server.store.sealed_vectors import vectors_of
from aios_memory.schemas import (
    RECORD_SCHEMA,
    Grant,
    Limits,
    check_tiers_allowed,
    validate_record_batch,
)
from aios_memory.schemas.validate import check_unique_ids

from .embedder import EmbedDeadline, Embedder, bounded

__all__ = ["prepare_write"]


def prepare_write(
    batches: list[pa.RecordBatch],
    embedder: Embedder | None,
    limits: Limits,
    allowed_tiers: tuple[str, ...] | None = None,
    *,
    payloads: PayloadTexts | None = None,
    reencode: bool = False,
    grant: Grant | None = None,
    deadline: EmbedDeadline | None = None,
) -> PreparedWrite:
    """Validate every batch fully, decode every text, embed what came without a vector.

    ``allowed_tiers`` (a cloud endpoint's sync tiers) refuses records of any other tier.
    ``payloads`` decodes with the store's dictionaries (default: only those in the put).
    ``grant`` (the caller's) must allow every row's tenant, tier and privacy.
    ``deadline`` bounds the embedding (its budget, a client gone, the server stopping): when
    it raises, nothing of the write has reached a store.
    """
    for batch in batches:
        validate_record_batch(batch, limits)
        check_reader_lists(batch)
        if grant is not None:
            check_rows(batch, grant)
        if allowed_tiers is not None:
            check_tiers_allowed(
                set(batch.column("tier").to_pylist()), allowed_tiers, "this cloud endpoint"
            )
    if len(batches) > 1:  # each batch checked its own rows above
        check_unique_ids(batches)
    table = pa.Table.from_batches(batches, schema=RECORD_SCHEMA).combine_chunks()
    decoded = (payloads or PayloadTexts()).read(table, limits)
    texts = decoded.texts
    if embedder is not None and deadline is not None:
        embedder = bounded(embedder, deadline)
    if embedder is not None:
        # What a sealed row opens to never goes into the record: its vector lives apart.
        table = _embed_missing(
            table, [None if i in decoded.opened else text for i, text in enumerate(texts)], embedder
        )
    return PreparedWrite(
        table,
        texts,
        [b.num_rows for b in batches],
        reencode,
        frozenset(decoded.deferred),
        vectors_of(decoded, embedder),
        dict(decoded.opened),
    )


def _embed_missing(table: pa.Table, texts: list[str | None], embedder: Embedder) -> pa.Table:
    embedding = table.column("embedding").to_pylist()
    missing = [
        (i, text)
        for i, (vec, text) in enumerate(zip(embedding, texts, strict=True))
        if vec is None and text is not None
    ]
    if not missing:
        return table
    passages = [text for _, text in missing]
    vectors, scales = quantize(normalize_rows(embedder.embed_passages(passages)))
    scale = table.column("embedding_scale").to_pylist()
    model = table.column("embed_model").to_pylist()
    for j, (i, _) in enumerate(missing):
        embedding[i], scale[i], model[i] = vectors[j].tolist(), float(scales[j]), embedder.name
    for name, values in (
        ("embedding", embedding),
        ("embedding_scale", scale),
        ("embed_model", model),
    ):
        index = table.schema.get_field_index(name)
        table = table.set_column(
            index, RECORD_SCHEMA.field(name), pa.array(values, RECORD_SCHEMA.field(name).type)
        )
    return table
