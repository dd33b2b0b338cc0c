"""Tickets, descriptors, action bodies and put acknowledgements, version 1.

Every message is a JSON object ``{"v": 1, "type": ..., ...}``. Decoding is
strict: an unknown version, type or key is an error naming it, so a typo
in a client never silently widens a query. Only this module builds or
parses these bytes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, TypeVar

from .errors import (
    InvalidRequestError,
    UnknownTierError,
    UnsupportedVersionError,
)
from .filters import FIELD_FILTERS, FILTER_OPERATORS, validate_where
from .record import TIERS

__all__ = [
    "WIRE_VERSION",
    "DEFAULT_PORT",
    "PUT_PATH",
    "REENCODE_PATH",
    "ACTIONS",
    "SEARCH_MODES",
    "FIELD_FILTERS",
    "FILTER_OPERATORS",
    "ScanRequest",
    "SearchRequest",
    "IdsRequest",
    "StatsRequest",
    "CompactRequest",
    "PutCommit",
    "PutAck",
    "SyncOpen",
    "SyncAccept",
    "SyncFinish",
    "SyncSummary",
    "SYNC_ROLES",
    "validate_where",
    "decode_message",
]

WIRE_VERSION = 1
DEFAULT_PORT = 8815
# do_put takes FlightDescriptor.for_path(PUT_PATH); the records say their own tenant and tier.
PUT_PATH = "records"
# for_path(PUT_PATH, REENCODE_PATH): each row is a new encoding of a stored current version.
# It is written only where the stored version still has the same content and fields (so a
# recompression never undoes a concurrent edit); elsewhere the ack carries hlc 0.
REENCODE_PATH = "reencode"
SEARCH_MODES = ("hybrid", "vector", "keyword")
SYNC_ROLES = ("initiator", "responder")
MAX_SUMMARY_IDS = 10_000
ACTIONS = {
    "search": "Hybrid recall: body SearchRequest, result one Arrow IPC stream of hits.",
    "get": "Current versions of ids: body IdsRequest, result one Arrow IPC stream of records.",
    "forget": "Tombstone ids: body IdsRequest, result JSON {forgotten, ids, hlcs}.",
    "stats": "Counts and bytes per tier: body StatsRequest, result JSON.",
    "health": "Liveness and version: empty body, result JSON.",
    "whoami": "The caller's rights (tenant, principal, tiers, clearance, expiry): result JSON.",
    "compact": "Rewrite the storage without dead space, owner token only: body CompactRequest, "
    "result JSON report.",
}
# do_exchange takes FlightDescriptor.for_command(SyncOpen(...).to_bytes()): see sync/PROTOCOL.md.
M = TypeVar("M", bound="_Message")


class _Message:
    TYPE: ClassVar[str] = ""

    def to_bytes(self) -> bytes:
        body = {"v": WIRE_VERSION, "type": self.TYPE}
        body.update({k: v for k, v in asdict(self).items()})  # type: ignore[call-overload]
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls: type[M], data: bytes) -> M:
        body = _load(data)
        if body.pop("type", None) != cls.TYPE:
            raise InvalidRequestError(f"expected a {cls.TYPE!r} message", expected=cls.TYPE)
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(body) - names)
        if unknown:
            raise InvalidRequestError(f"unknown keys {unknown} in a {cls.TYPE!r} message")
        try:
            message = cls(**body)
        except TypeError as exc:
            raise InvalidRequestError(f"bad {cls.TYPE!r} message: {exc}") from None
        message.check()
        return message

    def check(self) -> None:
        """Raise if a field has the wrong type or range (subclasses add rules)."""


def _load(data: bytes) -> dict[str, Any]:
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: JSON nested deeper than the parser's stack (b"[" * 100000).
        raise InvalidRequestError("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequestError("the request body must be a JSON object")
    version = body.pop("v", None)
    if version != WIRE_VERSION:
        raise UnsupportedVersionError(
            f"wire version {version!r} is not supported (this side speaks {WIRE_VERSION})",
            version=version,
        )
    return body


def decode_message(data: bytes) -> str:
    """The ``type`` of a message, after checking its version."""
    return str(_load(data).get("type", ""))


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise InvalidRequestError(message)


def _check_tier(tier: Any) -> None:
    tiers = [tier] if isinstance(tier, str) else tier
    if tier is None:
        return
    _require(
        isinstance(tiers, list) and all(isinstance(t, str) for t in tiers),
        "tier must be a tier name or a list of them",
    )
    for name in tiers:
        if name not in TIERS:
            raise UnknownTierError(
                f"unknown tier {name!r}; tiers are {', '.join(TIERS)}", tier=name
            )


def _check_ids(ids: Any) -> None:
    _require(
        isinstance(ids, list) and all(isinstance(i, str) for i in ids),
        "ids must be a list of strings",
    )


@dataclass(frozen=True)
class ScanRequest(_Message):
    """A ``do_get`` ticket (and ``get_flight_info`` command): a filtered stream of a tier."""

    TYPE: ClassVar[str] = "scan"
    tenant: str = "default"
    tier: str | list[str] | None = None
    ids: list[str] | None = None
    since_hlc: int | None = None
    kind: str | None = None
    session: str | None = None
    created_after: str | None = None
    created_before: str | None = None
    where: dict[str, Any] | None = None
    include_deleted: bool = False

    def check(self) -> None:
        _require(isinstance(self.tenant, str), "tenant must be a string")
        _check_tier(self.tier)
        if self.ids is not None:
            _check_ids(self.ids)
        _require(
            self.since_hlc is None
            or (isinstance(self.since_hlc, int) and 0 <= self.since_hlc < 2**64),
            "since_hlc must be an unsigned 64-bit integer",
        )
        for name in ("kind", "session", "created_after", "created_before"):
            value = getattr(self, name)
            _require(value is None or isinstance(value, str), f"{name} must be a string")
        _require(isinstance(self.include_deleted, bool), "include_deleted must be true or false")
        validate_where(self.where)


@dataclass(frozen=True)
class SearchRequest(_Message):
    """The ``search`` action: text and/or a vector, fused, filtered before top-k."""

    TYPE: ClassVar[str] = "search"
    tenant: str = "default"
    query: str | None = None
    embedding: list[float] | None = None
    embed_model: str | None = None
    k: int = 10
    tier: str | list[str] | None = None
    where: dict[str, Any] | None = None
    mode: str = "hybrid"

    def check(self) -> None:
        _require(isinstance(self.tenant, str), "tenant must be a string")
        _require(self.query is None or isinstance(self.query, str), "query must be a string")
        _require(
            self.embedding is None
            or (
                isinstance(self.embedding, list)
                and all(
                    isinstance(x, (int, float)) and not isinstance(x, bool) for x in self.embedding
                )
            ),
            "embedding must be a list of numbers",
        )
        _require(
            self.query is not None or self.embedding is not None,
            "give a query text, an embedding, or both",
        )
        # An empty query would rank nothing and return every memory: a listing is a scan.
        _require(
            self.embedding is not None or bool(self.query and self.query.strip()),
            "the query is empty: give a query text or an embedding (to list memories, scan)",
        )
        _require(
            isinstance(self.k, int) and not isinstance(self.k, bool) and self.k >= 1,
            "k must be a positive integer",
        )
        _require(self.mode in SEARCH_MODES, f"mode must be one of {', '.join(SEARCH_MODES)}")
        _check_tier(self.tier)
        validate_where(self.where)


@dataclass(frozen=True)
class IdsRequest(_Message):
    """The ``get`` and ``forget`` actions."""

    TYPE: ClassVar[str] = "ids"
    tenant: str = "default"
    ids: list[str] = field(default_factory=list)

    def check(self) -> None:
        _check_ids(self.ids)


@dataclass(frozen=True)
class StatsRequest(_Message):
    """The ``stats`` action; also the ``list_flights`` criteria (empty: tenant "default")."""

    TYPE: ClassVar[str] = "stats"
    tenant: str = "default"


@dataclass(frozen=True)
class CompactRequest(_Message):
    """The ``compact`` action: rewrite when at least ``min_waste`` of the file is dead
    space (0: always); ``dry_run`` only reports the estimate."""

    TYPE: ClassVar[str] = "compact"
    min_waste: float = 0.0
    dry_run: bool = False

    def check(self) -> None:
        _require(
            isinstance(self.min_waste, (int, float))
            and not isinstance(self.min_waste, bool)
            and 0.0 <= self.min_waste <= 1.0,
            "min_waste must be a number from 0 to 1",
        )
        _require(isinstance(self.dry_run, bool), "dry_run must be true or false")


@dataclass(frozen=True)
class PutCommit(_Message):
    """The last message of a ``do_put``: metadata only, no batch.

    The server commits the stream's batches in one transaction only when it
    receives this message and the counts match; a stream that ends without it
    (a cut connection looks like a normal end on the server) stores nothing.
    """

    TYPE: ClassVar[str] = "commit"
    batches: int = 0
    rows: int = 0


@dataclass(frozen=True)
class PutAck(_Message):
    """The server's answer to one committed batch of a ``do_put``."""

    TYPE: ClassVar[str] = "ack"
    batch: int = 0
    ids: list[str] = field(default_factory=list)
    hlcs: list[int] = field(default_factory=list)


