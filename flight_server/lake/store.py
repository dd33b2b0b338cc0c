"""The cloud store: stateless replicas over a lake of record versions on object storage.

Layout::

    LAKE/tenants/<tenant>-<hash>.lance   each tenant's record versions (``_lake_log``)
    DATA/lake-cache/<tenant>-<hash>/     this replica's cache of a tenant: a ``DuckDBStore``
                                         (its records' current versions and the keyword and
                                         vector indexes derived from them), disposable
    DATA/replica_id                      this replica's name, the origin of its versions

The lake is the truth; any number of replicas (``aimem serve --lake URI``) serve
any tenant from it. A write is planned against the replica's cache (which
version wins, as ``_versioning.decide`` says), committed to the lake as one
Lance append, and only then acknowledged and applied to the cache. Writes that
arrive together share one commit (``_group_commit``). Before it reads or plans,
a replica applies the rows committed after the lake version it last read
(``TenantLog.rows_after``): **a read through any replica sees every write
acknowledged before the read began** (read-after-commit; ``staleness_seconds``
trades that for fewer version checks). Concurrent writers of one id each get
their version stored; the highest ``(hlc, origin)`` is current everywhere.

A replica that loses its cache rebuilds it from the lake; one that restarts
reads only what it missed. Compaction (``compact_tenants``) merges small files
and runs on the one replica told to (``--compact-seconds``); readers and
writers carry on meanwhile.

Sync against a cluster: a round's bookkeeping (which peer finished which round)
stays on the replica that served it, so replicas never settle tombstones: a
hub cannot know what peers told other replicas. Tombstones stay in the lake
and in every round's item set, which is always safe.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from aios_memory.flight_server.ingest import prepare_write
from aios_memory.flight_server.search.vector_index import HnswParams
from aios_memory.flight_server.store.base import PreparedWrite, Store, WriteResult
from aios_memory.flight_server.store.duckdb_store import DuckDBStore
from aios_memory.flight_server.store.group_commit import GroupCommit
from aios_memory.flight_server.store.payloads import PayloadTexts
from aios_memory.flight_server.store.rows import split_acks
from aios_memory.flight_server.store.versioning import SAME_MEMORY_FIELDS, decide
from aios_memory.flight_server.sync.bookkeeping import SyncBookkeeping
from aios_memory.schemas import (
    DEFAULT_LIMITS,
    RECORD_SCHEMA,
    AiosMemoryError,
    HybridClock,
    InvalidRequestError,
    InvalidValueError,
    Limits,
    ScanRequest,
    SearchRequest,
    View,
)
from aios_memory.sync.protocol.reconcile import ItemSet

from ._log import TenantLog
from ._objects import LakeObjects
from ._tenant import Tenant, latest_versions, note_seen, read_seen, replica_id_of
from .uri import LakeLocation

__all__ = ["LakeStore"]

log = logging.getLogger("aios_memory.lake")

DEFAULT_MAX_OPEN_TENANTS = 64
# Held by the one replica that compacts (``compact_tenants``).
_COMPACTION_LEASE = "compaction.lease"
# A tenant cache idle this long may be closed to make room for another.
_IDLE_SECONDS = 60.0


@dataclass
class _Planned:
    """One put's versions, decided against the cache: what to commit and what to ack."""

    rows: pa.Table
    texts: list[str | None]
    deferred: frozenset[int]
    acks: WriteResult


