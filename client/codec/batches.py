"""Record rows (dicts of field values) as validated Arrow batches of the record schema.

Both sides build batches this way: the SDK for what it writes, the sealing
layer for what it seals, so a row that breaks the contract is refused before
any byte moves.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from aios_memory.schemas import RECORD_SCHEMA, InvalidValueError, validate_record_batch

__all__ = ["MAX_BATCH_ROWS", "MAX_BATCH_BYTES", "chunk_rows", "rows_to_batch"]

MAX_BATCH_ROWS = 4096
MAX_BATCH_BYTES = 8 * 1024 * 1024
_ROW_OVERHEAD = 160  # fixed-width columns, ids and offsets: a generous estimate per row


def _row_bytes(row: dict[str, Any]) -> int:
    size = _ROW_OVERHEAD + len(row["payload"]) + len(row["metadata"] or "")
    size += sum(len(row[k] or "") for k in ("agent", "session", "kind"))
    return size + (len(row["embedding"]) if row["embedding"] is not None else 0)


def chunk_rows(
    rows: Iterable[dict[str, Any]], max_rows: int = MAX_BATCH_ROWS, max_bytes: int = MAX_BATCH_BYTES
) -> Iterator[list[dict[str, Any]]]:
    """Group rows into batches of at most ``max_rows`` rows and about ``max_bytes``."""
    chunk: list[dict[str, Any]] = []
    size = 0
    for row in rows:
        row_size = _row_bytes(row)
        if chunk and (len(chunk) >= max_rows or size + row_size > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(row)
        size += row_size
    if chunk:
        yield chunk


def rows_to_batch(rows: Sequence[dict[str, Any]]) -> pa.RecordBatch:
    """A validated RECORD_SCHEMA batch of ``rows``; raises the contract's error for bad input."""
    arrays = []
    for field in RECORD_SCHEMA:
        values = [r[field.name] for r in rows]
        arrays.append(
            _embedding_array(values) if field.name == "embedding" else _array(values, field)
        )
    batch = pa.RecordBatch.from_arrays(arrays, schema=RECORD_SCHEMA)
    validate_record_batch(batch)
    return batch


def _array(values: list[Any], field: pa.Field) -> pa.Array:
    try:
        return pa.array(values, type=field.type)
    except (pa.ArrowException, OverflowError, TypeError, ValueError) as exc:
        raise InvalidValueError(f"bad value for {field.name}: {exc}", field=field.name) from None


def _embedding_array(values: list[np.ndarray | None]) -> pa.Array:
    present = [v for v in values if v is not None]
    if not present:
        return pa.nulls(len(values), type=pa.list_(pa.int8()))
    lengths = [0 if v is None else len(v) for v in values]
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    flat = pa.array(np.concatenate(present), type=pa.int8())
    mask = pa.array([v is None for v in values], pa.bool_())
    return pa.ListArray.from_arrays(offsets, flat, mask=mask)
