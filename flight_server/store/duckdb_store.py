"""The embedded default store: one DuckDB file for records, derived indexes beside it.

Layout of a data directory::

    memory.duckdb       records (current version per tenant and id) and facts
    index/<tenant>/     keyword/ (tantivy) and vectors/<tier>/<model>/ (hnswlib)
    token               the bearer token, mode 0600 (written by the server)

A write is acknowledged only after DuckDB's commit (which syncs its WAL);
the indexes are updated after, and rebuilt or caught up from the records
whenever they are missing, stale or fail their checksum.

This module keeps the records: it connects, decides and commits versions,
scans and counts. Its collaborators share its cursor factory and write lock:
``search.hybrid.HybridSearch`` ranks (and asks the records through
``_search_rows``), ``sync.bookkeeping.SyncBook`` keeps the sync books,
``_embed_models`` the models' dimensions, ``sealed_vectors`` and
``_text_backlog``/``_text_backfill`` index what the write path could not.
"""

from __future__ import annotations

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
from aios_memory.flight_server.search.hybrid import DeadVector, HybridSearch
from aios_memory.flight_server.search.keyword_index import KeywordDoc
from aios_memory.flight_server.search.vector_index import HnswParams
from aios_memory.flight_server.sync.bookkeeping import SyncBook, SyncBookkeeping
from aios_memory.schemas import (
    DEFAULT_SYNC_TIERS,
    DICTIONARY_KIND,
    RECORD_SCHEMA,
    HybridClock,
    ScanRequest,
    SearchRequest,
    ServerInternalError,
    View,
)
from aios_memory.sync.protocol.reconcile import ItemSet

from . import sealed_vectors as sealed_sql
from ._counts import tier_counts, tier_stats
from ._database import COLUMNS, connect
from ._embed_models import EmbedModels
from ._sealed_fields import OPENED_VIEW, fields_table, write_fields
from ._search_rows import SearchRows
from ._sql_filters import compile_scan, compile_view
from ._text_backfill import TextBackfill
from ._text_backlog import PAYLOAD_SQL, TextBacklog
from .base import PreparedWrite, Store, WriteResult
from .payloads import PayloadTexts
from .rows import split_acks, with_versions
from .sealed_vectors import SealedVectors
from .versioning import SAME_MEMORY_FIELDS, Current, Written, plan_put

__all__ = ["DuckDBStore", "DB_FILE"]

