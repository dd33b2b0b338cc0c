"""What reads return: ``Memory`` and ``Hit``, decoded and checked from Arrow rows."""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
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
    AiosMemoryError,
    CorruptDataError,
    KeyMissingError,
)

from ._when import occurred_at_of

_PLAIN = Codebook()

__all__ = [
    "Memory",
    "Hit",
    "UnopenedMemoryWarning",
    "memories_from_table",
    "hits_from_table",
    "with_text",
    "row_text",
]


class UnopenedMemoryWarning(UserWarning):
    """Some end-to-end encrypted memories of a read could not be opened on this side.

    The read still returns every other memory. Each unopened one comes back as
    stored, marked: ``Memory.unopened`` / ``Hit.unopened`` holds the error code
    (``KEY_MISSING``: this side lacks the tenant's key, see ``aimem keys import``;
    ``TAMPERED``: the ciphertext does not authenticate), its ``text`` is ``""``
    and its metadata is what travels in clear; in ``iter_scan``/``scan``/``aimem
    export`` its ``text`` is null. ``ids`` lists them; ``codes`` maps id -> code.
    A read that could open none of its records raises the error instead.
    """

    def __init__(self, message: str, codes: Mapping[str, str]) -> None:
        super().__init__(message)
        self.codes = dict(codes)
        self.ids = list(codes)


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
    unopened : str or None
        None for a memory read whole. For an end-to-end encrypted one this side
        could not open, the error code (``KEY_MISSING`` or ``TAMPERED``): its text
        is then ``""`` and its sealed fields empty (see ``UnopenedMemoryWarning``).
    occurred_at : datetime or None
        When it happened (UTC), as written with ``remember(occurred_at=...)``; None
        when it was not given. Read from metadata's ``aimem:occurred_at``, which
        ``metadata`` keeps too (records get a column for it in storage v2, issue 18).
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
    unopened: str | None = None
    occurred_at: datetime | None = None


@dataclass(frozen=True)
class Hit:
    """One recall result, best first; ``score`` is the fused relevance (higher is better).

    Attributes
    ----------
    id, text, tier, metadata, created_at, kind, session, agent, privacy, occurred_at
        As in ``Memory``.
    score : float
        The server's fused score for the query.
    unopened : str or None
        As in ``Memory``: the error code of a sealed memory this side could not open.
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
    unopened: str | None = None
    occurred_at: datetime | None = None


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


def _open(row: dict[str, Any], codebook: Codebook) -> tuple[dict[str, Any], AiosMemoryError | None]:
    """``row`` opened, or as stored with the error when this side cannot open it."""
    try:
        return dict(codebook.open(row)), None
    except (KeyMissingError, CorruptDataError) as exc:  # CorruptDataError: TamperedError too
        return row, exc


def _tolerant(
    rows: Sequence[dict[str, Any]], codebook: Codebook, *, strict: bool = True
) -> list[dict[str, Any]]:
    """Every row opened, the unopenable ones marked ``_unopened`` with their error code.

    When ``strict``, warns (``UnopenedMemoryWarning``) when some rows could not be
    opened, and raises the first error when none of the rows could be: there is nothing
    to return. Not strict, it leaves the marked rows to its caller.
    """
    opened = [_open(row, codebook) for row in rows]
    failed = {row["id"]: error for row, error in opened if error is not None}
    if strict and failed and len(failed) == len(opened):
        raise next(iter(failed.values()))
    if strict and failed:
        codes = {memory_id: error.code for memory_id, error in failed.items()}
        warnings.warn(
            UnopenedMemoryWarning(
                f"{len(codes)} end-to-end encrypted memories could not be opened here and "
                f"come back without their text: {', '.join(codes)} "
                f"({next(iter(failed.values())).message})",
                codes,
            ),
            stacklevel=4,
        )
    return [{**row, "_unopened": None if error is None else error.code} for row, error in opened]


def _common(row: dict[str, Any], codebook: Codebook) -> dict[str, Any]:
    unopened = row.pop("_unopened", None)
    metadata = _metadata(row["metadata"], row["id"])
    return {
        "id": row["id"],
        "text": "" if unopened else row_text(row, codebook) or "",
        "tier": row["tier"],
        "metadata": metadata,
        "occurred_at": occurred_at_of(metadata),
        "created_at": row["created_at"],
        "kind": row["kind"],
        "session": row["session"],
        "agent": row["agent"],
        "privacy": row["privacy"],
        "unopened": unopened,
    }


def memories_from_table(table: pa.Table, codebook: Codebook = _PLAIN) -> list[Memory]:
    """A ``Memory`` per RECORD_SCHEMA row (see ``UnopenedMemoryWarning`` for sealed ones)."""
    return [
        Memory(**_common(row, codebook), hlc=row["hlc"])
        for row in _tolerant(table.to_pylist(), codebook)
    ]


def hits_from_table(table: pa.Table, codebook: Codebook = _PLAIN) -> list[Hit]:
    """A ``Hit`` per HIT_SCHEMA row, in the server's order (best first)."""
    return [
        Hit(**_common(row, codebook), score=row["score"])
        for row in _tolerant(table.to_pylist(), codebook)
    ]


def with_text(
    batch: pa.RecordBatch, codebook: Codebook = _PLAIN, *, strict: bool = True
) -> pa.RecordBatch:
    """``batch`` plus a decoded ``text`` string column (null for tombstones and dictionaries).

    Sealed records come out opened: the fields their client wrote, not the ciphertext.
    One this side cannot open comes out as stored with a null text, and a warning
    lists it (``UnopenedMemoryWarning``); a batch of which nothing opens raises. Not
    ``strict``, neither: the caller finds the null texts itself.
    """
    if CODEC_SEALED in batch.column("codec").to_pylist():
        rows = _tolerant(batch.to_pylist(), codebook, strict=strict)
        texts = [None if row.pop("_unopened") else row_text(row, codebook) for row in rows]
        opened = pa.RecordBatch.from_pylist(rows, schema=RECORD_SCHEMA)
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
