"""The embedded default store: one DuckDB file for records, derived indexes beside it.

Layout of a data directory::

    memory.duckdb       records (current version per tenant and id) and facts; after a
                        compaction, a link to its rewrite memory-<n>.duckdb
    index/<tenant>/     keyword/ (tantivy) and vectors/<tier>/<model>/ (hnswlib)
    token               the bearer token, mode 0600 (written by the server)

A write is acknowledged only after DuckDB's commit (which syncs its WAL);
the indexes are updated after, and rebuilt or caught up from the records
whenever they are missing, stale or fail their checksum.

Puts that arrive together share one transaction and one fsync (``group_commit``;
``_write_group`` splits a group where two puts touch one memory, ``_write_path``
plans each put so that a refused one fails alone). The write lock covers the
lookup, the plan and the commit, not the indexing, which follows in commit
order before the acks. A full or failing disk refuses writes with a typed error
and heals by itself (``_durable``).

This module keeps the records: it connects, decides and commits versions,
scans and counts. Its collaborators share its cursor factory and write lock:
``search.hybrid.HybridSearch`` ranks (and asks the records through
``_search_rows``), ``sync.bookkeeping.SyncBook`` keeps the sync books,
``_embed_models`` the models' dimensions, ``sealed_vectors`` and
``_text_backlog``/``_text_backfill`` index what the write path could not.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from aios_memory.flight_server._arrow import conform
from aios_memory.flight_server._files import dir_bytes
from aios_memory.flight_server.search.hybrid import HybridSearch
from aios_memory.flight_server.search.keyword_index import KeywordDoc
from aios_memory.flight_server.search.vector_index import HnswParams
from aios_memory.flight_server.sync.bookkeeping import SyncBook, SyncBookkeeping
from aios_memory.schemas import (
    DEFAULT_SYNC_TIERS,
    DICTIONARY_KIND,
    RECORD_SCHEMA,
    AiosMemoryError,
    HybridClock,
    ScanRequest,
    SearchRequest,
    View,
)
from aios_memory.sync.protocol.reconcile import ItemSet

from ._counts import tier_counts, tier_stats
from ._database import COLUMNS
from ._durable import BackgroundCheckpoints, DurableFile
from ._embed_models import EmbedModels
from ._generations import DB_FILE, current_path, remove_leftovers
from ._sealed_fields import OPENED_VIEW
from ._search_rows import SearchRows
from ._sql_filters import compile_scan, compile_view
from ._text_backfill import TextBackfill
from ._text_backlog import PAYLOAD_SQL, TextBacklog
from ._write_group import IndexedUpTo, Merged, Planned, merge, parts
from ._write_path import WritePlanner, write_part
from .base import PreparedWrite, Store, WriteResult
from .compaction import Compactor
from .group_commit import GroupCommit
from .payloads import PayloadTexts
from .sealed_vectors import SealedVector, SealedVectors
from .versioning import Current

__all__ = ["DuckDBStore", "DB_FILE"]

log = logging.getLogger("aios_memory.server")


class DuckDBStore(Store, SyncBookkeeping):
    """Records in DuckDB, vectors in hnswlib, keywords in tantivy; see the module docstring.

    Implements ``Store`` and ``sync.bookkeeping.SyncBookkeeping``.

    Parameters
    ----------
    data_dir
        The data directory (created if missing).
    params
        hnswlib parameters of the vector indexes.
    sync_tiers
        The tiers whose new versions this replica stamps for sync.
    wall_ms
        The wall clock of the hybrid clock (tests skew it).
    replica_id, clock
        A lake replica's own, shared by its tenant caches (``lake.store``); by default
        this file's, kept in its facts table.
    """

    def __init__(
        self,
        data_dir: Path,
        params: HnswParams | None = None,
        sync_tiers: tuple[str, ...] = DEFAULT_SYNC_TIERS,
        wall_ms: Callable[[], int] | None = None,
        *,
        replica_id: str | None = None,
        clock: HybridClock | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.sync_tiers = tuple(sync_tiers)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._file = DurableFile(current_path(self.data_dir))
        for leftover in remove_leftovers(self.data_dir):  # after DuckDB's lock is ours
            log.info("removed %s, left by an earlier compaction", leftover)
        self._write_lock = threading.Lock()
        self._indexing = threading.Lock()  # held while a put is indexed (close waits for it)
        self._commits: GroupCommit[PreparedWrite, WriteResult] = GroupCommit(self._put_group)
        self.replica_id = replica_id or self._fact_made_once(
            "replica_id", lambda: "r" + secrets.token_hex(8)
        )
        last_hlc, last_seq = (
            self._cursor()
            .execute("SELECT coalesce(max(hlc), 0), coalesce(max(seq), 0) FROM records")
            .fetchone()
        ) or (0, 0)
        self.clock = clock or HybridClock(int(last_hlc), wall_ms)
        self.clock.observe(int(last_hlc))
        self._seq = int(last_seq)
        self._indexed = IndexedUpTo(self._seq)
        self._sync = SyncBook(
            self._cursor, self._write_lock, self.replica_id, self.clock, lambda: self._seq
        )
        self._models = EmbedModels(self._cursor)
        self._planner = WritePlanner(
            self._cursor, self._models, self.clock, self.replica_id, self.sync_tiers
        )
        self.payloads = PayloadTexts(self.dictionary_row, self.current_rows)
        self._backlog = TextBacklog(self._cursor, self.payloads)
        self._search = self._open_search(params or HnswParams())
        self._sealed = SealedVectors(self._cursor, self._write_lock, self._search, self._models)
        self._backfill = TextBackfill(
            self._backlog,
            self.payloads,
            self._index_if_current,
            self._index_opened_in_order,
        )
        self._compactor = Compactor(self.data_dir, self._file, self._write_lock)
        self._checkpoints = BackgroundCheckpoints(self._file, self._write_lock)
        self._closed = False

    def _open_search(self, params: HnswParams) -> HybridSearch:
        rows = SearchRows(self._cursor)
        search = HybridSearch(
            self.data_dir / "index",
            params,
            self._write_lock,
            dimension=self._models.dimension,
            live_labels=rows.live_labels,
            fetch_vectors=rows.fetch_vectors,
            keyword_backlog=self._backlog.catch_up,
            hit_rows=rows.hit_rows,
            allowed_seqs=rows.allowed_seqs,
        )
        search.warm(*rows.index_keys())  # before the server answers its first request
        return search

    # -- connection -------------------------------------------------------------------------
    def _cursor(self) -> duckdb.DuckDBPyConnection:
        # One cursor per call: DuckDB connections are not shared across threads.
        return self._file.cursor()

    def _fact_made_once(self, key: str, make: Callable[[], str]) -> str:
        """The stored fact ``key``; on first use ``make()``'s value, stored for good."""
        row = self._cursor().execute("SELECT value FROM facts WHERE key = ?", [key]).fetchone()
        if row:
            return str(row[0])
        value = make()
        self._cursor().execute("INSERT INTO facts VALUES (?, ?)", [key, value])
        return str(value)

    # -- writing ----------------------------------------------------------------------------
    def put(self, write: PreparedWrite) -> WriteResult:
        # Concurrent puts share one transaction and one fsync (see _put_group).
        return self._commits.submit(write)

    def _put_group(self, writes: list[PreparedWrite]) -> list[WriteResult | BaseException]:
        """Commit a group of puts (GroupCommit's leader, one at a time): each part once."""
        results: list[WriteResult | BaseException] = []
        for part in parts(writes):
            results.extend(self._put_part([writes[i] for i in part]))
        return results

    def _put_part(self, writes: list[PreparedWrite]) -> list[WriteResult | BaseException]:
        """Plan each put (a refused one fails alone), commit the rest, index, then ack."""
        self._search.open_keywords(
            {t for w in writes for t in w.records.column("tenant").to_pylist()}
        )
        with self._write_lock:
            self._heal_if_degraded()
            planned, seq = self._planner.plan_each(writes, self._seq)
            accepted = [p for p in planned if isinstance(p, Planned)]
            if not accepted:
                return _answers(planned)
            merged = merge(accepted)
            self._commit_durably(merged)
            self._seq = max(self._seq, seq)
            self._sync.note(merged.rows, [old.seq for _, old in merged.replaced])
        # Indexing holds no store lock: GroupCommit runs one leader at a time, so the
        # indexes see the parts in commit order, and every put is indexed before its ack.
        try:
            with self._indexing:
                self._index_committed(merged)
        finally:
            self._indexed.advance(self._seq)
        self._checkpoints.nudge()
        return _answers(planned)

    def _index_committed(self, merged: Merged) -> None:
        """Tell the search what a part committed (after the commit, before the acks)."""
        if not merged.rows.num_rows:
            return
        new_rows, texts, sealed = merged.rows, merged.texts, merged.sealed
        replaced, dead_vectors = merged.replaced, merged.dead_vectors
        self._search.committed(
            new_rows, texts, sealed, [old.seq for _, old in replaced], dead_vectors
        )
        if merged.deferred:
            self._backfill.notify()

    def currents(self, table: pa.Table) -> dict[tuple[str, str], Current]:
        """The stored current version of each (tenant, id) of ``table`` that has one."""
        return self._planner.currents(table)

    def check_dimensions(self, table: pa.Table) -> None:
        """Refuse vectors whose dimension differs from the one their model stores."""
        self._models.check(table)

    def _commit_durably(self, merged: Merged) -> None:
        """Commit a part as one transaction (see ``_durable``); nothing to write, no commit."""
        seqs = merged.seqs
        if seqs is None:
            return
        try:
            self._file.commit(lambda cur: write_part(cur, merged, self._models), seqs)
        except AiosMemoryError:
            with contextlib.suppress(duckdb.Error):  # models it registered are not stored
                self._models.reload(self._cursor)
            raise

    def _heal_if_degraded(self) -> None:
        """After a storage fault, open the database again if DuckDB gave it up."""
        fault = self._file.state.fault
        if fault is None:
            return
        try:
            self._file.heal()
        except (duckdb.Error, AiosMemoryError):
            raise type(fault)(fault.message, **fault.detail) from None

    def degraded(self) -> str | None:
        """Why writes are refused (a full or failing disk), or None; see ``Store.degraded``."""
        return self._file.state.reason()

    def _index_if_current(self, tenant: str, doc: KeywordDoc) -> bool:
        """Give ``doc`` to the keyword index if its row is still the current version."""
        self._indexed.wait_for(doc.seq)  # after its put's own indexing, which would undo it
        with self._write_lock:
            found = (
                self._cursor()
                .execute("SELECT count(*) FROM records WHERE seq = ?", [doc.seq])
                .fetchone()
            )
            if not found or not found[0]:
                return False
            self._search.index_keywords(tenant, [doc])
            return True

    def _index_opened_in_order(
        self, tenant: str, doc: KeywordDoc, vector: SealedVector | None, opened: dict[str, Any]
    ) -> bool:
        """``SealedVectors.index_opened_if_current``, after the put's own indexing."""
        self._indexed.wait_for(doc.seq)
        return self._sealed.index_opened_if_current(tenant, doc, vector, opened)

    # -- reading ----------------------------------------------------------------------------
    def scan(
        self, request: ScanRequest, batch_rows: int = 65_536, *, view: View | None = None
    ) -> Iterator[pa.RecordBatch]:
        sql = compile_scan(request)
        compile_view(sql, view)
        where = sql.where()
        if request.where or request.session is not None:
            # Filter sealed records by their opened fields, return them as stored.
            where = f"seq IN (SELECT seq FROM {OPENED_VIEW} WHERE {where})"
        reader = (
            self._cursor()
            .sql(f"SELECT {COLUMNS} FROM records WHERE {where} ORDER BY seq", params=sql.params)
            .to_arrow_reader(batch_rows)
        )
        for batch in reader:
            yield conform(batch)

    def get(self, tenant: str, ids: list[str], *, view: View | None = None) -> pa.Table:
        batches = list(self.scan(ScanRequest(tenant=tenant, ids=list(ids)), view=view))
        return pa.Table.from_batches(batches, schema=RECORD_SCHEMA)

    def search(
        self,
        request: SearchRequest,
        query_vector: np.ndarray | None,
        embed_model: str | None,
        *,
        view: View | None = None,
    ) -> pa.Table:
        return self._search.search(request, query_vector, embed_model, view=view)

    # -- counting ---------------------------------------------------------------------------
    def tier_counts(self, tenant: str, view: View | None = None) -> dict[str, tuple[int, int]]:
        return tier_counts(self._cursor(), tenant, view)

    def stats(self, tenant: str, *, view: View | None = None) -> dict[str, Any]:
        tiers = tier_stats(self._cursor(), tenant, view)
        return {
            "tenant": tenant,
            "tiers": tiers,
            "memories": sum(t["memories"] for t in tiers.values()),
            "embed_models": self._models.of_tenant(tenant),
            "data_dir_bytes": dir_bytes(self.data_dir),
            "replica_id": self.replica_id,
            "vectors_pending": self._search.pending,
            "keyword_backlog": self._backlog.waiting(tenant, self._backfill.handled()),
            "index_events": self._search.events,
        }

    # -- payload decoding (see payloads) ---------------------------------------------------
    def dictionary_row(self, tenant: str, dict_id: int) -> dict[str, Any] | None:
        """``tenant``'s live dictionary record ``dict_id`` (``PAYLOAD_COLUMNS``), or None."""
        found = (
            self._cursor()
            .sql(
                f"SELECT {PAYLOAD_SQL} FROM records WHERE tenant = ? AND kind = ? "
                "AND dict_id = ? AND NOT deleted",
                params=[tenant, DICTIONARY_KIND, dict_id],
            )
            .to_arrow_table()
            .to_pylist()
        )
        return found[0] if found else None  # decoded (and opened, if sealed) by payloads

    def current_rows(self, tenant: str, ids: list[str]) -> list[dict[str, Any]]:
        """The stored current rows of ``ids`` (``PAYLOAD_COLUMNS``), as ``payloads`` reads them."""
        cur = self._cursor()
        cur.register("wanted_ids", pa.table({"id": pa.array(ids, pa.string())}))
        return (
            cur.sql(
                f"SELECT {PAYLOAD_SQL} FROM records WHERE tenant = ? AND id IN "
                "(SELECT id FROM wanted_ids)",
                params=[tenant],
            )
            .to_arrow_table()
            .to_pylist()
        )

    # -- sync (SyncBookkeeping, kept by sync.bookkeeping.SyncBook) -------------------------
    def sync_items(
        self, tenant: str, tiers: tuple[str, ...], horizon: int
    ) -> tuple[ItemSet, np.ndarray]:
        """See ``SyncBookkeeping.sync_items``."""
        return self._sync.sync_items(tenant, tiers, horizon)

    def sync_rows(
        self, tenant: str, seqs: np.ndarray, batch_rows: int = 2048
    ) -> Iterator[pa.RecordBatch]:
        """See ``SyncBookkeeping.sync_rows``."""
        return self._sync.sync_rows(tenant, seqs, batch_rows)

    def sync_state(self, tenant: str) -> tuple[int, dict[str, str]]:
        """See ``SyncBookkeeping.sync_state``."""
        return self._sync.sync_state(tenant)

    def sync_open_round(
        self,
        tenant: str,
        peer: str,
        round_id: str,
        peer_clock: int,
        completed: dict[str, str],
        counts: bool = True,
    ) -> None:
        """See ``SyncBookkeeping.sync_open_round``."""
        self._sync.sync_open_round(tenant, peer, round_id, peer_clock, completed, counts)

    def sync_settle(self, tenant: str, tiers: tuple[str, ...]) -> int:
        """See ``SyncBookkeeping.sync_settle``."""
        return self._sync.sync_settle(tenant, tiers)

    def sync_finish(
        self, tenant: str, tiers: tuple[str, ...], peer: str, round_id: str, horizon: int
    ) -> None:
        """See ``SyncBookkeeping.sync_finish``."""
        self._sync.sync_finish(tenant, tiers, peer, round_id, horizon)

    # -- upkeep -----------------------------------------------------------------------------
    def checkpoint(self) -> None:
        # Taken before: their docs are staged, and the checkpoint saves them.
        done = self._backfill.take_done()
        try:
            self._search.checkpoint()
            self._backlog.forget(done)  # (not forgotten: the backfill indexes them again)
        finally:
            with self._write_lock:  # DuckDB's own, kept out of commits (see _durable)
                self._file.checkpoint()

    def compact(
        self, min_waste: float = 0.0, *, wait: bool = True, min_bytes: int = 0
    ) -> dict[str, Any]:
        """Rewrite the database without its dead space, online (see ``compaction``)."""
        return self._compactor.compact(min_waste, wait=wait, min_bytes=min_bytes)

    def waste(self) -> dict[str, Any]:
        """The database file's dead space, estimated (``compaction.Waste``)."""
        return self._compactor.waste().to_dict()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._checkpoints.close()
        self._backfill.close()
        with self._indexing, self._write_lock:
            done = self._backfill.take_done()
            self._search.close()
            self._backlog.forget(done)
            self._file.close()


def _answers(planned: list[Planned | BaseException]) -> list[WriteResult | BaseException]:
    """What each writer of a part is told: its acks, or its own error."""
    return [p.acks if isinstance(p, Planned) else p for p in planned]
