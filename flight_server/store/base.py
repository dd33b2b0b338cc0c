"""The ``Store`` interface: what the Flight server needs of every backend.

Narrow on purpose, so a lakehouse on object storage can stand in for the
embedded DuckDB store: writes arrive already validated, decoded and embedded
(``PreparedWrite``, made by ``ingest.prepare_write``); reads return Arrow.
A sync round needs more of a store (its bookkeeping of peers and rounds):
that is a protocol of its own, ``sync.bookkeeping.SyncBookkeeping``, which
a backend implements beside this one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from aios_memory.schemas import HybridClock, InvalidRequestError, ScanRequest, SearchRequest, View

from .payloads import PayloadTexts
from .rows import WriteResult, tombstones_to_forget
from .sealed_vectors import SealedVector

__all__ = ["Store", "WriteResult", "PreparedWrite"]


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
    """A durable home for records plus the indexes derived from them.

    Attributes
    ----------
    replica_id
        The origin this store gives the versions it makes.
    clock
        The hybrid logical clock that orders those versions.
    payloads
        Decodes incoming payloads with this store's dictionaries.
    """

    replica_id: str
    clock: HybridClock
    payloads: PayloadTexts

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
        return list(zip(*result[0], strict=True))

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

    def degraded(self) -> str | None:
        """Why this store refuses writes just now (a full or failing disk), or None.

        ``health`` reports it; the store heals by itself once the cause is gone.
        """
        return None

    def compact(
        self, min_waste: float = 0.0, *, wait: bool = True, min_bytes: int = 0
    ) -> dict[str, Any]:
        """Give back the space of deleted and superseded rows; a report of what was done.

        ``min_waste``: rewrite only when at least this share of the storage is dead, and
        it holds ``min_bytes`` or more; ``wait`` False: return at once if one is running.
        """
        raise InvalidRequestError(f"{type(self).__name__} does not compact on request")

    def waste(self) -> dict[str, Any]:
        """How much of the storage is dead space (what ``compact`` would give back)."""
        raise InvalidRequestError(f"{type(self).__name__} does not compact on request")

    @abstractmethod
    def checkpoint(self) -> None:
        """Save derived indexes that changed (they are rebuilt if this never runs)."""

    @abstractmethod
    def close(self) -> None:
        """Checkpoint and release every file."""
