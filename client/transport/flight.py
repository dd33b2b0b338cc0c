"""The Flight layer under ``MemoryClient``: calls, timeouts, auth, and error translation.

Every exception from pyarrow or gRPC is translated in one place,
``translate_errors``, so a public method only ever raises the
``AiosMemoryError`` tree::

    server error with extra_info  -> the class it names (decode_error)
    FlightUnavailableError        -> ConnectionFailedError (a TLS handshake that failed
                                     says which TLS option fixes it: see ``_tls``)
    FlightTimedOutError           -> DeadlineExceededError
    FlightUnauthenticatedError    -> AuthenticationError
    FlightUnauthorizedError       -> AuthenticationError
    FlightWriteSizeExceededError  -> LimitExceededError
    anything else from Arrow      -> ServerInternalError
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

from aios_memory.schemas import (
    PUT_PATH,
    RECORD_SCHEMA,
    REENCODE_PATH,
    AiosMemoryError,
    AuthenticationError,
    ConnectionFailedError,
    CorruptDataError,
    DeadlineExceededError,
    InvalidRequestError,
    InvalidValueError,
    LimitExceededError,
    PutAck,
    PutCommit,
    ServerInternalError,
    decode_error,
)

from .tls import TlsOptions, tls_failure

__all__ = ["Transport", "translate_errors", "map_error", "conform", "WRITE_SIZE_LIMIT"]

# A soft cap per serialized batch: the client splits writes far below it (8 MiB).
WRITE_SIZE_LIMIT = 64 * 1024 * 1024
_BOILERPLATE = re.compile(r"^Flight returned [\w ]+ error, with message: ")


@contextmanager
def translate_errors(
    uri: str, timeout: float, tls: TlsOptions | None = None, tls_flags: str = "--tls-"
) -> Iterator[None]:
    """Turn any pyarrow/Flight exception raised inside into an ``AiosMemoryError``."""
    try:
        yield
    except AiosMemoryError:
        raise
    except (flight.FlightError, pa.ArrowException) as exc:
        raise map_error(exc, uri, timeout, tls, tls_flags) from None


def map_error(
    exc: BaseException,
    uri: str,
    timeout: float,
    tls: TlsOptions | None = None,
    tls_flags: str = "--tls-",
) -> AiosMemoryError:
    """The ``AiosMemoryError`` for one exception from the Flight layer.

    ``tls`` is what the client presented (None for plain ``grpc://``) and
    ``tls_flags`` how the options that fix a failed handshake are spelled.
    """
    decoded = decode_error(getattr(exc, "extra_info", None))
    if isinstance(decoded, AuthenticationError) and "AIMEM_TOKEN" not in decoded.message:
        # The server cannot know the client's flags; say how to pass a token here.
        decoded.message = f"{decoded.message}; pass --token / set AIMEM_TOKEN"
        decoded.args = (decoded.message,)
    if decoded is not None:
        return decoded
    reason = _reason(exc)
    if isinstance(exc, flight.FlightUnavailableError):
        handshake = tls_failure(reason, uri, tls, tls_flags)
        if handshake is not None:
            return ConnectionFailedError(f"{handshake} ({reason})", uri=uri)
        return ConnectionFailedError(
            f"could not reach the memory server: is the server running at {uri}? "
            f"start one with `aimem serve --data DIR` ({reason})",
            uri=uri,
        )
    if isinstance(exc, flight.FlightTimedOutError):
        return DeadlineExceededError(
            f"the call to {uri} took longer than its timeout of {timeout:g}s; "
            "pass a larger timeout (--timeout)",
            uri=uri,
            timeout=timeout,
        )
    if isinstance(exc, (flight.FlightUnauthenticatedError, flight.FlightUnauthorizedError)):
        return AuthenticationError(
            f"the server at {uri} refused the token: pass --token / set AIMEM_TOKEN "
            "(or --token-file DATA/token) to the token the server prints",
            uri=uri,
        )
    if isinstance(exc, flight.FlightWriteSizeExceededError):
        return LimitExceededError(f"a batch is too large to send: {reason}", uri=uri)
    if isinstance(exc, flight.FlightCancelledError):
        return ConnectionFailedError(f"the call to {uri} was cancelled ({reason})", uri=uri)
    return ServerInternalError(f"the call to {uri} failed: {reason}", uri=uri)


def _reason(exc: BaseException) -> str:
    # Flight wraps the message in boilerplate and may append a gRPC debug context.
    text = str(exc).split(". Detail:")[0].split(". gRPC client debug context")[0]
    return _BOILERPLATE.sub("", text).strip()


# Tokens are visible ASCII with no spaces: what an HTTP/2 header value may carry.
_TOKEN_TEXT = re.compile(r"^[\x21-\x7e]+$")


def _header_token(token: str) -> bytes:
    """``token`` as header bytes, refused here (not by gRPC on the first call) if damaged."""
    if not _TOKEN_TEXT.match(token):
        raise InvalidValueError(
            "the token has a character no token has (only visible ASCII, no spaces): it is "
            "damaged or not a token; copy it again from the server's DATA/token or from "
            "`aimem token create`",
            field="token",
        )
    return token.encode("ascii")


class Transport:
    """One ``FlightClient`` plus the options every call carries.

    Parameters
    ----------
    uri : str
        ``grpc://host:port`` (or ``grpc+tls://``).
    token : str or None
        Sent as ``authorization: Bearer <token>`` on every call.
    timeout : float
        Seconds each call may take, streams included.
    tls : TlsOptions or None
        CA and client certificate for a ``grpc+tls://`` uri (see ``_tls.tls_options``).
    tls_flags : str
        How error messages spell the TLS options (``--cloud-tls-`` for the sync peer).
    """

    def __init__(
        self,
        uri: str,
        token: str | None,
        timeout: float,
        tls: TlsOptions | None = None,
        tls_flags: str = "--tls-",
    ) -> None:
        self.uri, self.timeout = uri, float(timeout)
        self.tls, self.tls_flags = tls, tls_flags
        self._closed = False
        headers = [(b"authorization", b"Bearer " + _header_token(token))] if token else []
        self._options = flight.FlightCallOptions(headers=headers, timeout=self.timeout)
        try:
            self._client = flight.FlightClient(
                uri, write_size_limit_bytes=WRITE_SIZE_LIMIT, **(tls.flight_kwargs() if tls else {})
            )
        except (pa.ArrowException, ValueError, TypeError) as exc:
            raise InvalidValueError(
                f"{uri!r} is not a server address: use grpc://HOST:PORT or grpc+tls://HOST:PORT "
                f"({exc})",
                uri=uri,
            ) from None

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Context manager translating Flight errors for this server."""
        if self._closed:
            raise InvalidRequestError("this MemoryClient is closed; open a new one")
        with translate_errors(self.uri, self.timeout, self.tls, self.tls_flags):
            yield

    def close(self) -> None:
        """Close the connection; safe to call twice."""
        if not self._closed:
            with self.errors():
                self._client.close()
            self._closed = True

    def action(self, name: str, body: bytes) -> bytes:
        """The body of the one result of action ``name``."""
        with self.errors():
            results = list(self._client.do_action(flight.Action(name, body), self._options))
        if len(results) != 1:
            raise ServerInternalError(
                f"action {name!r} returned {len(results)} results; expected exactly 1"
            )
        answer: bytes = results[0].body.to_pybytes()
        return answer

    def action_json(self, name: str, body: bytes) -> dict[str, Any]:
        """The JSON object the one result of action ``name`` carries."""
        raw = self.action(name, body)
        try:
            value = json.loads(raw)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise CorruptDataError(f"action {name!r} did not return a JSON object")
        return value

    def action_table(self, name: str, body: bytes, schema: pa.Schema) -> pa.Table:
        """The Arrow IPC stream the one result of action ``name`` carries, validated."""
        raw = self.action(name, body)
        try:
            table = pa.ipc.open_stream(pa.py_buffer(raw)).read_all()
            table.validate(full=True)
        except (pa.ArrowException, OSError) as exc:
            raise CorruptDataError(f"action {name!r} returned bad Arrow data: {exc}") from None
        return conform(table, schema)

    def list_flights(self, criteria: bytes) -> list[flight.FlightInfo]:
        """Every FlightInfo the server lists for ``criteria``."""
        with self.errors():
            return list(self._client.list_flights(criteria, self._options))

    def stream(self, ticket: bytes, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        """Batches of a ``do_get``, each validated and conformed to ``schema``."""
        with self.errors():
            reader = self._client.do_get(flight.Ticket(ticket), self._options)
            done = False
            try:
                yield from _batches(reader, schema)
                done = True
            finally:
                if not done:  # the caller stopped early: free the server's stream
                    reader.cancel()

    def exchange(self, command: bytes) -> tuple[Any, Any]:
        """Open a ``do_exchange`` on ``command``; returns Flight's ``(writer, reader)``.

        The caller wraps its reads and writes in ``errors()``.
        """
        with self.errors():
            return self._client.do_exchange(
                flight.FlightDescriptor.for_command(command), self._options
            )

    def put(self, batches: list[pa.RecordBatch], *, reencode: bool = False) -> list[PutAck]:
        """Send ``batches`` as one committed put and return the server's acks.

        ``reencode``: the rows are new encodings of stored versions (``REENCODE_PATH``).
        """
        path = (PUT_PATH, REENCODE_PATH) if reencode else (PUT_PATH,)
        descriptor = flight.FlightDescriptor.for_path(*path)
        with self.errors():
            writer, reader = self._client.do_put(descriptor, RECORD_SCHEMA, self._options)
            try:
                acks = _send(writer, reader, batches)
            except flight.FlightWriteSizeExceededError:
                # The server saw only a stream without its commit: not the cause.
                with contextlib.suppress(flight.FlightError):
                    writer.close()
                raise
            except BaseException:
                writer.close()  # raises the server's own error if it has one
                raise
            writer.close()
        return acks


class _MissingAckError(ServerInternalError):
    """The ack stream ended early; ``close()`` usually reveals why."""


def _send(writer: Any, reader: Any, batches: list[pa.RecordBatch]) -> list[PutAck]:
    for batch in batches:
        writer.write_batch(batch)
    rows = sum(b.num_rows for b in batches)
    writer.write_metadata(PutCommit(batches=len(batches), rows=rows).to_bytes())
    writer.done_writing()
    return [_read_ack(reader, i, batch) for i, batch in enumerate(batches)]


def _read_ack(reader: Any, index: int, batch: pa.RecordBatch) -> PutAck:
    buf = reader.read()
    if buf is None:  # never success: after a deadline read() gives None and close() raises
        raise _MissingAckError(
            f"the server ended the write before acknowledging batch {index}; "
            "it may not be stored: retry"
        )
    ack = PutAck.from_bytes(bytes(buf))
    if (
        ack.batch != index
        or ack.ids != batch.column("id").to_pylist()
        or len(ack.hlcs) != len(ack.ids)
    ):
        raise ServerInternalError(
            f"the server acknowledged batch {index} with {ack.batch} "
            f"and {len(ack.ids)} ids; expected {batch.num_rows} ids"
        )
    return ack


def _batches(reader: Any, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    while True:
        try:
            chunk = reader.read_chunk()
        except StopIteration:
            return
        if chunk.data is None:
            continue
        try:
            chunk.data.validate(full=True)
        except pa.ArrowInvalid as exc:
            raise CorruptDataError(f"the server sent bad Arrow data: {exc}") from None
        yield conform(chunk.data, schema)


def conform(data: Any, schema: pa.Schema) -> Any:
    """``data`` (a Table or RecordBatch) with exactly ``schema``, or CorruptDataError.

    Names and types must match; nullability and schema metadata may differ
    (an engine that produced the data may not keep them) and are restored.
    """
    got = [(f.name, f.type) for f in data.schema]
    want = [(f.name, f.type) for f in schema]
    if got != want:
        raise CorruptDataError(
            f"the server sent columns {[n for n, _ in got]} of types "
            f"{[str(t) for _, t in got]}; expected {schema}"
        )
    if data.schema.equals(schema, check_metadata=True):
        return data
    try:
        return data.cast(schema)
    except (pa.ArrowException, ValueError) as exc:
        raise CorruptDataError(f"the server sent data that breaks the schema: {exc}") from None
