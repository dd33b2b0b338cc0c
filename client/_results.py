"""What reads return: ``Memory`` and ``Hit``, decoded and checked from Arrow rows."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa

from aios_memory.client.codec.text import Codebook
from aios_memory.schemas import (
    CODEC_SEALED,
    DEFAULT_LIMITS,
    RECORD_SCHEMA,
    SYSTEM_KINDS,
    CorruptDataError,
)

_PLAIN = Codebook()

__all__ = ["Memory", "Hit", "memories_from_table", "hits_from_table", "with_text", "row_text"]


@dataclass(frozen=True)
class Memory:
    """One memory as stored (its current version).

    Attributes
    ----------
    id : str
        UUIDv7, stable across versions.
    text : str
        The decoded text (checked against its content hash).
    tier : str
        ``core``, ``working``, ``long_term`` or ``shared``.
    metadata : dict
        The JSON object written with it (empty when none).
    created_at : datetime
        When it was first written, UTC.
    kind, session, agent : str or None
        What it is, which conversation, who wrote it.
    privacy : int
        0 public, 1 personal, 2 private, 3 secret.
    hlc : int
        Hybrid logical clock of this version (assigned by the server).
    """

    id: str
    text: str
    tier: str
    metadata: dict[str, Any] = field(hash=False, compare=True)
    created_at: datetime
    kind: str
    session: str | None
    agent: str | None
    privacy: int
    hlc: int = 0


@dataclass(frozen=True)
class Hit:
    """One recall result, best first; ``score`` is the fused relevance (higher is better).

    Attributes
    ----------
    id, text, tier, metadata, created_at, kind, session, agent, privacy
        As in ``Memory``.
    score : float
        The server's fused score for the query.
    """

    id: str
    text: str
    score: float
    tier: str
    metadata: dict[str, Any] = field(hash=False, compare=True)
    created_at: datetime
    kind: str
    session: str | None
    agent: str | None
    privacy: int


def row_text(row: dict[str, Any], codebook: Codebook = _PLAIN) -> str | None:
    """The decoded text of one record row (``None`` for a tombstone or a dictionary)."""
    if row.get("deleted") or row.get("kind") in SYSTEM_KINDS:
        return None
    return codebook.text(row, max_bytes=DEFAULT_LIMITS.max_text_bytes)


def _metadata(text: str | None, memory_id: str) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise CorruptDataError(f"metadata of {memory_id} is not a JSON object", memory_id=memory_id)
    return value


def _common(row: dict[str, Any], codebook: Codebook) -> dict[str, Any]:
    row = dict(codebook.open(row))  # a sealed record shows its own agent, session and metadata
    return {
        "id": row["id"],
        "text": row_text(row, codebook) or "",
        "tier": row["tier"],
        "metadata": _metadata(row["metadata"], row["id"]),
        "created_at": row["created_at"],
        "kind": row["kind"],
        "session": row["session"],
        "agent": row["agent"],
        "privacy": row["privacy"],
    }


def memories_from_table(table: pa.Table, codebook: Codebook = _PLAIN) -> list[Memory]:
    """A ``Memory`` per RECORD_SCHEMA row."""
    return [Memory(**_common(row, codebook), hlc=row["hlc"]) for row in table.to_pylist()]


def hits_from_table(table: pa.Table, codebook: Codebook = _PLAIN) -> list[Hit]:
    """A ``Hit`` per HIT_SCHEMA row, in the server's order (best first)."""
    return [Hit(**_common(row, codebook), score=row["score"]) for row in table.to_pylist()]


def with_text(batch: pa.RecordBatch, codebook: Codebook = _PLAIN) -> pa.RecordBatch:
    """``batch`` plus a decoded ``text`` string column (null for tombstones and dictionaries).

    Sealed records come out opened: the fields their client wrote, not the ciphertext.
    """
    if CODEC_SEALED in batch.column("codec").to_pylist():
        rows = [dict(codebook.open(row)) for row in batch.to_pylist()]
        opened = pa.RecordBatch.from_pylist(rows, schema=RECORD_SCHEMA)
        texts = [row_text(row, codebook) for row in rows]
        return opened.append_column("text", pa.array(texts, type=pa.string()))
    names = (
        "id",
        "kind",
        "agent",
        "codec",
        "dict_id",
        "payload",
        "raw_size",
        "content_hash",
        "deleted",
    )
    columns = {name: batch.column(name).to_pylist() for name in names}
    texts = [
        row_text(dict(zip(names, values, strict=True)), codebook)
        for values in zip(*columns.values(), strict=True)
    ]
    return batch.append_column("text", pa.array(texts, type=pa.string()))
