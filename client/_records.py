"""Turning what a caller passes into record batches, checked before any byte moves."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa

from aios_memory.client.codec.text import EncodedText, encode_text, utf8
from aios_memory.client.codec.vectors import normalize, quantize
from aios_memory.schemas import (
    DEFAULT_LIMITS,
    PRIVACY_LEVELS,
    TIERS,
    InvalidValueError,
    InvalidVectorError,
    TextTooLargeError,
    UnknownTierError,
    check_has_text,
    check_metadata_depth,
    new_id,
)

from ._when import with_occurred_at
from .importers import MemoryInput

__all__ = ["Defaults", "MAX_PUT_BYTES", "Encoder", "prepare_embeddings", "encode_rows", "plan_puts"]

MAX_PUT_BYTES = 32 * 1024 * 1024

Encoder = Callable[[str, str, "str | None"], EncodedText]
"""``(text, tier, agent) -> EncodedText``: how the client's codec policy compresses a text."""


def _plain_encoder(text: str, tier: str, agent: str | None) -> EncodedText:
    return encode_text(text)


@dataclass(frozen=True)
class Defaults:
    """Field values for items that do not name their own."""

    tenant: str | Callable[[], str]  # a callable is asked once rows are checked
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


def encode_rows(
    items: Iterable[MemoryInput], vectors: Iterable[np.ndarray | None], defaults: Defaults
) -> Iterator[dict[str, Any]]:
    """One record (a dict of field values) per item, in order."""
    now = datetime.now(timezone.utc)
    tenant: str | None = None
    dims = _SameDimension()
    # Not strict: remember_many passes an endless repeat(None) for vectors.
    for row, (item, vector) in enumerate(zip(items, vectors)):  # noqa: B905
        if vector is None and item.embedding is not None:
            vector = normalize(item.embedding, row=row)
        record = _encode_row(item, dims.check(vector, row), defaults, now, row)
        if tenant is None:  # after the first row's checks: a callable may ask the server
            tenant = defaults.tenant() if callable(defaults.tenant) else defaults.tenant
        yield {**record, "tenant": tenant}


class _SameDimension:
    """Refuses a vector whose length differs from the first one seen: one put, one model."""

    def __init__(self) -> None:
        self._dim: int | None = None

    def check(self, vector: np.ndarray | None, row: int) -> np.ndarray | None:
        if vector is None:
            return None
        if self._dim is None:
            self._dim = vector.size
        elif vector.size != self._dim:
            raise InvalidVectorError(
                f"embedding {row} has {vector.size} dimensions, the ones before it "
                f"{self._dim}; one call takes vectors of one model",
                row=row,
            )
        return vector


def _encode_row(
    item: MemoryInput, vector: np.ndarray | None, defaults: Defaults, now: datetime, row: int
) -> dict[str, Any]:
    if len(utf8(item.text)) > DEFAULT_LIMITS.max_text_bytes:
        raise TextTooLargeError(
            f"text {row} is over {DEFAULT_LIMITS.max_text_bytes} bytes; split it into several "
            "memories",
            row=row,
            limit=DEFAULT_LIMITS.max_text_bytes,
        )
    tier, agent = _pick(item.tier, defaults.tier), _name(item.agent, defaults.agent, "agent")
    fields = {
        "id": new_id(),
        "tenant": "",  # set by encode_rows
        "tier": tier,
        "agent": agent,
        "session": _name(item.session, defaults.session, "session"),
        "kind": _name(item.kind, defaults.kind, "kind"),
        "created_at": now,
        "hlc": 0,
        "origin": "",
        "privacy": _privacy(item.privacy, defaults),
        "metadata": _metadata(with_occurred_at(item.metadata, item.occurred_at, row), row),
        "deleted": False,
    }
    check_has_text(item.text, vector is not None, fields["kind"], row)
    if tier not in TIERS:  # before encoding: the policy may ask the server for dictionaries
        raise UnknownTierError(
            f"unknown tier {tier!r} at row {row}; tiers are {', '.join(TIERS)}",
            field="tier",
            row=row,
            tier=str(tier),
        )
    encoded = defaults.encode(item.text, tier, agent)
    codes, scales = quantize(vector) if vector is not None else (None, None)
    return {
        **fields,
        "codec": encoded.codec,
        "dict_id": encoded.dict_id,
        "payload": encoded.payload,
        "raw_size": encoded.raw_size,
        "content_hash": encoded.content_hash,
        "embedding": codes,
        "embedding_scale": None if scales is None else float(scales),
        "embed_model": defaults.embed_model if codes is not None else None,
    }


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value


def _name(value: Any, default: Any, field: str) -> str | None:
    chosen = _pick(value, default)
    if chosen is not None and not isinstance(chosen, str):
        raise InvalidValueError(
            f"{field} must be a string, not {type(chosen).__name__}", field=field
        )
    return chosen


def _privacy(value: Any, defaults: Defaults) -> int:
    chosen = _pick(value, defaults.privacy)
    if isinstance(chosen, bool) or chosen not in PRIVACY_LEVELS:
        raise InvalidValueError(
            f"privacy must be 0 (public), 1 (personal), 2 (private) or 3 (secret), not {chosen!r}",
            field="privacy",
        )
    return int(chosen)


def _metadata(value: Any, row: int) -> str | None:
    if value is None or value == {}:
        return None
    if not isinstance(value, dict):
        raise InvalidValueError(
            f"metadata {row} must be a dict, not {type(value).__name__}", field="metadata", row=row
        )
    check_metadata_depth(value, row=row)  # before json.dumps, which recurses
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidValueError(
            f"metadata {row} is not JSON: {exc}", field="metadata", row=row
        ) from None


def plan_puts(
    batches: Iterable[pa.RecordBatch],
    max_rows: int = DEFAULT_LIMITS.max_rows_per_put,
    max_bytes: int = MAX_PUT_BYTES,
) -> Iterator[list[pa.RecordBatch]]:
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
