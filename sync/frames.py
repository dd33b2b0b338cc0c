"""Framing of a sync round on a Flight ``do_exchange``: one module for both ends.

Every sync message is one FlightData whose ``app_metadata`` is a frame,
followed by as many FlightData as the message announces, each carrying one
record batch and no metadata. A frame is a kind byte and a body::

    0x01  a reconciliation ``Message`` (sync/reconcile.py)
    0x02  a JSON control message of ``schemas.wire`` (SyncAccept, SyncFinish, SyncSummary)
"""

from __future__ import annotations

from typing import Any, Union

import pyarrow as pa

from aios_memory.schemas import (
    SyncAccept,
    SyncFinish,
    SyncProtocolError,
    SyncSummary,
    decode_message,
)

from .reconcile import Message

__all__ = ["FRAME_MESSAGE", "FRAME_CONTROL", "encode_frame", "decode_frame", "read_frame",
           "Control", "MAX_BATCHES_PER_MESSAGE"]

FRAME_MESSAGE, FRAME_CONTROL = 0x01, 0x02
MAX_BATCHES_PER_MESSAGE = 1 << 20
Control = Union[SyncAccept, SyncFinish, SyncSummary]
_CONTROLS = {c.TYPE: c for c in (SyncAccept, SyncFinish, SyncSummary)}


def encode_frame(value: Message | Control) -> bytes:
    if isinstance(value, Message):
        return bytes([FRAME_MESSAGE]) + value.encode()
    return bytes([FRAME_CONTROL]) + value.to_bytes()


def decode_frame(data: bytes) -> Message | Control:
    """A frame's message; anything else is a ``SyncProtocolError``."""
    if not data:
        raise SyncProtocolError("an empty sync frame")
    kind, body = data[0], data[1:]
    if kind == FRAME_MESSAGE:
        return Message.decode(body)
    if kind == FRAME_CONTROL:
        cls = _CONTROLS.get(decode_message(body))
        if cls is None:
            raise SyncProtocolError("unknown sync control message")
        return cls.from_bytes(body)
    raise SyncProtocolError(f"unknown sync frame kind 0x{kind:02x}")


def read_frame(reader: Any) -> tuple[Message | Control, list[pa.RecordBatch], int] | None:
    """The next frame and its record batches from a Flight reader, or None at the stream's end.

    Returns ``(value, batches, bytes)`` where ``bytes`` counts the frame and
    the batches' IPC bodies. Batches are not validated here: the store
    validates fully what it applies.
    """
    chunk = _next(reader)
    if chunk is None:
        return None
    if chunk.app_metadata is None:
        raise SyncProtocolError("a sync message must start with a frame, not a record batch")
    raw = chunk.app_metadata.to_pybytes()
    value = decode_frame(raw)
    batches: list[pa.RecordBatch] = []
    size = len(raw)
    expected = value.batches if isinstance(value, Message) else 0
    if expected > MAX_BATCHES_PER_MESSAGE:
        raise SyncProtocolError(f"a sync message announces {expected} batches")
    for _ in range(expected):
        data = _next(reader)
        if data is None or data.data is None or data.app_metadata is not None:
            raise SyncProtocolError("a sync message ended before the batches it announced")
        batches.append(data.data)
        size += pa.ipc.get_record_batch_size(data.data)
    return value, batches, size


def _next(reader: Any) -> Any:
    try:
        return reader.read_chunk()
    except StopIteration:
        return None
