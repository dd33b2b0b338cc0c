"""``MemoryFlightServer``: decode the request, call the store, encode the answer.

Nothing here knows SQL or index files. Every handler runs inside
``flight_errors`` so bad input gets a specific Flight error, the server keeps
serving, and nothing stored changes.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight

from aios_memory.client.codec.vectors import normalize
from aios_memory.flight_server.auth.access import (
    check_sync,
    describe_grant,
    public_stats,
    read_view,
)
from aios_memory.flight_server.auth.access import (
    grant_of as _grant_of,
)
from aios_memory.flight_server.auth.access import (
    who as _who,
)
from aios_memory.flight_server.auth.audit import AuditLog
from aios_memory.flight_server.auth.middleware import TokenAuthMiddlewareFactory
from aios_memory.flight_server.auth.tokens import TokenAuthority
from aios_memory.flight_server.store.base import Store
from aios_memory.flight_server.sync.session import SyncedStore, SyncSession
from aios_memory.schemas import (
    ACTIONS,
    DEFAULT_TENANT,
    EXTERNAL_EMBED_MODEL,
    PUT_PATH,
    RECORD_SCHEMA,
    REENCODE_PATH,
    SCHEMA_VERSION,
    WIRE_VERSION,
    AiosMemoryError,
    CompactRequest,
    ConnectionFailedError,
    EmbedderError,
    Grant,
    IdsRequest,
    IncompleteWriteError,
    InvalidRequestError,
    InvalidValueError,
    LimitExceededError,
    Limits,
    PermissionDeniedError,
    PutAck,
    PutCommit,
    ScanRequest,
    SearchRequest,
    StatsRequest,
    SyncAccept,
    SyncFinish,
    SyncOpen,
    SyncProtocolError,
    validate_record_schema,
)
from aios_memory.sync.protocol.frames import encode_frame, read_frame
from aios_memory.sync.protocol.reconcile import Message

from ._flight_errors import flight_errors
from .embedder import DEFAULT_EMBED_BUDGET_SECONDS, EmbedDeadline, Embedder
from .ingest import prepare_write

__all__ = ["MemoryFlightServer", "SERVER_VERSION"]

SERVER_VERSION = "0.1.0"


class MemoryFlightServer(flight.FlightServerBase):
    """The memory server over Arrow Flight; see ``schemas.wire`` for every message."""

    def __init__(
        self,
        location: str,
        store: Store,
        embedder: Embedder | None,
        token: str,
        limits: Limits,
        sync_tiers: tuple[str, ...],
        role: str = "device",
        *,
        authority: TokenAuthority,
        audit: AuditLog,
        tls: dict[str, Any] | None = None,
        embed_budget_seconds: float = DEFAULT_EMBED_BUDGET_SECONDS,
    ) -> None:
        self.audit = audit
        self.embed_budget_seconds = embed_budget_seconds
        # Set when the server starts to stop: puts still embedding give up (nothing stored)
        # so that shutdown, which waits for every handler, takes seconds, not minutes.
        self.stopping = threading.Event()
        # tls: FlightServerBase's TLS keyword arguments (``_tls.server_tls_kwargs``);
        # the location must then be grpc+tls://, or gRPC silently serves plain text.
        super().__init__(
            location,
            middleware={"auth": TokenAuthMiddlewareFactory(token, authority, audit)},
            **(tls or {}),
        )
        self.store, self.embedder, self.limits = store, embedder, limits
        self.sync_tiers, self.role = tuple(sync_tiers), role
        # A cloud endpoint stores only the tiers that sync; a device stores every tier.
        self._allowed_tiers = self.sync_tiers if role == "cloud" else None
        self.started = time.monotonic()
        self._actions = {
            "search": self._search,
            "get": self._get,
            "forget": self._forget,
            "stats": self._stats,
            "health": self._health,
            "whoami": self._whoami,
            "compact": self._compact,
        }

    @contextlib.contextmanager
    def _guarded(self, call: str, context: Any) -> Iterator[Grant]:
        """``flight_errors`` with the caller's grant; every refusal of a right is audited."""
        with flight_errors(call):
            grant = _grant_of(context)
            try:
                yield grant
            except PermissionDeniedError as exc:
                self.audit.record(
                    "denied",
                    _who(grant),
                    call,
                    exc.detail.get("tenant"),
                    exc.message,
                    exc.code,
                    token_id=grant.token_id,
                )
                raise

    # -- discovery --------------------------------------------------------------------------
    def list_flights(self, context: Any, criteria: bytes) -> Iterator[flight.FlightInfo]:
        with self._guarded("list_flights", context) as grant:
            tenant = _tenant_of(criteria)
            view = grant.read_view(tenant)
            counts = self.store.tier_counts(tenant, view)
        for tier in view.tiers:
            yield self._info(ScanRequest(tenant=tenant, tier=tier), *counts[tier])

    def get_flight_info(
        self, context: Any, descriptor: flight.FlightDescriptor
    ) -> flight.FlightInfo:
        with self._guarded("get_flight_info", context) as grant:
            request = _scan_request(descriptor)
            view = read_view(grant, request.tenant, request.tier)
            if isinstance(request.tier, str) and request.where is None and request.ids is None:
                counts = self.store.tier_counts(request.tenant, view)
                return self._info(request, *counts[request.tier])
            return self._info(request, -1, -1)

    def get_schema(self, context: Any, descriptor: flight.FlightDescriptor) -> flight.SchemaResult:
        # Every descriptor has the record schema, and pyarrow 26 sends a Python traceback
        # (not our error) for anything this callback raises: so it never looks inside.
        return flight.SchemaResult(RECORD_SCHEMA)

    def _info(self, request: ScanRequest, rows: int, size: int) -> flight.FlightInfo:
        body = request.to_bytes()
        return flight.FlightInfo(
            RECORD_SCHEMA,
            flight.FlightDescriptor.for_command(body),
            [flight.FlightEndpoint(body, [])],
            rows,
            size,
        )

    # -- reading ----------------------------------------------------------------------------
    def do_get(self, context: Any, ticket: flight.Ticket) -> flight.FlightDataStream:
        with self._guarded("do_get", context) as grant:
            request = ScanRequest.from_bytes(ticket.ticket)
            self._check_ids(request.ids or [])
            batches = self.store.scan(request, view=read_view(grant, request.tenant, request.tier))
            first = next(batches, None)  # surface filter errors before the stream starts
        return flight.GeneratorStream(RECORD_SCHEMA, _chain(first, batches))

    # -- writing ----------------------------------------------------------------------------
    def do_put(
        self,
        context: Any,
        descriptor: flight.FlightDescriptor,
        reader: flight.MetadataRecordBatchReader,
        writer: flight.FlightMetadataWriter,
    ) -> None:
        with self._guarded("do_put", context) as grant:
            reencode = _is_reencode(descriptor)  # a wrong descriptor is refused before any read
            validate_record_schema(reader.schema)
            batches, commit = self._read_put(reader)
            # A cut stream ends like a normal one; only the commit message proves it whole.
            if commit is None or context.is_cancelled():
                raise IncompleteWriteError(
                    "the write stream ended before its commit message; nothing was stored. "
                    "Retry the write (retries are idempotent)."
                )
            rows = sum(b.num_rows for b in batches)
            if (commit.batches, commit.rows) != (len(batches), rows):
                raise IncompleteWriteError(
                    f"commit says {commit.batches} batches / {commit.rows} rows, received "
                    f"{len(batches)} / {rows}; nothing was stored"
                )
            deadline = EmbedDeadline(self.embed_budget_seconds, lambda: self._put_stopped(context))
            prepared = prepare_write(
                batches,
                self.embedder,
                self.limits,
                self._allowed_tiers,
                reencode=reencode,
                payloads=self.store.payloads,
                grant=grant,
                deadline=deadline,
            )
            # The client may have gone while its texts were embedded: store nothing for it.
            stopped = self._put_stopped(context)
            if stopped is not None:
                raise stopped
            results = self.store.put(prepared)
            for number, (ids, hlcs) in enumerate(results):
                writer.write(pa.py_buffer(PutAck(batch=number, ids=ids, hlcs=hlcs).to_bytes()))

    def _put_stopped(self, context: Any) -> AiosMemoryError | None:
        """Why a put must be abandoned before it is stored, if it must."""
        if self.stopping.is_set():
            return ConnectionFailedError(
                "the server is stopping; nothing of this write was stored. Retry it once "
                "the server is back (retries are idempotent)."
            )
        if context.is_cancelled():
            return IncompleteWriteError(
                "the client went away before its write was stored; nothing was stored"
            )
        return None

    def _read_put(
        self, reader: flight.MetadataRecordBatchReader
    ) -> tuple[list[pa.RecordBatch], PutCommit | None]:
        batches: list[pa.RecordBatch] = []
        size = rows = 0
        while True:
            try:
                chunk = reader.read_chunk()
            except StopIteration:
                return batches, None
            except flight.FlightError:
                raise
            except (pa.ArrowException, OSError) as exc:  # Flight decodes each message here
                raise InvalidValueError(f"the write stream is not valid Arrow IPC: {exc}") from None
            if chunk.data is not None:
                batches.append(chunk.data)
                # Buffer sizes, not nbytes: nbytes follows offsets that are not validated yet.
                size += chunk.data.get_total_buffer_size()
                rows += chunk.data.num_rows
                if size > self.limits.max_bytes_per_put or rows > self.limits.max_rows_per_put:
                    raise LimitExceededError(
                        f"one put may carry {self.limits.max_rows_per_put} rows and "
                        f"{self.limits.max_bytes_per_put} bytes; split the write"
                    )
            if chunk.app_metadata is not None:
                return batches, PutCommit.from_bytes(chunk.app_metadata.to_pybytes())

    # -- sync -------------------------------------------------------------------------------
    def do_exchange(
        self,
        context: Any,
        descriptor: flight.FlightDescriptor,
        reader: flight.MetadataRecordBatchReader,
        writer: flight.MetadataRecordBatchWriter,
    ) -> None:
        with self._guarded("do_exchange", context) as grant:
            if descriptor.descriptor_type != flight.DescriptorType.CMD:
                raise InvalidRequestError("a sync exchange opens with a SyncOpen command")
            request = SyncOpen.from_bytes(descriptor.command)
            check_sync(grant, request.tenant, request.tiers or self.sync_tiers)
            if not isinstance(self.store, SyncedStore):
                raise InvalidRequestError(
                    f"this server's store ({type(self.store).__name__}) keeps no sync "
                    "bookkeeping, so it cannot take part in a sync round; sync with a server "
                    "on the DuckDB or lake store"
                )
            session = SyncSession(
                self.store,
                request,
                self.sync_tiers,
                lambda batches: self._apply_synced(batches, grant),
            )
            writer.begin(RECORD_SCHEMA)
            writer.write_metadata(pa.py_buffer(encode_frame(session.accept())))
            if request.role == "initiator":
                _send(writer, *session.first())
            while not context.is_cancelled():
                incoming = read_frame(reader)
                if incoming is None or isinstance(incoming.value, SyncFinish):
                    # The daemon closed or finished the round: say what was stored.
                    if incoming is not None and isinstance(incoming.value, SyncFinish):
                        session.finish(incoming.value)
                    writer.write_metadata(pa.py_buffer(encode_frame(session.summary())))
                    return
                if isinstance(incoming.value, SyncAccept):
                    session.hear_hub_accept(incoming.value)
                    continue
                if not isinstance(incoming.value, Message):
                    raise SyncProtocolError("expected a reconciliation message")
                _send(writer, *session.step(incoming.value, incoming.batches))

    def _apply_synced(self, batches: list[pa.RecordBatch], grant: Grant) -> None:
        for batch in batches:
            if batch.num_rows:
                validate_record_schema(batch.schema)
                self.store.put(
                    prepare_write(
                        [batch],
                        self.embedder,
                        self.limits,
                        self._allowed_tiers,
                        payloads=self.store.payloads,
                        grant=grant,
                    )
                )

    # -- actions ----------------------------------------------------------------------------
    def list_actions(self, context: Any) -> list[tuple[str, str]]:
        return list(ACTIONS.items())

    def do_action(self, context: Any, action: flight.Action) -> Iterator[flight.Result]:
        with self._guarded(f"do_action {action.type}", context) as grant:
            handler = self._actions.get(action.type)
            if handler is None:
                raise InvalidRequestError(
                    f"unknown action {action.type!r}; actions are {', '.join(ACTIONS)}"
                )
            if action.body is not None and action.body.size > self.limits.max_request_bytes:
                raise LimitExceededError(  # before copying or parsing it
                    f"the {action.type} request is {action.body.size} bytes; the limit is "
                    f"{self.limits.max_request_bytes}",
                    limit=self.limits.max_request_bytes,
                )
            body = action.body.to_pybytes() if action.body is not None else b""
            result = handler(body, grant)
        return iter([flight.Result(result)])

    def _search(self, body: bytes, grant: Grant) -> pa.Buffer:
        request = SearchRequest.from_bytes(body)
        if request.k > self.limits.max_k:
            raise LimitExceededError(f"k={request.k} is over the limit {self.limits.max_k}")
        view = read_view(grant, request.tenant, request.tier)
        vector, model = self._query_vector(request)
        return _ipc(self.store.search(request, vector, model, view=view))

    def _query_vector(self, request: SearchRequest) -> tuple[np.ndarray | None, str | None]:
        if request.embedding is not None:
            return normalize(request.embedding).astype(
                np.float32
            ), request.embed_model or EXTERNAL_EMBED_MODEL
        if request.mode == "keyword" or request.query is None:
            return None, None
        if self.embedder is None:
            if request.mode == "vector":
                raise EmbedderError(
                    "this server has no embedder (--embedder none): pass "
                    "an embedding, or use mode='keyword'"
                )
            return None, None  # hybrid degrades to keyword-only
        if request.embed_model not in (None, self.embedder.name):
            raise EmbedderError(
                f"this server embeds with {self.embedder.name!r}, not "
                f"{request.embed_model!r}; pass the query's embedding instead"
            )
        return self.embedder.embed_query(request.query), self.embedder.name

    def _get(self, body: bytes, grant: Grant) -> pa.Buffer:
        request = IdsRequest.from_bytes(body)
        self._check_ids(request.ids)
        view = grant.read_view(request.tenant)
        return _ipc(self.store.get(request.tenant, request.ids, view=view))

    def _forget(self, body: bytes, grant: Grant) -> bytes:
        request = IdsRequest.from_bytes(body)
        self._check_ids(request.ids)
        view = grant.write_view(request.tenant)
        if not view.tiers:  # a read-only grant: "forgot 0" would hide the refusal
            raise grant.denied("forget", request.tenant, "it may write no tier")
        # Ids outside the caller's view are left alone exactly like unknown ones.
        done = self.store.forget(request.tenant, request.ids, view=view)
        return _json(
            {"forgotten": len(done), "ids": [i for i, _ in done], "hlcs": [h for _, h in done]}
        )

    def _stats(self, body: bytes, grant: Grant) -> bytes:
        request = StatsRequest.from_bytes(body) if body else StatsRequest()
        view = grant.read_view(request.tenant)
        stats = self.store.stats(request.tenant, view=view)
        stats["embedder"] = self.embedder.name if self.embedder else None
        return _json(public_stats(stats, view, grant))

    def _compact(self, body: bytes, grant: Grant) -> bytes:
        request = CompactRequest.from_bytes(body) if body else CompactRequest()
        if not grant.is_owner:
            raise grant.denied(
                "compact",
                grant.tenant or "",
                "it rewrites every tenant's storage: the server's owner token only",
            )
        if request.dry_run:
            return _json({"compacted": False, "reason": "dry run", "waste": self.store.waste()})
        return _json(self.store.compact(request.min_waste))

    def _whoami(self, body: bytes, grant: Grant) -> bytes:
        return _json(describe_grant(grant))

    def _health(self, body: bytes, grant: Grant) -> bytes:
        # Degraded: reads answer, writes are refused with STORAGE_FULL/STORAGE_ERROR until
        # the store heals by itself (see store._durable).
        reason = self.store.degraded()
        return _json(
            {
                "status": "ok" if reason is None else "degraded",
                **({} if reason is None else {"reason": reason}),
                "version": SERVER_VERSION,
                "schema_version": SCHEMA_VERSION,
                "wire_version": WIRE_VERSION,
                "replica_id": self.store.replica_id,
                "role": self.role,
                "sync_tiers": list(self.sync_tiers),
                "uptime_s": round(time.monotonic() - self.started, 3),
            }
        )

    def _check_ids(self, ids: list[str]) -> None:
        if len(ids) > self.limits.max_ids_per_call:
            raise LimitExceededError(
                f"{len(ids)} ids in one call; the limit is {self.limits.max_ids_per_call}"
            )