class LakeStore(Store, SyncBookkeeping):
    """Records in a lake (``_lake_log``), served through per-tenant caches; see the module
    docstring.

    Implements ``Store`` and ``sync.bookkeeping.SyncBookkeeping``, each by delegating to
    the tenant's cache (a ``DuckDBStore``) through its public methods only.
    """

    def __init__(
        self,
        lake: LakeLocation,
        data_dir: Path,
        params: HnswParams | None = None,
        sync_tiers: tuple[str, ...] = (),
        wall_ms: Callable[[], int] | None = None,
        *,
        limits: Limits = DEFAULT_LIMITS,
        staleness_seconds: float = 0.0,
        max_open_tenants: int = DEFAULT_MAX_OPEN_TENANTS,
    ) -> None:
        self.lake, self.data_dir = lake, Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.sync_tiers, self.limits = tuple(sync_tiers), limits
        self.staleness_seconds = staleness_seconds
        self.replica_id = replica_id_of(self.data_dir)
        self.clock = HybridClock(0, wall_ms)
        self._params = params or HnswParams()
        self._max_open = max_open_tenants
        self._tenants: OrderedDict[str, Tenant] = OrderedDict()
        self._open_lock = threading.Lock()
        self.payloads = PayloadTexts(self._dictionary_row, self._current_rows)

    # -- tenants ----------------------------------------------------------------------------
    def _tenant(self, name: str) -> Tenant:
        with self._open_lock:
            tenant = self._tenants.get(name)
            if tenant is None:
                tenant = self._open_tenant(name)
                self._tenants[name] = tenant
                self._evict_idle()
            self._tenants.move_to_end(name)
            tenant.used = time.monotonic()
            return tenant

    def _open_tenant(self, name: str) -> Tenant:
        log_ = TenantLog(self.lake, name, self.replica_id)
        folder = self.data_dir / "lake-cache" / Path(log_.uri).name.removesuffix(".lance")
        cache = DuckDBStore(folder, self._params, (), replica_id=self.replica_id, clock=self.clock)
        tenant = Tenant(name, cache, log_, read_seen(folder))
        tenant.commits = GroupCommit(lambda writes: self._commit(tenant, writes))
        return tenant

    def _evict_idle(self) -> None:
        now = time.monotonic()
        for name in list(self._tenants)[:-1]:
            if len(self._tenants) <= self._max_open:
                return
            tenant = self._tenants[name]
            if now - tenant.used > _IDLE_SECONDS and tenant.lock.acquire(blocking=False):
                try:
                    tenant.cache.close()
                    del self._tenants[name]
                finally:
                    tenant.lock.release()

    def caught_up(self, name: str) -> Tenant:
        """The tenant with every version committed to the lake before this call applied."""
        tenant = self._tenant(name)
        checked = time.monotonic()
        if checked - tenant.checked < self.staleness_seconds:
            return tenant
        # Asking costs one listing and needs no lock: a read does not queue behind a commit
        # in flight (recall p50 under writes: 160 ms before this) unless there is news.
        if tenant.log.latest_version() > tenant.seen:
            with tenant.lock:
                self._catch_up(tenant)
        else:
            tenant.checked = checked
        return tenant

    def _catch_up(self, tenant: Tenant) -> None:
        checked = time.monotonic()
        rows, version = tenant.log.rows_after(tenant.seen)
        if rows.num_rows:
            self._apply(tenant, latest_versions(rows))
        if version != tenant.seen:
            note_seen(tenant, version)
        tenant.checked = checked

    def _apply(self, tenant: Tenant, rows: pa.Table) -> None:
        """Versions from the lake into the cache; ones it holds (or beats) change nothing."""
        for start in range(0, rows.num_rows, 4096):
            part = rows.slice(start, 4096).combine_chunks()
            try:
                tenant.cache.put(self._prepared(tenant, part))
            except AiosMemoryError:
                self._apply_each(tenant, part)

    def _apply_each(self, tenant: Tenant, part: pa.Table) -> None:
        """Row by row, leaving out (and logging) a row the cache refuses: two replicas that
        gave one new model vectors of two dimensions at once both committed; every replica
        keeps the dimension it met first, and nothing stops at the other."""
        for i in range(part.num_rows):
            try:
                tenant.cache.put(self._prepared(tenant, part.slice(i, 1)))
            except AiosMemoryError as exc:
                log.error(
                    "lake row %s of tenant %r left out of this replica's cache: %s",
                    part.column("id")[i].as_py(),
                    tenant.name,
                    exc.message,
                )

    def _prepared(self, tenant: Tenant, rows: pa.Table) -> PreparedWrite:
        return prepare_write(rows.to_batches(), None, self.limits, payloads=tenant.cache.payloads)

    # -- writing ----------------------------------------------------------------------------
    def put(self, write: PreparedWrite) -> WriteResult:
        names = write.records.column("tenant").unique().to_pylist()
        if len(names) != 1:  # a put is one tenant's, so that it is one atomic commit
            raise InvalidValueError(
                f"a put to a lake store holds one tenant's records; this one holds {len(names)}",
                field="tenant",
            )
        return self._tenant(names[0]).commits.submit(write)  # type: ignore[union-attr]

    def _commit(
        self, tenant: Tenant, writes: list[PreparedWrite]
    ) -> list[WriteResult | AiosMemoryError]:
        """One group of puts: plan each, commit all in one lake append, then apply. A put
        its plan refuses gets its own error; the others of the group go on without it."""
        with tenant.lock:
            self._catch_up(tenant)
            outcomes: list[_Planned | AiosMemoryError] = []
            for write in writes:
                try:
                    outcomes.append(
                        self._plan(
                            tenant, write, [p.rows for p in outcomes if isinstance(p, _Planned)]
                        )
                    )
                except AiosMemoryError as exc:
                    outcomes.append(exc)
            plans = [p for p in outcomes if isinstance(p, _Planned)]
            rows = pa.concat_tables([p.rows for p in plans]) if plans else None
            if rows is not None and rows.num_rows:
                version = tenant.log.append(rows)  # durable from here on
                for plan in plans:
                    if plan.rows.num_rows:
                        tenant.cache.put(
                            PreparedWrite(
                                plan.rows, plan.texts, [plan.rows.num_rows], deferred=plan.deferred
                            )
                        )
                if version == tenant.seen + 1:  # nobody committed between: nothing to read back
                    note_seen(tenant, version)
            return [p.acks if isinstance(p, _Planned) else p for p in outcomes]

    def _plan(self, tenant: Tenant, write: PreparedWrite, earlier: list[pa.Table]) -> _Planned:
        """``write``'s versions, decided against the cache; ``earlier``: the rows planned
        before it in the same group, which its vectors must agree with too."""
        table = write.records
        currents = tenant.cache.currents(table)
        fields = table.select(
            ["id", "tenant", "hlc", "origin", "codec", "dict_id", *SAME_MEMORY_FIELDS]
        ).to_pylist()
        acks, picked, hlcs, origins = [], [], [], []
        for i, row in enumerate(fields):
            decision = decide(
                row,
                currents.get((row["tenant"], row["id"])),
                self.clock,
                self.replica_id,
                self.sync_tiers,
                write.reencode,
            )
            acks.append((row["id"], decision.hlc))
            if decision.write:
                picked.append(i)
                hlcs.append(decision.hlc)
                origins.append(decision.origin)
        rows = table.take(pa.array(picked, pa.int64()))
        rows = rows.set_column(
            rows.schema.get_field_index("hlc"),
            RECORD_SCHEMA.field("hlc"),
            pa.array(hlcs, pa.uint64()),
        )
        rows = rows.set_column(
            rows.schema.get_field_index("origin"),
            RECORD_SCHEMA.field("origin"),
            pa.array(origins, pa.string()),
        )
        # Refused before anything reaches the lake: a row the caches would refuse to apply
        # would stop every replica's catch-up at it.
        tenant.cache.check_dimensions(pa.concat_tables([*earlier, rows]))
        position = {old: new for new, old in enumerate(picked)}
        return _Planned(
            rows,
            [write.texts[i] for i in picked],
            frozenset(position[i] for i in write.deferred if i in position),
            split_acks(acks, write.batch_sizes),
        )

    # -- reading ----------------------------------------------------------------------------
    def scan(
        self, request: ScanRequest, batch_rows: int = 65_536, *, view: View | None = None
    ) -> Iterator[pa.RecordBatch]:
        return self.caught_up(request.tenant).cache.scan(request, batch_rows, view=view)

    def get(self, tenant: str, ids: list[str], *, view: View | None = None) -> pa.Table:
        return self.caught_up(tenant).cache.get(tenant, ids, view=view)

    def search(
        self,
        request: SearchRequest,
        query_vector: np.ndarray | None,
        embed_model: str | None,
        *,
        view: View | None = None,
    ) -> pa.Table:
        return self.caught_up(request.tenant).cache.search(
            request, query_vector, embed_model, view=view
        )

    def tier_counts(self, tenant: str, view: View | None = None) -> dict[str, tuple[int, int]]:
        return self.caught_up(tenant).cache.tier_counts(tenant, view)

    def stats(self, tenant: str, *, view: View | None = None) -> dict[str, Any]:
        replica = self.caught_up(tenant)
        stats = replica.cache.stats(tenant, view=view)
        stats["replica_id"] = self.replica_id
        if view is None:  # where the truth lives, for the data directory's owner
            stats["lake"] = {
                "location": self.lake.describe(),
                "version": replica.seen,
                "fragments": replica.log.fragment_count(),
            }
        return stats

    # -- sync (bookkeeping per replica; see the module docstring) ---------------------------
    def sync_items(
        self, tenant: str, tiers: tuple[str, ...], horizon: int
    ) -> tuple[ItemSet, np.ndarray]:
        """See ``SyncBookkeeping.sync_items``; this replica's books."""
        return self.caught_up(tenant).cache.sync_items(tenant, tiers, horizon)

    def sync_rows(
        self, tenant: str, seqs: np.ndarray, batch_rows: int = 2048
    ) -> Iterator[pa.RecordBatch]:
        """See ``SyncBookkeeping.sync_rows``; this replica's books."""
        return self._tenant(tenant).cache.sync_rows(tenant, seqs, batch_rows)

    def sync_state(self, tenant: str) -> tuple[int, dict[str, str]]:
        """See ``SyncBookkeeping.sync_state``; this replica's books."""
        return self.caught_up(tenant).cache.sync_state(tenant)

    def sync_open_round(
        self,
        tenant: str,
        peer: str,
        round_id: str,
        peer_clock: int,
        completed: dict[str, str],
        counts: bool = True,
    ) -> None:
        """See ``SyncBookkeeping.sync_open_round``; this replica's books."""
        self.clock.observe(peer_clock)
        self._tenant(tenant).cache.sync_open_round(
            tenant, peer, round_id, peer_clock, completed, counts
        )

    def sync_settle(self, tenant: str, tiers: tuple[str, ...]) -> int:
        """Never settles (see the module docstring): the horizon this replica has."""
        return self._tenant(tenant).cache.sync_state(tenant)[0]

    def sync_finish(
        self, tenant: str, tiers: tuple[str, ...], peer: str, round_id: str, horizon: int
    ) -> None:
        """See ``SyncBookkeeping.sync_finish``; this replica's books."""
        self._tenant(tenant).cache.sync_finish(tenant, tiers, peer, round_id, horizon)

    # -- payload decoding, for prepare_write -------------------------------------------------
    def _dictionary_row(self, tenant: str, dict_id: int) -> dict[str, Any] | None:
        return self.caught_up(tenant).cache.dictionary_row(tenant, dict_id)

    def _current_rows(self, tenant: str, ids: list[str]) -> list[dict[str, Any]]:
        return self.caught_up(tenant).cache.current_rows(tenant, ids)

    # -- upkeep -----------------------------------------------------------------------------
    def compact_tenants(
        self, min_fragments: int = 16, lease_seconds: float = 300.0
    ) -> list[dict[str, Any]]:
        """Merge the files of every tenant in the lake with at least ``min_fragments``, if
        this replica holds the compaction lease (``_lake_objects``); else nothing."""
        objects = LakeObjects(self.lake)
        if not objects.take_lease(_COMPACTION_LEASE, self.replica_id, lease_seconds):
            return []
        done = []
        for name in objects.datasets("tenants"):
            log_ = TenantLog(self.lake, "", self.replica_id, uri=f"{self.lake.root}/tenants/{name}")
            if log_.fragment_count() >= min_fragments:
                done.append({"dataset": name, **log_.compact()})
        return done

    def compact(
        self, min_waste: float = 0.0, *, wait: bool = True, min_bytes: int = 0
    ) -> dict[str, Any]:
        """Refused: a replica's data directory is a cache; the lake is compacted by the
        replica told to (``compact_tenants``)."""
        raise InvalidRequestError(
            "this server serves a lake: its data directory is a cache, and the lake's files "
            "are merged by the one replica started with --compact-seconds"
        )

    def waste(self) -> dict[str, Any]:
        return self.compact()

    def checkpoint(self) -> None:
        with self._open_lock:
            tenants = list(self._tenants.values())
        for tenant in tenants:
            tenant.cache.checkpoint()

    def close(self) -> None:
        with self._open_lock:
            for tenant in self._tenants.values():
                with tenant.lock:
                    tenant.cache.close()
            self._tenants.clear()
