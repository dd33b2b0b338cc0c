"""A replica the daemon syncs: a memory server reached over Flight (the only kind so far).

``FlightReplica.open()`` starts one side of a round (a ``do_exchange``) and
returns an ``Exchange`` that sends and receives sync frames, counting bytes.
Every error from the Flight layer comes out as an ``AiosMemoryError``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa

from aios_memory.client.transport import PemSource, Transport, tls_options
from aios_memory.schemas import (
    RECORD_SCHEMA,
    AuthenticationError,
    SyncAccept,
    SyncOpen,
    SyncProtocolError,
    SyncSummary,
)
from aios_memory.sync.protocol.frames import Control, Incoming, encode_frame, read_frame
from aios_memory.sync.protocol.reconcile import Message

__all__ = ["FlightReplica", "Exchange", "DEFAULT_SYNC_TIMEOUT"]

# A round moves records in both directions; its stream may take long on a slow link.
DEFAULT_SYNC_TIMEOUT = 600.0


class Exchange:
    """One open sync exchange with a server; a context manager that always closes it."""

    def __init__(self, errors: Callable[[], Any], writer: Any, reader: Any) -> None:
        self._errors, self._writer, self._reader = errors, writer, reader
        self.bytes_sent = self.frame_bytes = 0
        self.summary: SyncSummary | None = None  # the server's last word, read by close()
        self._received: list[Incoming] = []  # each counts its own bytes as its batches are read
        self._closed = False

    @property
    def bytes_received(self) -> int:
        return sum(incoming.bytes for incoming in self._received)

    def __enter__(self) -> Exchange:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def send(self, value: Message | Control, batches: Iterable[pa.RecordBatch] = ()) -> None:
        """Write a frame, then stream ``batches`` (the message must announce how many)."""
        frame = encode_frame(value)
        with self._errors():
            self._writer.write_metadata(pa.py_buffer(frame))
        self.frame_bytes += len(frame)
        self.bytes_sent += len(frame)
        for batch in batches:
            with self._errors():
                self._writer.write_batch(batch)
            self.bytes_sent += pa.ipc.get_record_batch_size(batch)

    def receive(self) -> Incoming:
        """The next message; its batches stream as they are read (read them all)."""
        with self._errors():
            incoming = read_frame(self._reader)
        if incoming is None:
            raise SyncProtocolError("the server ended the sync exchange in the middle of a round")
        self.frame_bytes += incoming.frame_bytes
        self._received.append(incoming)
        incoming.batches = self._translated(incoming.batches)
        return incoming

    def _translated(self, source: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """``source``'s batches, with Flight errors met while reading them translated."""
        while True:
            with self._errors():
                batch = next(source, None)
            if batch is None:
                return
            yield batch

    def receive_message(self) -> Incoming:
        incoming = self.receive()
        if not isinstance(incoming.value, Message):
            raise SyncProtocolError(
                f"expected a reconciliation message, got {type(incoming.value).__name__}"
            )
        return incoming

    def receive_accept(self) -> SyncAccept:
        incoming = self.receive()
        if not isinstance(incoming.value, SyncAccept):
            raise SyncProtocolError("the server did not accept the sync round")
        return incoming.value

    def close(self) -> None:
        """Finish writing and wait for the server to end its side (raising its error if any)."""
        if self._closed:
            return
        self._closed = True
        with self._errors():
            self._writer.done_writing()
            while (incoming := read_frame(self._reader)) is not None:
                incoming.drain()
                self.frame_bytes += incoming.frame_bytes
                self._received.append(incoming)
                if isinstance(incoming.value, SyncSummary):
                    self.summary = incoming.value
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
        ``grpc://host:port``, or ``grpc+tls://host:port`` for TLS.
    token : str, optional
        Its bearer token.
    timeout : float
        Seconds one round's exchange may take.
    label, token_hint : str
        How errors name this replica and the option that sets its token.
    tls_root_certs, tls_cert, tls_key : path or bytes, optional
        As for ``MemoryClient``: the CA that signed the server's certificate, and a
        client certificate and key when the server requires mutual TLS.
    tls_flags : str
        How errors spell the TLS options (``--cloud-tls-`` names ``--cloud-tls-ca`` ...).
    """

    def __init__(
        self,
        uri: str,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_SYNC_TIMEOUT,
        label: str = "the server",
        token_hint: str = "--token / AIMEM_TOKEN",
        tls_root_certs: PemSource | None = None,
        tls_cert: PemSource | None = None,
        tls_key: PemSource | None = None,
        tls_flags: str = "--tls-",
    ) -> None:
        self.uri, self.label, self.token_hint = uri, label, token_hint
        tls = tls_options(uri, tls_root_certs, tls_cert, tls_key)
        self._transport = Transport(uri, token, timeout, tls, tls_flags)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """The transport's error translation, naming this replica when it refuses the token."""
        try:
            with self._transport.errors():
                yield
        except AuthenticationError as exc:
            raise AuthenticationError(
                f"{self.label} at {self.uri} refused the token: pass {self.token_hint} "
                f"({exc.message})",
                uri=self.uri,
            ) from None

    def __repr__(self) -> str:
        return f"FlightReplica({self.uri!r})"

    def open(self, request: SyncOpen) -> Exchange:
        """Open one side of a round; the first frame to read is the server's ``SyncAccept``."""
        with self._errors():
            writer, reader = self._transport.exchange(request.to_bytes())
        exchange = Exchange(self._errors, writer, reader)
        with self._errors():
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