def _check_uint64(value: Any, name: str) -> None:
    _require(
        isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64,
        f"{name} must be an unsigned 64-bit integer",
    )


def _check_round_map(value: Any) -> None:
    _require(
        isinstance(value, dict)
        and len(value) <= 1024
        and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()),
        "completed must map replica ids to round ids",
    )


@dataclass(frozen=True)
class SyncOpen(_Message):
    """The ``do_exchange`` descriptor command that opens one side of a sync round.

    ``tiers`` None means "the tiers this server syncs". ``horizon`` None means
    "your own": tombstones with an hlc at or below it are left out of the
    reconciled set (they are settled everywhere; see ``sync/PROTOCOL.md``).
    ``peer`` and ``peer_clock`` name the other side and its clock at the start
    of the round; ``completed`` is the other side's map of the last round it
    finished with each replica, so a hub learns which rounds its peers finished.
    """

    TYPE: ClassVar[str] = "sync_open"
    tenant: str = "default"
    tiers: list[str] | None = None
    role: str = "responder"
    round: str = ""
    horizon: int | None = None
    dry_run: bool = False
    peer: str = ""
    peer_clock: int = 0
    completed: dict[str, str] = field(default_factory=dict)

    def check(self) -> None:
        _require(isinstance(self.tenant, str), "tenant must be a string")
        if self.tiers is not None:
            _require(isinstance(self.tiers, list) and bool(self.tiers), "tiers must be a list")
            _check_tier(self.tiers)
        _require(self.role in SYNC_ROLES, f"role must be one of {', '.join(SYNC_ROLES)}")
        for name in ("round", "peer"):
            value = getattr(self, name)
            _require(isinstance(value, str) and len(value) <= 128, f"{name} must be a string")
        if self.horizon is not None:
            _check_uint64(self.horizon, "horizon")
        _check_uint64(self.peer_clock, "peer_clock")
        _require(isinstance(self.dry_run, bool), "dry_run must be true or false")
        _check_round_map(self.completed)


