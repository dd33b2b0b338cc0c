"""The ``Store`` interface: what the Flight server needs of a backend.

Narrow on purpose, so a lakehouse on object storage can stand in for the
embedded DuckDB store: writes arrive already validated, decoded and embedded
(``PreparedWrite``, made by ``ingest.prepare_write``); reads return Arrow.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from aios_memory.schemas import ScanRequest, SearchRequest, View

from .payloads import PayloadTexts
from .rows import tombstones_to_forget
from .sealed_vectors import SealedVector

__all__ = ["Store", "WriteResult", "PreparedWrite"]

WriteResult = list[tuple[list[str], list[int]]]  # per client batch: ids, hlcs


@dataclass
class PreparedWrite:
    """A put's records (embeddings filled where the server could) and their texts.

    ``texts[i]`` is None for tombstones, dictionaries and rows in ``deferred``
    (lm-coded texts the store indexes in the background, see ``_payloads``).
    ``batch_sizes`` lets acks follow the client's batches. ``reencode``: the
    rows are new encodings of stored versions (``REENCODE_PATH``). ``sealed``: the
    vectors of sealed rows this server opened, by row number, kept out of the records
    (see ``_sealed_vectors``); ``opened``: those rows as opened, by row number, whose
    filterable fields are kept apart too (``_sealed_fields``).
    """

    records: pa.Table
    texts: list[str | None]
    batch_sizes: list[int]
    reencode: bool = False
    deferred: frozenset[int] = frozenset()
    sealed: dict[int, SealedVector] = field(default_factory=dict)
    opened: dict[int, dict[str, Any]] = field(default_factory=dict)


class Store(ABC):
    """A durable home for records plus the indexes derived from them."""

    replica_id: str
    payloads: PayloadTexts  # decodes incoming payloads with this store's dictionaries

    @abstractmethod
    def put(self, write: PreparedWrite) -> WriteResult:
        """Commit every record of ``write`` atomically and durably, then index it.

        Returns, per client batch, the ids and the hlc each id now has. A
        record identical to the stored current version is not written again
        (retries are idempotent); a record from a replica (hlc set) wins only
        if its ``(hlc, origin)`` is higher than the stored one; a re-encoding
        (``write.reencode``) only where the stored content is unchanged.
        """

    @abstractmethod
    def scan(
        self, request: ScanRequest, batch_rows: int = 65_536, *, view: View | None = None
    ) -> Iterator[pa.RecordBatch]:
        """Current versions matching ``request`` (and ``view``), in write order, as batches.

        Every read takes the caller's ``view`` (``schemas.rights``; None: all of the
        tenant) and applies it before anything is ranked, counted or cut.
        """

    @abstractmethod
    def get(self, tenant: str, ids: list[str], *, view: View | None = None) -> pa.Table:
        """Live current versions of ``ids`` (missing and deleted ids are left out)."""

    def forget(
        self, tenant: str, ids: list[str], *, view: View | None = None
    ) -> list[tuple[str, int]]:
        """Tombstone live ``ids`` in ``view``; returns ``(id, tombstone hlc)`` of those.

        A tombstone is a write like any other, so every backend forgets through its put."""
        live = self.get(tenant, ids, view=view)
        if not live.num_rows:
            return []
        dead = tombstones_to_forget(live)
        result = self.put(PreparedWrite(dead, [None] * dead.num_rows, [dead.num_rows]))
        return list(zip(*result[0]))

    @abstractmethod
    def search(
        self,
        request: SearchRequest,
        query_vector: np.ndarray | None,
        embed_model: str | None,
        *,
        view: View | None = None,
    ) -> pa.Table:
        """Hits (HIT_SCHEMA), best first, filters applied before the top-k is cut."""

    @abstractmethod
    def stats(self, tenant: str, *, view: View | None = None) -> dict[str, Any]:
        """Counts and sizes per tier for ``tenant``."""

    @abstractmethod
    def tier_counts(self, tenant: str, view: View | None = None) -> dict[str, tuple[int, int]]:
        """``tier -> (live memories, payload bytes)``."""

    # -- sync (see sync/PROTOCOL.md) -------------------------------------------------------
    @abstractmethod
    def sync_items(
        self, tenant: str, tiers: tuple[str, ...], horizon: int
    ) -> tuple[Any, np.ndarray]:
        """The ``ItemSet`` of current versions in ``tiers`` (tombstones at or below
        ``horizon`` left out) and the row seq of each item in the set's order."""

    @abstractmethod
    def sync_rows(
        self, tenant: str, seqs: np.ndarray, batch_rows: int = 2048
    ) -> Iterator[pa.RecordBatch]:
        """``tenant``'s rows by seq as stored (payloads never decoded), skipping rows
        replaced meanwhile."""

    @abstractmethod
    def sync_state(self, tenant: str) -> tuple[int, dict[str, str]]:
        """``(tombstone horizon, {peer: last finished round})``."""

    @abstractmethod
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

    @abstractmethod
    def sync_settle(self, tenant: str, tiers: tuple[str, ...]) -> int:
        """Raise the hub's horizon as far as every known peer allows; drop settled tombstones."""

    @abstractmethod
    def sync_finish(
        self, tenant: str, tiers: tuple[str, ...], peer: str, round_id: str, horizon: int
    ) -> None:
        """Initiator bookkeeping when a round finished: note it, adopt the hub's horizon."""

    @abstractmethod
    def checkpoint(self) -> None:
        """Save derived indexes that changed (they are rebuilt if this never runs)."""

    @abstractmethod
    def close(self) -> None:
        """Checkpoint and release every file."""
