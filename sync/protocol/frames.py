"""Framing of a sync round on a Flight ``do_exchange``: one module for both ends.

Every sync message is one FlightData whose ``app_metadata`` is a frame,
followed by as many FlightData as the message announces, each carrying one
record batch and no metadata. A frame is a kind byte and a body::

    0x01  a reconciliation ``Message`` (sync/reconcile.py)
    0x02  a JSON control message of ``schemas.wire`` (SyncAccept, SyncFinish, SyncSummary)

Batches are streamed, never gathered: a reader hands them out one at a time
(``Incoming.batches``), so a round that moves a million records holds one
batch in memory at a time on every hop.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from aios_memory.schemas import (
    SyncAccept,
    SyncFinish,
    SyncProtocolError,
    SyncSummary,
    decode_message,
)

from .reconcile import Message

__all__ = [
    "FRAME_MESSAGE",
    "FRAME_CONTROL",
    "encode_frame",
    "decode_frame",
    "read_frame",
    "Control",
    "Incoming",
    "MAX_BATCHES_PER_MESSAGE",
]

FRAME_MESSAGE, FRAME_CONTROL = 0x01, 0x02
MAX_BATCHES_PER_MESSAGE = 1 << 20
Control = SyncAccept | SyncFinish | SyncSummary
_CONTROLS = {c.TYPE: c for c in (SyncAccept, SyncFinish, SyncSummary)}


def encode_frame(value: Message | Control) -> bytes:
    if isinstance(value, Message):
        return bytes([FRAME_MESSAGE]) + value.encode()
    return bytes([FRAME_CONTROL]) + value.to_bytes()


def decode_frame(data: bytes) -> Message | Control:
    """A frame's message.

    Raises ``SyncProtocolError`` for a bad frame or reconciliation message, and
    the wire's ``InvalidRequestError``/``UnsupportedVersionError`` for a bad
    JSON control message.
    """
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


class Incoming:
    """One received message: its frame now, its record batches as they are read.

    ``batches`` must be read to the end before the next frame; ``bytes`` and
    ``frame_bytes`` grow as it is.
    """

    def __init__(self, reader: Any, value: Message | Control, frame_bytes: int) -> None:
        self.value, self.frame_bytes, self.bytes = value, frame_bytes, frame_bytes
        self._reader = reader
        self.expected = value.batches if isinstance(value, Message) else 0
        if self.expected > MAX_BATCHES_PER_MESSAGE:
            raise SyncProtocolError(f"a sync message announces {self.expected} batches")
        self.batches = self._read_batches()

    def _read_batches(self) -> Iterator[pa.RecordBatch]:
        for _ in range(self.expected):
            chunk = _next(self._reader)
            if chunk is None or chunk.data is None or chunk.app_metadata is not None:
                raise SyncProtocolError("a sync message ended before the batches it announced")
            self.bytes += pa.ipc.get_record_batch_size(chunk.data)
            yield chunk.data

    def drain(self) -> None:
        for _ in self.batches:
            pass


def read_frame(reader: Any) -> Incoming | None:
    """The next message from a Flight reader, or None at the stream's end.

    Batches are not validated here: the store validates fully what it applies.
    """
    chunk = _next(reader)
    if chunk is None:
        return None
    if chunk.app_metadata is None:
        raise SyncProtocolError("a sync message must start with a frame, not a record batch")
    if chunk.data is not None:
        raise SyncProtocolError("a sync frame carries no record batch; batches follow it")
    raw = chunk.app_metadata.to_pybytes()
    return Incoming(reader, decode_frame(raw), len(raw))


def _next(reader: Any) -> Any:
    try:
        return reader.read_chunk()
    except StopIteration:
        return None