def _send(
    writer: flight.MetadataRecordBatchWriter, message: Message, batches: Iterable[pa.RecordBatch]
) -> None:
    writer.write_metadata(pa.py_buffer(encode_frame(message)))
    for batch in batches:
        writer.write_batch(batch)


def _tenant_of(criteria: bytes | None) -> str:
    if not criteria:
        return DEFAULT_TENANT
    return StatsRequest.from_bytes(criteria).tenant


def _is_reencode(descriptor: flight.FlightDescriptor) -> bool:
    path = [p.decode() if isinstance(p, bytes) else p for p in (descriptor.path or [])]
    if path not in ([PUT_PATH], [PUT_PATH, REENCODE_PATH]):
        raise InvalidRequestError(
            f"do_put takes the path [{PUT_PATH!r}] or [{PUT_PATH!r}, {REENCODE_PATH!r}], not {path}"
        )
    return path == [PUT_PATH, REENCODE_PATH]


def _scan_request(descriptor: flight.FlightDescriptor) -> ScanRequest:
    if descriptor.descriptor_type != flight.DescriptorType.CMD:
        raise InvalidRequestError("descriptors are commands holding a ScanRequest")
    return ScanRequest.from_bytes(descriptor.command)


def _chain(
    first: pa.RecordBatch | None, rest: Iterator[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    if first is not None:
        yield first
        yield from rest


def _ipc(table: pa.Table) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as out:
        out.write_table(table)
    return sink.getvalue()


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps({"v": WIRE_VERSION, **body}, separators=(",", ":")).encode()
