"""The item set of a tenant's synced tiers, kept current between rounds instead of rebuilt.

Building an item set hashes every current version (SHA-256 in SQL) and sorts
them: about 1.5 s at a million memories (bench/RESULTS.md). Between two rounds
a device writes a few memories, so the cache notes what each write added and
replaced, and the next round merges that in: O(n) copies, no hashing or sort
of the whole set. A large backlog (a first sync moving many records) is
cheaper to rebuild, so past ``REBUILD_AFTER`` noted rows the cache asks for it.

The cache holds every current version, tombstones included; ``view(horizon)``
leaves out the settled tombstones of one round.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from aios_memory.sync.protocol.reconcile import ItemSet, item_id

__all__ = ["ItemCache", "REBUILD_AFTER", "NOTED_COLUMNS"]

REBUILD_AFTER = 50_000
NOTED_COLUMNS = ["seq", "tenant", "id", "origin", "hlc", "tier", "deleted"]


@dataclass
class ItemCache:
    """Items of ``(tenant, tiers)``, with each item's row seq and tombstone flag aligned."""

    tenant: str
    tiers: tuple[str, ...]
    items: ItemSet
    seqs: np.ndarray
    deleted: np.ndarray
    _added: list[pa.Table] = field(default_factory=list)
    _removed: list[int] = field(default_factory=list)
    _noted: int = 0

    @classmethod
    def build(
        cls,
        tenant: str,
        tiers: tuple[str, ...],
        seqs: np.ndarray,
        hlcs: np.ndarray,
        ids: np.ndarray,
        deleted: np.ndarray,
    ) -> ItemCache:
        items = ItemSet(hlcs, ids)
        return cls(tenant, tiers, items, seqs[items.order], deleted[items.order])

    @property
    def stale(self) -> bool:
        """True when the noted changes are many enough that a rebuild is cheaper."""
        return self._noted > REBUILD_AFTER

    def note(self, rows: pa.Table | None, removed: list[int]) -> None:
        """A committed write: ``rows`` (NOTED_COLUMNS) became current, ``removed`` seqs left."""
        self._removed.extend(removed)
        self._noted += len(removed)
        if rows is None or not rows.num_rows:
            return
        mine = [
            tenant == self.tenant and tier in self.tiers
            for tenant, tier in zip(
                rows.column("tenant").to_pylist(), rows.column("tier").to_pylist(), strict=True
            )
        ]
        rows = rows.filter(pa.array(mine, pa.bool_()))
        if rows.num_rows:
            self._added.append(rows)
            self._noted += rows.num_rows

    def view(self, horizon: int) -> tuple[ItemSet, np.ndarray]:
        """The round's item set (tombstones at or below ``horizon`` left out) and its seqs."""
        self._merge()
        settled = self.deleted & (self.items.ts <= np.uint64(horizon))
        if not settled.any():
            return self.items, self.seqs
        kept = ~settled
        return ItemSet.presorted(self.items.ts[kept], self.items.ids[kept]), self.seqs[kept]

    def _merge(self) -> None:
        if not self._added and not self._removed:
            return
        removed = np.asarray(self._removed, np.int64)
        keep = ~np.isin(self.seqs, removed)
        rows = pa.concat_tables(self._added) if self._added else None
        if rows is not None:  # a row added, then replaced, before this merge
            rows = rows.filter(pa.array(~np.isin(rows.column("seq").to_numpy(), removed)))
            rows = rows if rows.num_rows else None
        add_seqs, add = _new_items(rows)
        merged, kept_at, added_at = self.items.changed(keep, add)
        seqs = np.empty(len(merged), np.int64)
        deleted = np.empty(len(merged), bool)
        seqs[kept_at], deleted[kept_at] = self.seqs[keep], self.deleted[keep]
        if rows is not None:
            flags = np.asarray(rows.column("deleted").to_pylist(), bool)
            seqs[added_at], deleted[added_at] = add_seqs[add.order], flags[add.order]
        self.items, self.seqs, self.deleted = merged, seqs, deleted
        self._added, self._removed, self._noted = [], [], 0


def _new_items(rows: pa.Table | None) -> tuple[np.ndarray, ItemSet]:
    if rows is None:
        return np.empty(0, np.int64), ItemSet(np.empty(0, np.uint64), np.empty((0, 16), np.uint8))
    ids = [
        item_id(i, o, h)
        for i, o, h in zip(
            *(rows.column(c).to_pylist() for c in ("id", "origin", "hlc")), strict=True
        )
    ]
    ts = np.asarray(rows.column("hlc").to_pylist(), np.uint64)
    raw = np.frombuffer(b"".join(ids), np.uint8).reshape(-1, 16)
    return np.asarray(rows.column("seq").to_pylist(), np.int64), ItemSet(ts, raw)
