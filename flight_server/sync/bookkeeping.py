"""The sync side of the DuckDB store: item sets, rows by seq, peers, the tombstone horizon.

A mixin so ``duckdb_store`` stays about records and indexes; the SQL is in
``_sync_state``. It uses the store's cursor, write lock, clock and the
item caches that every committed write updates (``_item_cache``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from aios_memory.sync.protocol.reconcile import ItemSet

from . import _state as sync_sql
from ._item_cache import NOTED_COLUMNS, ItemCache

# Item caches kept at once: one per (tenant, tiers) a daemon syncs.
_CACHES = 8

__all__ = ["SyncStoreMixin"]


class SyncStoreMixin:
    """The ``Store`` sync methods for ``DuckDBStore``."""

    _items_cache: dict[tuple[str, tuple[str, ...]], ItemCache]
    _write_lock: Any
    _seq: int
    replica_id: str
    clock: Any

    def _cursor(self) -> Any:
        raise NotImplementedError

    def sync_items(
        self, tenant: str, tiers: tuple[str, ...], horizon: int
    ) -> tuple[ItemSet, np.ndarray]:
        """The item set of a sync round and the seq of each item (see ``_item_cache``)."""
        key = (tenant, tuple(tiers))
        with self._write_lock:
            cache = self._items_cache.get(key)
            if cache is None or cache.stale:
                cache = ItemCache.build(
                    tenant, key[1], *sync_sql.item_arrays(self._cursor(), tenant, key[1])
                )
                if len(self._items_cache) >= _CACHES:
                    self._items_cache.pop(next(iter(self._items_cache)))
                self._items_cache[key] = cache
            return cache.view(horizon)

    def _note_for_sync(self, rows: pa.Table | None, removed: list[int]) -> None:
        """Tell the item caches what a committed write changed (under the write lock)."""
        if self._items_cache:
            noted = None if rows is None else rows.select(NOTED_COLUMNS)
            for cache in self._items_cache.values():
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
            self.clock.observe(peer_clock)
            sync_sql.open_round(
                self._cursor(),
                tenant,
                peer,
                round_id if counts else None,
                peer_clock,
                self._seq,
                self.replica_id,
                completed,
            )

    def sync_settle(self, tenant: str, tiers: tuple[str, ...]) -> int:
        """A hub's tombstone horizon, raised as far as its peers allow; settled tombstones go."""
        with self._write_lock:
            horizon, purged = sync_sql.settle(self._cursor(), tenant, tuple(tiers))
            self._note_for_sync(None, purged)
            return horizon

    def sync_finish(
        self, tenant: str, tiers: tuple[str, ...], peer: str, round_id: str, horizon: int
    ) -> None:
        """An initiator's note that the round finished: remember it, adopt the hub's horizon."""
        with self._write_lock:
            cur = self._cursor()
            sync_sql.finish_round(cur, tenant, peer, round_id)
            _, purged = sync_sql.adopt_horizon(cur, tenant, tuple(tiers), horizon)
            self._note_for_sync(None, purged)