DB_FILE = "memory.duckdb"
_Replaced = list[tuple[tuple[str, str], Current]]


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
        self._con = connect(self.data_dir / DB_FILE)
        self._write_lock = threading.Lock()
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
        self._sync = SyncBook(
            self._cursor, self._write_lock, self.replica_id, self.clock, lambda: self._seq
        )
        self._models = EmbedModels(self._cursor)
        self.payloads = PayloadTexts(self.dictionary_row, self.current_rows)
        self._backlog = TextBacklog(self._cursor, self.payloads)
        self._search = self._open_search(params or HnswParams())
        self._sealed = SealedVectors(self._cursor, self._write_lock, self._search, self._models)
        self._backfill = TextBackfill(
            self._backlog,
            self.payloads,
            self._index_if_current,
            self._sealed.index_opened_if_current,
        )

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
        return self._con.cursor()

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
        with self._write_lock:
            plan = plan_put(
                write.records,
                self.currents(write.records),
                self.clock,
                self.replica_id,
                self.sync_tiers,
                write.reencode,
                self._seq,
            )
            self._seq = plan.last_seq
            self._write(write, plan.written, plan.replaced)
            return split_acks(plan.acks, write.batch_sizes)

    def _write(self, write: PreparedWrite, in_order: list[Written], replaced: _Replaced) -> None:
        """Commit the versions that won, then tell the sync books and the search."""
        new_rows = with_versions(write.records, in_order)
        self._models.check(new_rows)
        sealed = sealed_sql.vector_table(write.records, [w[:2] for w in in_order], write.sealed)
        if sealed.num_rows:
            self._models.check(sealed_sql.dimension_rows(new_rows, sealed))
        fields = fields_table([w[:2] for w in in_order], write.opened)
        dead_vectors = self._dead_vectors(replaced)
        self._search.open_keywords(set(new_rows.column("tenant").to_pylist()))
        deferred = [w[1] for w in in_order if w[0] in write.deferred]
        self._commit(new_rows, replaced, deferred, sealed, fields)
        self._sync.note(new_rows, [old.seq for _, old in replaced])
        texts = [write.texts[w[0]] for w in in_order]
        self._search.committed(new_rows, texts, sealed, [o.seq for _, o in replaced], dead_vectors)
        if write.deferred:
            self._backfill.notify()

    def _dead_vectors(self, replaced: _Replaced) -> list[DeadVector]:
        """The vectors of the rows a put replaces; read before the commit deletes the sealed
        ones (a sealed row's model is apart from its record)."""
        old_models = sealed_sql.models_of(self._cursor(), [old.seq for _, old in replaced])
        dead = []
        for (tenant, _), old in replaced:
            model = old.embed_model or old_models.get(old.seq)
            if model is not None:
                dead.append(((tenant, old.tier, model), old.seq))
        return dead

    def currents(self, table: pa.Table) -> dict[tuple[str, str], Current]:
        """The stored current version of each (tenant, id) of ``table`` that has one."""
        keys = table.select(["tenant", "id"])
        cur = self._cursor()
        cur.register("incoming_keys", keys)
        fields = ", ".join(f"r.{f}" for f in SAME_MEMORY_FIELDS)
        found = cur.execute(
            f"SELECT r.tenant, r.id, r.seq, r.hlc, r.origin, r.tier, r.embed_model, r.codec, "
            f"r.dict_id, {fields} "
            "FROM records r JOIN incoming_keys k ON r.tenant = k.tenant AND r.id = k.id"
        ).fetchall()
        return {
            (t, i): Current(seq, hlc, origin, tier, model, tuple(rest), (codec, dict_id))
            for t, i, seq, hlc, origin, tier, model, codec, dict_id, *rest in found
        }

    def check_dimensions(self, table: pa.Table) -> None:
        """Refuse vectors whose dimension differs from the one their model stores."""
        self._models.check(table)

    def _commit(
        self,
        new_rows: pa.Table,
        replaced: _Replaced,
        deferred_seqs: list[int],
        sealed: pa.Table,
        fields: pa.Table,
    ) -> None:
        if not new_rows.num_rows:
            return
        cur = self._cursor()
        cur.register("new_rows", new_rows)
        cur.execute("BEGIN")
        try:
            if replaced:
                cur.register(
                    "old_seqs",
                    pa.table({"seq": pa.array([c.seq for _, c in replaced], pa.int64())}),
                )
                cur.execute("DELETE FROM records WHERE seq IN (SELECT seq FROM old_seqs)")
            cur.execute(f"INSERT INTO records (seq, {COLUMNS}) SELECT seq, {COLUMNS} FROM new_rows")
            if deferred_seqs:
                cur.executemany(
                    "INSERT OR IGNORE INTO text_backlog VALUES (?)",
                    [[seq] for seq in deferred_seqs],
                )
            sealed_sql.write_vectors(cur, sealed, [c.seq for _, c in replaced])
            write_fields(cur, fields, [c.seq for _, c in replaced])
            self._models.register(cur, new_rows)
            self._models.register(cur, sealed)
            cur.execute("COMMIT")
        except duckdb.Error as exc:
            cur.execute("ROLLBACK")
            raise ServerInternalError(f"the write was not committed: {exc}") from None

    def _index_if_current(self, tenant: str, doc: KeywordDoc) -> bool:
        """Give ``doc`` to the keyword index if its row is still the current version."""
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
        self._search.checkpoint()
        self._backlog.forget(done)

    def close(self) -> None:
        self._backfill.close()
        with self._write_lock:
            done = self._backfill.take_done()
            self._search.close()
            self._backlog.forget(done)
            self._con.execute("CHECKPOINT")
            self._con.close()
