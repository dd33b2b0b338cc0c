"""A relay that rewrites the gRPC messages a client streams, so a test can send any bytes.

pyarrow's Flight client only writes the IPC it serializes itself, and there is
no gRPC library here to hand-craft calls with. ``RewriteProxy`` sits in front
of a server (a ``CutProxy`` underneath) and, for every HTTP/2 stream the client
opens, holds back the DATA frames until the client ends the stream, passes the
stream's gRPC messages to ``rewrite`` and sends what it returns instead. Other
frames (headers, settings, window updates) pass untouched, so the real client
still speaks HTTP/2 and reads the server's answer and error ``extra_info``.

The stream must fit in the server's flow-control window (64 KiB): the proxy
holds it whole. Plain text only (``grpc://``).

Helpers split a ``FlightData`` protobuf into its fields and join them back
(``flight_data_fields`` / ``flight_data_bytes``), so a rewrite can change the
IPC metadata (``data_header``), the IPC body (``data_body``) or the
``app_metadata`` and still send a well-formed protobuf; or not.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from support.proxy import UP, CutProxy

__all__ = [
    "RewriteProxy",
    "Rewrite",
    "flight_data_fields",
    "flight_data_bytes",
    "DESCRIPTOR",
    "DATA_HEADER",
    "APP_METADATA",
    "DATA_BODY",
]

# FlightData field numbers (Flight.proto); all four are length-delimited.
DESCRIPTOR, DATA_HEADER, APP_METADATA, DATA_BODY = 1, 2, 3, 1000

Rewrite = Callable[[list[bytes]], list[bytes]]
"""Takes one stream's gRPC messages (FlightData protobufs), returns the ones to send."""

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DATA, _RST_STREAM = 0, 3
_END_STREAM, _PADDED = 0x1, 0x8
_MAX_FRAME = 16_384


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if not byte & 0x80:
            return value, at


def flight_data_fields(message: bytes) -> list[tuple[int, bytes]]:
    """``(field number, value)`` of each length-delimited field of a FlightData, in order."""
    fields, at = [], 0
    while at < len(message):
        tag, at = _read_varint(message, at)
        if tag & 7 != 2:
            raise ValueError(f"field {tag >> 3} is not length-delimited")
        size, at = _read_varint(message, at)
        fields.append((tag >> 3, message[at : at + size]))
        at += size
    return fields


def flight_data_bytes(fields: list[tuple[int, bytes]]) -> bytes:
    """The FlightData protobuf holding ``fields`` (the inverse of ``flight_data_fields``)."""
    return b"".join(
        _varint(number << 3 | 2) + _varint(len(value)) + value for number, value in fields
    )


def _split_grpc(data: bytes) -> list[bytes]:
    messages, at = [], 0
    while at + 5 <= len(data):
        size = int.from_bytes(data[at + 1 : at + 5], "big")
        messages.append(data[at + 5 : at + 5 + size])
        at += 5 + size
    return messages


def _join_grpc(messages: list[bytes]) -> bytes:
    return b"".join(b"\0" + len(m).to_bytes(4, "big") + m for m in messages)


def _data_frames(stream: int, payload: bytes) -> bytes:
    chunks = [payload[i : i + _MAX_FRAME] for i in range(0, len(payload), _MAX_FRAME)] or [b""]
    frames = bytearray()
    for number, chunk in enumerate(chunks):
        flags = _END_STREAM if number == len(chunks) - 1 else 0
        frames += len(chunk).to_bytes(3, "big") + bytes([_DATA, flags])
        frames += stream.to_bytes(4, "big") + chunk
    return bytes(frames)


class _Connection:
    """The client->server bytes of one connection: frames parsed, DATA held per stream."""

    def __init__(self, proxy: RewriteProxy) -> None:
        self._proxy = proxy
        self._buffer = bytearray()
        self._preface = len(_PREFACE)
        self._held: dict[int, bytearray] = {}

    def feed(self, data: bytes) -> bytes:
        self._buffer += data
        out = bytearray()
        if self._preface:
            taken = bytes(self._buffer[: self._preface])
            del self._buffer[: len(taken)]
            self._preface -= len(taken)
            out += taken
        while len(self._buffer) >= 9:
            size = int.from_bytes(self._buffer[:3], "big")
            if len(self._buffer) < 9 + size:
                break
            frame = bytes(self._buffer[: 9 + size])
            del self._buffer[: 9 + size]
            out += self._frame(frame)
        return bytes(out)

    def _frame(self, frame: bytes) -> bytes:
        kind, flags = frame[3], frame[4]
        stream = int.from_bytes(frame[5:9], "big") & 0x7FFF_FFFF
        if kind == _RST_STREAM:
            self._held.pop(stream, None)
        if kind != _DATA:
            return frame
        payload = frame[9:]
        if flags & _PADDED:
            payload = payload[1 : len(payload) - payload[0]]
        held = self._held.setdefault(stream, bytearray())
        held += payload
        if not flags & _END_STREAM:
            return b""
        del self._held[stream]
        return _data_frames(stream, self._proxy.rewritten(bytes(held)))


class RewriteProxy(CutProxy):
    """A relay in front of ``host:port`` whose ``rewrite`` edits each client stream.

    ``rewrite`` (None: send as received) may be swapped between calls;
    ``captured`` holds the messages of the last stream as the client sent them.
    """

    def __init__(self, host: str, port: int, **options: Any) -> None:
        self.rewrite: Rewrite | None = None
        self.captured: list[bytes] = []
        self._connections: dict[Any, _Connection] = {}
        self._rewrite_lock = threading.Lock()
        super().__init__(host, port, **options)

    def rewritten(self, stream: bytes) -> bytes:
        """The DATA bytes to send for a client stream that sent ``stream``."""
        messages = _split_grpc(stream)
        with self._rewrite_lock:
            self.captured = messages
            rewrite = self.rewrite
        return _join_grpc(rewrite(messages) if rewrite else messages)

    def _forward(self, pair: Any, direction: str, sink: Any, data: bytes) -> bool:
        if direction == UP:
            with self._rewrite_lock:
                connection = self._connections.setdefault(pair, _Connection(self))
            data = connection.feed(data)
        return super()._forward(pair, direction, sink, data)