@dataclass(frozen=True)
class SyncAccept(_Message):
    """A server's first frame in a sync exchange: who it is and what it will reconcile."""

    TYPE: ClassVar[str] = "sync_accept"
    replica_id: str = ""
    clock: int = 0
    horizon: int = 0
    tiers: list[str] = field(default_factory=list)
    items: int = 0
    completed: dict[str, str] = field(default_factory=dict)

    def check(self) -> None:
        _require(isinstance(self.replica_id, str), "replica_id must be a string")
        _check_uint64(self.clock, "clock")
        _check_uint64(self.horizon, "horizon")
        _check_tier(self.tiers)
        _require(isinstance(self.items, int) and self.items >= 0, "items must be a count")
        _check_round_map(self.completed)


@dataclass(frozen=True)
class SyncFinish(_Message):
    """The daemon's last frame to the initiator: the round finished on both sides.

    The initiator records ``round`` as finished with ``peer`` and adopts the
    peer's (the hub's) tombstone ``horizon``.
    """

    TYPE: ClassVar[str] = "sync_finish"
    peer: str = ""
    round: str = ""
    horizon: int = 0

    def check(self) -> None:
        _require(
            isinstance(self.peer, str) and isinstance(self.round, str),
            "peer and round must be strings",
        )
        _check_uint64(self.horizon, "horizon")


@dataclass(frozen=True)
class SyncSummary(_Message):
    """A server's last frame in a sync exchange: what it stored from the peer.

    ``conflicts`` are ids (at most ``MAX_SUMMARY_IDS``) of records that arrived
    while this side held another version of the same memory; the higher
    ``(hlc, origin)`` was kept. ``conflicts_total`` counts them all.
    """

    TYPE: ClassVar[str] = "sync_summary"
    stored: int = 0
    conflicts_total: int = 0
    conflicts: list[str] = field(default_factory=list)

    def check(self) -> None:
        _require(
            isinstance(self.stored, int) and isinstance(self.conflicts_total, int),
            "stored and conflicts_total must be counts",
        )
        _require(
            isinstance(self.conflicts, list)
            and len(self.conflicts) <= MAX_SUMMARY_IDS
            and all(isinstance(i, str) for i in self.conflicts),
            f"conflicts must be at most {MAX_SUMMARY_IDS} ids",
        )
