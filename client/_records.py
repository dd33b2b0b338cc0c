"""Turning what a caller passes into record batches, checked before any byte moves."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
from aios_memory.schemas import (
    DEFAULT_LIMITS,
    PRIVACY_LEVELS,
    RECORD_SCHEMA,
    InvalidValueError,
    InvalidVectorError,
    TIERS,
    TextTooLargeError,
    UnknownTierError,
    new_id,
    validate_record_batch,
)

from .codecs import EncodedText, encode_text, utf8
from .importers import MemoryInput
from .vectors import normalize, quantize

__all__ = [
    "Defaults", "MAX_BATCH_ROWS", "MAX_BATCH_BYTES", "MAX_PUT_BYTES",
    "Encoder", "prepare_embeddings", "encode_rows", "chunk_rows",
    "rows_to_batch", "plan_puts",
]

MAX_BATCH_ROWS = 4096
MAX_BATCH_BYTES = 8 * 1024 * 1024
MAX_PUT_BYTES = 32 * 1024 * 1024
_ROW_OVERHEAD = 160  # fixed-width columns, ids and offsets: a generous estimate per row

Encoder = Callable[[str, str, "str | None"], EncodedText]
"""``(text, tier, agent) -> EncodedText``: how the client's codec policy compresses a text."""


def _plain_encoder(text: str, tier: str, agent: str | None) -> EncodedText:
    return encode_text(text)


@dataclass(frozen=True)
class Defaults:
    """Field values for items that do not name their own."""

    tenant: str
    embed_model: str
    tier: str = "working"
    kind: str = "text"
    session: str | None = None
    agent: str | None = None
    privacy: int = 1
    encode: Encoder = _plain_encoder


def prepare_embeddings(embeddings: Any, count: int) -> list[np.ndarray | None]:
    """One quantized-ready unit vector per text (or ``None`` each when not supplied)."""
    if embeddings is None:
        return [None] * count
    rows = list(embeddings)
    if len(rows) != count:
        raise InvalidVectorError(f"{len(rows)} embeddings for {count} texts; give one per text")
    vectors = [normalize(v, row=i) for i, v in enumerate(rows)]
    if len({v.size for v in vectors}) > 1:
        raise InvalidVectorError("embeddings in one call must all have the same dimension")
    return list(vectors)


def encode_rows(items: Iterable[MemoryInput], vectors: Iterable[np.ndarray | None],
                defaults: Defaults) -> Iterator[dict[str, Any]]:
    """One record (a dict of field values) per item, in order."""
    now = datetime.now(timezone.utc)
    # Not strict: remember_many passes an endless repeat(None) for vectors.
    for row, (item, vector) in enumerate(zip(items, vectors)):  # noqa: B905
        yield _encode_row(item, vector, defaults, now, row)


def _encode_row(item: MemoryInput, vector: np.ndarray | None, defaults: Defaults,
                now: datetime, row: int) -> dict[str, Any]:
    if len(utf8(item.text)) > DEFAULT_LIMITS.max_text_bytes:
        raise TextTooLargeError(
            f"text {row} is over {DEFAULT_LIMITS.max_text_bytes} bytes; split it into several "
            "memories", row=row, limit=DEFAULT_LIMITS.max_text_bytes)
    tier, agent = _pick(item.tier, defaults.tier), _name(item.agent, defaults.agent, "agent")
    fields = {
        "id": new_id(), "tenant": defaults.tenant, "tier": tier, "agent": agent,
        "session": _name(item.session, defaults.session, "session"),
        "kind": _name(item.kind, defaults.kind, "kind"),
        "created_at": now, "hlc": 0, "origin": "", "privacy": _privacy(item.privacy, defaults),
        "metadata": _metadata(item.metadata, row), "deleted": False,
    }
    if tier not in TIERS:  # before encoding: the policy may ask the server for dictionaries
        raise UnknownTierError(f"unknown tier {tier!r} at row {row}; tiers are "
                               f"{', '.join(TIERS)}", field="tier", row=row, tier=str(tier))
    encoded = defaults.encode(item.text, tier, agent)
    codes, scales = quantize(vector) if vector is not None else (None, None)
    return {
        **fields, "codec": encoded.codec, "dict_id": encoded.dict_id, "payload": encoded.payload,
        "raw_size": encoded.raw_size, "content_hash": encoded.content_hash,
        "embedding": codes, "embedding_scale": None if scales is None else float(scales),
        "embed_model": defaults.embed_model if codes is not None else None,
    }


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value


def _name(value: Any, default: Any, field: str) -> str | None:
    chosen = _pick(value, default)
    if chosen is not None and not isinstance(chosen, str):
        raise InvalidValueError(f"{field} must be a string, not {type(chosen).__name__}",
                                field=field)
    return chosen


def _privacy(value: Any, defaults: Defaults) -> int:
    chosen = _pick(value, defaults.privacy)
    if isinstance(chosen, bool) or chosen not in PRIVACY_LEVELS:
        raise InvalidValueError(
            f"privacy must be 0 (public), 1 (personal), 2 (private) or 3 (secret), not {chosen!r}",
            field="privacy")
    return int(chosen)


def _metadata(value: Any, row: int) -> str | None:
    if value is None or value == {}:
        return None
    if not isinstance(value, dict):
        raise InvalidValueError(f"metadata {row} must be a dict, not {type(value).__name__}",
                                field="metadata", row=row)
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidValueError(f"metadata {row} is not JSON: {exc}", field="metadata",
                                row=row) from None


def _row_bytes(row: dict[str, Any]) -> int:
    size = _ROW_OVERHEAD + len(row["payload"]) + len(row["metadata"] or "")
    size += sum(len(row[k] or "") for k in ("agent", "session", "kind"))
    return size + (len(row["embedding"]) if row["embedding"] is not None else 0)


def chunk_rows(rows: Iterable[dict[str, Any]], max_rows: int = MAX_BATCH_ROWS,
               max_bytes: int = MAX_BATCH_BYTES) -> Iterator[list[dict[str, Any]]]:
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
        arrays.append(_embedding_array(values) if field.name == "embedding"
                      else _array(values, field))
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


def plan_puts(batches: Iterable[pa.RecordBatch], max_rows: int = DEFAULT_LIMITS.max_rows_per_put,
              max_bytes: int = MAX_PUT_BYTES) -> Iterator[list[pa.RecordBatch]]:
    """Group batches into puts of at most ``max_rows`` rows and about ``max_bytes``."""
    group: list[pa.RecordBatch] = []
    rows = size = 0
    for batch in batches:
        if group and (rows + batch.num_rows > max_rows or size + batch.nbytes > max_bytes):
            yield group
            group, rows, size = [], 0, 0
        group.append(batch)
        rows += batch.num_rows
        size += batch.nbytes
    if group:
        yield group
