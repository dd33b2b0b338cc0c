"""One side of one sync round, inside a ``do_exchange``: the store behind the protocol.

The daemon opens an exchange on each server: the device is the initiator
(it writes the first message), the cloud the responder and the hub (it keeps
the peers' bookkeeping and decides the tombstone horizon). The daemon relays
each message to the other side until one side has nothing more to say.
Each side commits the records it receives before it answers, so an answer
means "stored durably"; a cut anywhere leaves both stores valid and the next
round finishes the job.

The session sees its store only through ``SyncedStore``: what a round uses of
it (its replica id and clock, a scan, the bookkeeping), so this package needs
nothing of ``store`` and any backend that has those can sync.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol, runtime_checkable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from aios_memory.schemas import (
    HybridClock,
    ScanRequest,
    SyncAccept,
    SyncFinish,
    SyncOpen,
    SyncProtocolError,
    SyncSummary,
    View,
    check_tiers_allowed,
)
from aios_memory.schemas.wire import MAX_SUMMARY_IDS
from aios_memory.sync.protocol.reconcile import Message, Reconciler

from .bookkeeping import SyncBookkeeping

__all__ = ["SyncSession", "SyncedStore"]

Apply = Callable[[list[pa.RecordBatch]], None]
# Rows per record batch sent: one DuckDB query each; ~1 MB with 384-dimension vectors.
SEND_BATCH_ROWS = 2048


@runtime_checkable
class SyncedStore(SyncBookkeeping, Protocol):
    """What one side of a round uses of its store: a ``Store`` that keeps sync bookkeeping.

    Attributes
    ----------
    replica_id
        The store's replica id, told to the peer.
    clock
        The store's clock, which observes the peer's.
    """

    replica_id: str
    clock: HybridClock

    def scan(
        self, request: ScanRequest, batch_rows: int = 65_536, *, view: View | None = None
    ) -> Iterator[pa.RecordBatch]:
        """Current versions matching ``request``, as ``Store.scan`` gives them."""


class SyncSession:
    """The state of one round on one server: its item set, frozen at the start."""

    def __init__(
        self, store: SyncedStore, request: SyncOpen, allowed_tiers: tuple[str, ...], apply: Apply
    ) -> None:
        self.store, self.request, self._apply = store, request, apply
        self.tiers = tuple(request.tiers or allowed_tiers)
        check_tiers_allowed(self.tiers, allowed_tiers, "this server")
        self.dry_run = request.dry_run
        own_horizon, self.completed = store.sync_state(request.tenant)
        # Read before the item set: every version made after this is above the clock the
        # peer is told, and so cannot be settled by a hub before it travels.
        self.clock = store.clock.now()
        self.horizon = own_horizon
        if request.role == "responder" and request.peer and not self.dry_run:
            # Only a round over every tier this hub syncs says the peer holds all it must:
            # a round over fewer tiers neither opens nor finishes a round in the books.
            store.sync_open_round(
                request.tenant,
                request.peer,
                request.round,
                request.peer_clock,
                request.completed,
                counts=set(self.tiers) >= set(allowed_tiers),
            )
            self.horizon = store.sync_settle(request.tenant, self.tiers)
        # Both sides leave out the same settled tombstones: the initiator's horizon.
        exclude = own_horizon if request.horizon is None else request.horizon
        self.items, self.seqs = store.sync_items(request.tenant, self.tiers, exclude)
        self.reconciler = Reconciler(self.items)
        self.stored, self.conflicts = 0, 0
        self._conflict_ids: list[str] = []

    def accept(self) -> SyncAccept:
        """This side's answer to the open: who it is, its clock, horizon, tiers and items."""
        return SyncAccept(
            replica_id=self.store.replica_id,
            clock=self.clock,
            horizon=self.horizon,
            tiers=list(self.tiers),
            items=len(self.items),
            completed=self.completed,
        )

    def first(self) -> tuple[Message, Iterable[pa.RecordBatch]]:
        """The initiator's first message: the fingerprints of its whole item set."""
        if self.request.role != "initiator":
            raise SyncProtocolError("only the initiator writes the first message")
        return self.reconciler.initiate(), iter(())

    def step(
        self, message: Message, batches: Iterable[pa.RecordBatch]
    ) -> tuple[Message, Iterator[pa.RecordBatch]]:
        """Store what came (batch by batch), answer the ranges, send what the peer lacks.

        The batches to send are made lazily, one query per batch, as they are written.
        """
        if message.batches and self.dry_run:
            raise SyncProtocolError("a dry run carries no records")
        for batch in batches:
            self._store(self._unsettled(batch))
        outcome = self.reconciler.respond(message)
        offered = (self.reconciler.offered(ident) for ident in message.need)
        send = sorted(set(outcome.have) | {i for i in offered if i is not None})
        if self.dry_run:
            have = tuple(self.items.id_at(i) for i in send)
            return Message(tuple(outcome.ranges), tuple(outcome.need), have), iter(())
        seqs = self.seqs[np.asarray(send, np.int64)]
        batches = self.store.sync_rows(self.request.tenant, seqs, SEND_BATCH_ROWS)
        if len(seqs) <= SEND_BATCH_ROWS:
            # One batch at most: read it now, so rows replaced meanwhile cost no empty batch.
            ready = [b for b in batches if b.num_rows]
            return Message(tuple(outcome.ranges), tuple(outcome.need), batches=len(ready)), iter(
                ready
            )
        count = -(-len(seqs) // SEND_BATCH_ROWS)
        return Message(tuple(outcome.ranges), tuple(outcome.need), batches=count), batches

    def _store(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        _check_versioned(batch)
        self._check_scope(batch)
        self._count_conflicts(batch)
        self._apply([batch])
        self.stored += batch.num_rows

    def _check_scope(self, batch: pa.RecordBatch) -> None:
        """A round carries its tenant's records of its tiers, nothing else."""
        tenants = set(batch.column("tenant").to_pylist())
        if tenants - {self.request.tenant}:
            raise SyncProtocolError(
                f"a sync round of tenant {self.request.tenant!r} carried records of "
                f"{sorted(tenants - {self.request.tenant})}"
            )
        check_tiers_allowed(set(batch.column("tier").to_pylist()), self.tiers, "this sync round")

    def _count_conflicts(self, batch: pa.RecordBatch) -> None:
        """Incoming versions of memories this side holds in another version."""
        ids = batch.column("id").to_pylist()
        request = ScanRequest(tenant=self.request.tenant, ids=ids, include_deleted=True)
        held: dict[str, tuple[int, str]] = {}
        for stored in self.store.scan(request):
            held.update(
                zip(
                    stored.column("id").to_pylist(),
                    zip(
                        stored.column("hlc").to_pylist(),
                        stored.column("origin").to_pylist(),
                        strict=True,
                    ),
                    strict=True,
                )
            )
        versions = zip(
            batch.column("hlc").to_pylist(), batch.column("origin").to_pylist(), strict=True
        )
        for memory_id, version in zip(ids, versions, strict=True):
            if memory_id in held and held[memory_id] != version:
                self.conflicts += 1
                if len(self._conflict_ids) < MAX_SUMMARY_IDS:
                    self._conflict_ids.append(memory_id)

    def summary(self) -> SyncSummary:
        """What this side stored in the round, and the conflicts it met."""
        return SyncSummary(
            stored=self.stored, conflicts_total=self.conflicts, conflicts=self._conflict_ids
        )

    def _unsettled(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        # A tombstone at or below this side's horizon is settled: every peer holds it or
        # has dropped it. Storing it again would only be collected again.
        if not self.horizon:
            return batch
        settled = pc.and_(
            batch.column("deleted"),
            pc.less_equal(batch.column("hlc"), pa.scalar(self.horizon, pa.uint64())),
        )
        return batch.filter(pc.invert(settled))

    def hear_hub_accept(self, hub: SyncAccept) -> None:
        """The hub's accept, relayed to the initiator before any of the hub's records.

        The clock passes the hub's clock and horizon, so every version this side
        writes from now on, a delete above all, orders after what the hub has
        settled: a tombstone is never born below the horizon.
        """
        if self.request.role != "initiator":
            raise SyncProtocolError("only the initiator hears of the hub")
        self.store.clock.observe(max(hub.clock, hub.horizon))

    def finish(self, message: SyncFinish) -> None:
        """The initiator's end of a round: its clock passes the hub's horizon, and its books
        note the round and adopt that horizon (a dry run notes nothing)."""
        if self.request.role != "initiator":
            raise SyncProtocolError("only the initiator finishes a round")
        self.store.clock.observe(message.horizon)
        if self.dry_run:
            return
        self.store.sync_finish(
            self.request.tenant, self.tiers, message.peer, message.round, message.horizon
        )


def _check_versioned(batch: pa.RecordBatch) -> None:
    """Records in a sync are versions a replica made: they carry their hlc and origin."""
    if "hlc" not in batch.schema.names or "origin" not in batch.schema.names:
        return  # the store's schema check names what is missing
    unversioned = pc.or_(
        pc.equal(batch.column("hlc"), pa.scalar(0, pa.uint64())),
        pc.equal(pc.utf8_length(batch.column("origin")), pa.scalar(0, pa.int32())),
    )
    if pc.any(unversioned).as_py():
        raise SyncProtocolError(
            "a record in a sync has no version (hlc 0 or no origin); "
            "sync carries replica versions, write new memories with do_put"
        )
