"""``sync_once()``: one round between a device's server and its cloud endpoint.

The daemon is a relay: the device's server writes the first message, the
cloud answers, and each answer goes to the other side until one side has
nothing more to say (see ``sync/PROTOCOL.md``). Records travel inside the
same exchanges as stored bytes. Both servers commit what they receive before
answering, so a round cut anywhere leaves both stores valid, and the next
round finishes the job.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from aios_memory.schemas import (
    DEFAULT_TENANT,
    AiosMemoryError,
    SyncAccept,
    SyncFinish,
    SyncOpen,
    new_id,
)
from aios_memory.sync.protocol.frames import Incoming
from aios_memory.sync.protocol.reconcile import Message

from .replica import Exchange, FlightReplica

__all__ = ["SyncReport", "sync_once", "SyncStopped"]


class SyncStopped(AiosMemoryError):
    """Raised inside ``sync_once`` when ``should_stop()`` turned true; nothing partial was kept."""

    code = "SYNC_STOPPED"


@dataclass
class SyncReport:
    """What one round did (or, with ``dry_run``, would do), as ``--json`` prints it.

    ``sent``/``received`` count records from the device to the cloud and back;
    ``conflicts`` counts memories whose version on one side met another version
    on the other (an edit on either side, or on both); the higher ``(hlc, origin)``
    was kept on both.
    ``bytes_*`` and ``round_trips`` are on the link to the cloud, and
    ``reconcile_bytes`` is the part of those bytes that is not records;
    ``horizon`` is the tombstone horizon the device holds after the round.
    """

    round: str
    tenant: str
    tiers: list[str]
    dry_run: bool = False
    sent: int = 0
    received: int = 0
    tombstones_sent: int = 0
    tombstones_received: int = 0
    conflicts: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    reconcile_bytes: int = 0
    round_trips: int = 0
    seconds: float = 0.0
    local_items: int = 0
    cloud_items: int = 0
    horizon: int = 0
    local_replica: str = ""
    cloud_replica: str = ""
    _sent_ids: set[str] = field(default_factory=set, repr=False)  # dry runs: items
    _received_ids: set[str] = field(default_factory=set, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}


def sync_once(
    local: FlightReplica,
    cloud: FlightReplica,
    *,
    tenant: str = DEFAULT_TENANT,
    tiers: list[str] | None = None,
    dry_run: bool = False,
    progress: Callable[[SyncReport], Any] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SyncReport:
    """Reconcile ``local`` (a device's server) with ``cloud`` once; return the report.

    Parameters
    ----------
    local, cloud : FlightReplica
        The device's server (it starts the round) and the cloud endpoint (the hub).
    tenant : str
        Whose memories.
    tiers : list of str, optional
        Tiers to reconcile; default the local server's sync tiers. Both servers
        refuse a tier outside their policy (``TierPolicyError``).
    dry_run : bool
        Find the difference, change nothing.
    progress : callable, optional
        Called with the report so far after every round trip.
    should_stop : callable, optional
        Polled between messages; when true the round is dropped (``SyncStopped``).

    Raises
    ------
    AiosMemoryError
        Any failure of either server or the link; what was committed stays
        committed and valid, and the next round resumes.
    """
    started = time.monotonic()
    round_id = new_id()
    local_open = SyncOpen(
        tenant=tenant, tiers=tiers, role="initiator", round=round_id, dry_run=dry_run
    )
    with local.open(local_open) as lx:
        mine = lx.receive_accept()
        report = SyncReport(
            round_id,
            tenant,
            list(mine.tiers),
            dry_run,
            local_items=mine.items,
            local_replica=mine.replica_id,
            horizon=mine.horizon,
        )
        first = lx.receive_message()
        with cloud.open(_cloud_open(mine, tenant, round_id, dry_run)) as cx:
            hub = _relay(lx, cx, first, report, progress, should_stop)
            if not dry_run:
                lx.send(SyncFinish(peer=hub.replica_id, round=round_id, horizon=hub.horizon))
                report.horizon = max(report.horizon, hub.horizon)
        report.bytes_sent, report.bytes_received = cx.bytes_sent, cx.bytes_received
        report.reconcile_bytes = cx.frame_bytes
    report.conflicts = _conflicts(lx, cx)
    report.seconds = round(time.monotonic() - started, 4)
    return report


def _cloud_open(mine: SyncAccept, tenant: str, round_id: str, dry_run: bool) -> SyncOpen:
    return SyncOpen(
        tenant=tenant,
        tiers=list(mine.tiers),
        role="responder",
        round=round_id,
        horizon=mine.horizon,
        dry_run=dry_run,
        peer=mine.replica_id,
        peer_clock=mine.clock,
        completed=mine.completed,
    )


def _relay(
    lx: Exchange,
    cx: Exchange,
    first: Incoming,
    report: SyncReport,
    progress: Callable[[SyncReport], Any] | None,
    should_stop: Callable[[], bool] | None,
) -> SyncAccept:
    """Pass messages between the two sides until one has nothing to say; the hub's accept.

    Batches stream through: each is written to one side as it is read from the other.
    """
    tick = (lambda: progress(report)) if progress is not None else (lambda: None)
    message = first
    cx.send(message.value, _counted(message, report, False, tick))
    hub = cx.receive_accept()
    # Before the device stores anything of the hub's, its clock passes the hub's: no version
    # it writes from now on (a delete above all) can fall at or below the hub's horizon.
    lx.send(hub)
    report.cloud_items, report.cloud_replica = hub.items, hub.replica_id
    while True:
        _stop_if(should_stop)
        if report.round_trips:
            cx.send(message.value, _counted(message, report, False, tick))
        report.round_trips += 1
        reply = cx.receive_message()
        if _idle(reply.value):
            return hub
        _stop_if(should_stop)
        lx.send(reply.value, _counted(reply, report, True, tick))
        tick()
        message = lx.receive_message()
        if _idle(message.value):
            return hub


def _idle(value: Any) -> bool:
    return isinstance(value, Message) and value.idle


def _counted(
    incoming: Incoming, report: SyncReport, from_cloud: bool, tick: Callable[[], Any]
) -> Iterator[pa.RecordBatch]:
    """``incoming``'s batches, counted into the report as they pass."""
    message = incoming.value
    if report.dry_run and isinstance(message, Message):
        ids = report._received_ids if from_cloud else report._sent_ids
        ids.update(i.hex() for i in message.have)
        if from_cloud:
            report.received = len(ids)
        else:
            report.sent = len(ids)
    for batch in incoming.batches:
        dead = pc.sum(batch.column("deleted")).as_py() or 0
        if from_cloud:
            report.received += batch.num_rows
            report.tombstones_received += dead
        else:
            report.sent += batch.num_rows
            report.tombstones_sent += dead
        yield batch
        tick()


def _conflicts(*sides: Exchange) -> int:
    """Memories that met another version on either side (counted once)."""
    ids: set[str] = set()
    extra = 0
    for side in sides:
        if side.summary is not None:
            ids.update(side.summary.conflicts)
            extra += side.summary.conflicts_total - len(side.summary.conflicts)
    return len(ids) + extra


def _stop_if(should_stop: Callable[[], bool] | None) -> None:
    if should_stop is not None and should_stop():
        raise SyncStopped("sync stopped before the round finished; the next round resumes it")
