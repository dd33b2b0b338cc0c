"""The bookkeeping a store keeps for sync rounds: item sets, rows by seq, peers, the horizon.

``SyncBookkeeping`` says what a sync round asks of a store beyond the ``Store``
interface; a backend implements both. ``SyncBook`` keeps it in a DuckDB file
(the SQL is in ``_state``): a collaborator of the DuckDB store, apart from it
so that the store stays about records. It takes the store's cursor factory,
write lock, clock and replica id, and owns the item caches that every
committed write updates (``_item_cache``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Protocol, runtime_checkable

import duckdb
import numpy as np
import pyarrow as pa

from aios_memory.schemas import HybridClock
from aios_memory.sync.protocol.reconcile import ItemSet

from . import _state as sync_sql
from ._item_cache import NOTED_COLUMNS, ItemCache

__all__ = ["SYNC_DDL", "SyncBookkeeping", "SyncBook"]

SYNC_DDL = sync_sql.SYNC_DDL
"""The tables ``SyncBook`` keeps its books in (created with the store's own)."""

# Item caches kept at once: one per (tenant, tiers) a daemon syncs.
_CACHES = 8


@runtime_checkable
class SyncBookkeeping(Protocol):
    """What a sync round needs of a store beside ``Store`` (see sync/PROTOCOL.md)."""

    def sync_items(
        self, tenant: str, tiers: tuple[str, ...], horizon: int
    ) -> tuple[ItemSet, np.ndarray]:
        """The ``ItemSet`` of current versions in ``tiers`` (tombstones at or below
        ``horizon`` left out) and the row seq of each item in the set's order."""

    def sync_rows(
        self, tenant: str, seqs: np.ndarray, batch_rows: int = 2048
    ) -> Iterator[pa.RecordBatch]:
        """``tenant``'s rows by seq as stored (payloads never decoded), skipping rows
        replaced meanwhile."""

    def sync_state(self, tenant: str) -> tuple[int, dict[str, str]]:
        """``(tombstone horizon, {peer: last finished round})``."""

    def sync_open_round(
        self,
        tenant: str,
        peer: str,
        round_id: str,
        peer_clock: int,
        completed: dict[str, str],
        counts: bool = True,
    ) -> None:
        """Hub bookkeeping when a peer opens a round."""

    def sync_settle(self, tenant: str, tiers: tuple[str, ...]) -> int:
        """Raise the hub's horizon as far as every known peer allows; drop settled tombstones."""

    def sync_finish(
        self, tenant: str, tiers: tuple[str, ...], peer: str, round_id: str, horizon: int
    ) -> None:
        """Initiator bookkeeping when a round finished: note it, adopt the hub's horizon."""


class SyncBook(SyncBookkeeping):
    """``SyncBookkeeping`` in the DuckDB file of a store, beside its records.

    Parameters
    ----------
    cursor
        Makes a cursor on the store's connection (one per call and thread).
    write_lock
        The store's write lock: every change to the books or the records is made under it.
    replica_id
        The store's replica id (what a peer's ``completed`` rounds are keyed by).
    clock
        The store's clock, which observes every peer's.
    last_seq
        The store's highest row seq so far (a hub notes it when a round opens).
    """

    def __init__(
        self,
        cursor: Callable[[], duckdb.DuckDBPyConnection],
        write_lock: threading.Lock,
        replica_id: str,
        clock: HybridClock,
        last_seq: Callable[[], int],
    ) -> None:
        self._cursor, self._write_lock = cursor, write_lock
        self._replica_id, self._clock, self._last_seq = replica_id, clock, last_seq
        self._caches: dict[tuple[str, tuple[str, ...]], ItemCache] = {}

    def sync_items(
        self, tenant: str, tiers: tuple[str, ...], horizon: int
    ) -> tuple[ItemSet, np.ndarray]:
        """The item set of a sync round and the seq of each item (see ``_item_cache``)."""
        key = (tenant, tuple(tiers))
        with self._write_lock:
            cache = self._caches.get(key)
            if cache is None or cache.stale:
                cache = ItemCache.build(
                    tenant, key[1], *sync_sql.item_arrays(self._cursor(), tenant, key[1])
                )
                if len(self._caches) >= _CACHES:
                    self._caches.pop(next(iter(self._caches)))
                self._caches[key] = cache
            return cache.view(horizon)

    def note(self, rows: pa.Table | None, removed: list[int]) -> None:
        """Tell the item caches what a committed write changed (call under the write lock).

        Parameters
        ----------
        rows
            The rows that became current (with ``seq``), or None.
        removed
            The seqs of the rows that stopped being current.
        """
        if self._caches:
            noted = None if rows is None else rows.select(NOTED_COLUMNS)
            for cache in self._caches.values():
                cache.note(noted, removed)

    def sync_rows(
        self, tenant: str, seqs: np.ndarray, batch_rows: int = 2048
    ) -> Iterator[pa.RecordBatch]:
        """Stored rows by seq, payloads as stored: exactly one batch per ``batch_rows`` seqs
        (rows replaced meanwhile are left out, so a batch may be short or empty)."""
        for start in range(0, len(seqs), batch_rows):
            yield sync_sql.rows_by_seq(self._cursor(), seqs[start : start + batch_rows])

    def sync_state(self, tenant: str) -> tuple[int, dict[str, str]]:
        """This tenant's tombstone horizon and the last round finished with each peer."""
        cur = self._cursor()
        return sync_sql.horizon_of(cur, tenant), sync_sql.completed_rounds(cur, tenant)

    def sync_open_round(
        self,
        tenant: str,
        peer: str,
        round_id: str,
        peer_clock: int,
        completed: dict[str, str],
        counts: bool = True,
    ) -> None:
        """A hub's note that ``peer`` opened ``round_id`` (and finished the one before).

        ``counts`` False (a round over only some tiers) registers the peer but
        leaves its rounds in the books as they were.
        """
        with self._write_lock:
            self._clock.observe(peer_clock)
            sync_sql.open_round(
                self._cursor(),
                tenant,
                peer,
                round_id if counts else None,
                peer_clock,
                self._last_seq(),
                self._replica_id,
                completed,
            )

    def sync_settle(self, tenant: str, tiers: tuple[str, ...]) -> int:
        """A hub's tombstone horizon, raised as far as its peers allow; settled tombstones go."""
        with self._write_lock:
            horizon, purged = sync_sql.settle(self._cursor(), tenant, tuple(tiers))
            self.note(None, purged)
            return horizon

    def sync_finish(
        self, tenant: str, tiers: tuple[str, ...], peer: str, round_id: str, horizon: int
    ) -> None:
        """An initiator's note that the round finished: remember it, adopt the hub's horizon."""
        with self._write_lock:
            cur = self._cursor()
            sync_sql.finish_round(cur, tenant, peer, round_id)
            _, purged = sync_sql.adopt_horizon(cur, tenant, tuple(tiers), horizon)
            self.note(None, purged)
