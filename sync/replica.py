"""A replica the daemon syncs: a memory server reached over Flight (the only kind so far).

``FlightReplica.open()`` starts one side of a round (a ``do_exchange``) and
returns an ``Exchange`` that sends and receives sync frames, counting bytes.
Every error from the Flight layer comes out as an ``AiosMemoryError``.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from aios_memory.client._transport import Transport
from aios_memory.schemas import (
    RECORD_SCHEMA,
    SyncAccept,
    SyncOpen,
    SyncProtocolError,
    SyncSummary,
)

from .frames import Control, encode_frame, read_frame
from .reconcile import Message

__all__ = ["FlightReplica", "Exchange", "DEFAULT_SYNC_TIMEOUT"]

# A round moves records in both directions; its stream may take long on a slow link.
DEFAULT_SYNC_TIMEOUT = 600.0


class Exchange:
    """One open sync exchange with a server; a context manager that always closes it."""

    def __init__(self, transport: Transport, writer: Any, reader: Any) -> None:
        self._transport, self._writer, self._reader = transport, writer, reader
        self.bytes_sent = self.bytes_received = self.frame_bytes = 0
        self.summary: SyncSummary | None = None  # the server's last word, read by close()
        self._closed = False

    def __enter__(self) -> Exchange:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def send(self, value: Message | Control, batches: list[pa.RecordBatch] = ()) -> None:
        frame = encode_frame(value)
        with self._transport.errors():
            self._writer.write_metadata(pa.py_buffer(frame))
            for batch in batches:
                self._writer.write_batch(batch)
        self.frame_bytes += len(frame)
        self.bytes_sent += len(frame) + sum(pa.ipc.get_record_batch_size(b) for b in batches)

    def receive(self) -> tuple[Message | Control, list[pa.RecordBatch]]:
        with self._transport.errors():
            incoming = read_frame(self._reader)
        if incoming is None:
            raise SyncProtocolError("the server ended the sync exchange in the middle of a round")
        value, batches, size = incoming
        self.bytes_received += size
        self.frame_bytes += size - sum(pa.ipc.get_record_batch_size(b) for b in batches)
        return value, batches

    def receive_message(self) -> tuple[Message, list[pa.RecordBatch]]:
        value, batches = self.receive()
        if not isinstance(value, Message):
            raise SyncProtocolError(f"expected a reconciliation message, got {type(value).__name__}")
        return value, batches

    def receive_accept(self) -> SyncAccept:
        value, _ = self.receive()
        if not isinstance(value, SyncAccept):
            raise SyncProtocolError("the server did not accept the sync round")
        return value

    def close(self) -> None:
        """Finish writing and wait for the server to end its side (raising its error if any)."""
        if self._closed:
            return
        self._closed = True
        with self._transport.errors():
            self._writer.done_writing()
            while (incoming := read_frame(self._reader)) is not None:
                if isinstance(incoming[0], SyncSummary):
                    self.summary = incoming[0]
            self._writer.close()

    def abort(self) -> None:
        """Drop the exchange; the server stores nothing more from it."""
        if self._closed:
            return
        self._closed = True
        try:
            self._reader.cancel()
            self._writer.close()
        except Exception:  # the stream is already broken; that is why we abort
            pass


class FlightReplica:
    """A memory server as one end of a sync round.

    Parameters
    ----------
    uri : str
        ``grpc://host:port``.
    token : str, optional
        Its bearer token.
    timeout : float
        Seconds one round's exchange may take.
    """

    def __init__(self, uri: str, token: str | None = None, *,
                 timeout: float = DEFAULT_SYNC_TIMEOUT) -> None:
        self.uri = uri
        self._transport = Transport(uri, token, timeout)

    def __repr__(self) -> str:
        return f"FlightReplica({self.uri!r})"

    def open(self, request: SyncOpen) -> Exchange:
        """Open one side of a round; the first frame to read is the server's ``SyncAccept``."""
        writer, reader = self._transport.exchange(request.to_bytes())
        exchange = Exchange(self._transport, writer, reader)
        with self._transport.errors():
            writer.begin(RECORD_SCHEMA)
        exchange.bytes_sent += len(request.to_bytes())
        exchange.frame_bytes += len(request.to_bytes())
        return exchange

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> FlightReplica:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()
