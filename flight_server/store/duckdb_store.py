"""The embedded default store: one DuckDB file for records, derived indexes beside it.

Layout of a data directory::

    memory.duckdb       records (current version per tenant and id) and facts
    index/<tenant>/     keyword/ (tantivy) and vectors/<tier>/<model>/ (hnswlib)
    token               the bearer token, mode 0600 (written by the server)

A write is acknowledged only after DuckDB's commit (which syncs its WAL);
the indexes are updated after, and rebuilt or caught up from the records
whenever they are missing, stale or fail their checksum.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from aios_memory.client.codec.vectors import dequantize
from aios_memory.flight_server._files import dir_bytes
from aios_memory.flight_server.search._hit_cache import CACHED_COLUMNS, HitCache
from aios_memory.flight_server.search.allowed_rows import AllowedRows
from aios_memory.flight_server.search.fusion import fuse
from aios_memory.flight_server.search.index_set import IndexSet, VectorKey
from aios_memory.flight_server.search.keyword_index import KeywordDoc
from aios_memory.flight_server.search.vector_index import HnswParams
from aios_memory.flight_server.sync import _state as sync_sql
from aios_memory.flight_server.sync.bookkeeping import SyncStoreMixin
from aios_memory.schemas import (
    DEFAULT_SYNC_TIERS,
    DICTIONARY_KIND,
    MAX_CLEARANCE,
    RECORD_SCHEMA,
    SCENE_KIND,
    TIERS,
    HybridClock,
    InvalidVectorError,
    ScanRequest,
    SearchRequest,
    ServerInternalError,
    View,
)

from . import sealed_vectors as sealed_sql
from ._sealed_fields import OPENED_VIEW, SEALED_FIELDS_DDL, fields_table, write_fields
from ._sql_filters import Sql, compile_scan, compile_view, compile_where
from ._text_backfill import TEXT_BACKLOG_DDL, TextBackfill
from ._text_backlog import PAYLOAD_SQL, TextBacklogMixin
from .base import PreparedWrite, Store, WriteResult
from .payloads import PayloadTexts
from .rows import conform, current_of, split_acks, tiers_of
from .sealed_vectors import SEALED_VECTORS_DDL, VECTOR_ROWS, SealedVectorsMixin
from .versioning import SAME_MEMORY_FIELDS, Current, decide

__all__ = ["DuckDBStore", "DB_FILE"]

DB_FILE = "memory.duckdb"
COLUMNS = ", ".join(f.name for f in RECORD_SCHEMA)
_DDL = """
CREATE TABLE IF NOT EXISTS records (
    seq BIGINT NOT NULL, id VARCHAR NOT NULL, tenant VARCHAR NOT NULL, tier VARCHAR NOT NULL,
    agent VARCHAR, session VARCHAR, kind VARCHAR NOT NULL, created_at TIMESTAMPTZ NOT NULL,
    hlc UBIGINT NOT NULL, origin VARCHAR NOT NULL, privacy UTINYINT NOT NULL,
    codec VARCHAR NOT NULL, dict_id UINTEGER, payload BLOB NOT NULL, raw_size UINTEGER NOT NULL,
    content_hash BLOB NOT NULL, embedding TINYINT[], embedding_scale FLOAT, embed_model VARCHAR,
    metadata VARCHAR, deleted BOOLEAN NOT NULL
);
CREATE TABLE IF NOT EXISTS facts (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS models (
    tenant VARCHAR NOT NULL, embed_model VARCHAR NOT NULL, dim INTEGER NOT NULL,
    PRIMARY KEY (tenant, embed_model)
);
"""
_CANDIDATES_MIN = 50
_ALLOWED_CACHE_SIZE = 64


class DuckDBStore(SyncStoreMixin, SealedVectorsMixin, TextBacklogMixin, Store):
    """Records in DuckDB, vectors in hnswlib, keywords in tantivy; see the module docstring."""

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
        """``replica_id`` and ``clock``: a lake replica's own, shared by its tenant caches
        (``lake_store``); by default this file's, kept in its facts table."""
        self.data_dir = Path(data_dir)
        self.sync_tiers = tuple(sync_tiers)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._con = self._connect(self.data_dir / DB_FILE)
        self._write_lock = threading.Lock()
        self.replica_id = replica_id or self._fact("replica_id", lambda: "r" + secrets.token_hex(8))
        last_hlc, last_seq = (
            self._cursor()
            .execute("SELECT coalesce(max(hlc), 0), coalesce(max(seq), 0) FROM records")
            .fetchone()
        )
        self.clock = clock or HybridClock(int(last_hlc), wall_ms)
        self.clock.observe(int(last_hlc))
        self._seq = int(last_seq)
        self._items_cache = {}  # (tenant, tiers) -> _item_cache.ItemCache
        self._dims = {
            (t, m): d
            for t, m, d in self._cursor()
            .execute("SELECT tenant, embed_model, dim FROM models")
            .fetchall()
        }
        self._hits = HitCache(self._load_hit_rows)
        self.payloads = PayloadTexts(self._dictionary_row, self._current_rows)
        self._allowed_cache: dict[str, AllowedRows] = {}
        self.indexes = IndexSet(
            self.data_dir / "index",
            params or HnswParams(),
            self._live_labels,
            self._fetch_vectors,
            self._keyword_backlog,
        )
        self._backfill = TextBackfill(self)

    # -- connection -------------------------------------------------------------------------
    @staticmethod
    def _connect(path: Path) -> duckdb.DuckDBPyConnection:
        try:
            # 16 KiB blocks for a new file (an existing one keeps its own): with the default
            # 256 KiB, each small table costs a whole block, about 190 bytes a memory at
            # LoCoMo's size (bench/disk_bytes.py).
            con = duckdb.connect(str(path), config={"default_block_size": "16384"})
        except duckdb.Error as exc:
            raise ServerInternalError(
                f"cannot open the database {path}: {exc}. If it was damaged by a crash or a full "
                f"disk, move it aside and restore from `aimem export` or the cloud copy."
            ) from None
        con.execute("SET TimeZone = 'UTC'")
        con.execute(_DDL)
        con.execute(sync_sql.SYNC_DDL)
        con.execute(TEXT_BACKLOG_DDL)
        con.execute(SEALED_VECTORS_DDL)
        con.execute(SEALED_FIELDS_DDL)
        return con

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        # One cursor per call: DuckDB connections are not shared across threads.
        return self._con.cursor()

    def _fact(self, key: str, make: Any) -> str:
        row = self._cursor().execute("SELECT value FROM facts WHERE key = ?", [key]).fetchone()
        if row:
            return str(row[0])
        value = make()
        self._cursor().execute("INSERT INTO facts VALUES (?, ?)", [key, value])
        return str(value)

    # -- writing ----------------------------------------------------------------------------
    def put(self, write: PreparedWrite) -> WriteResult:
        with self._write_lock:
            table = write.records
            rows = table.select(
                ["id", "tenant", "hlc", "origin", "codec", "dict_id", *SAME_MEMORY_FIELDS]
            ).to_pylist()
            currents = self._currents(table)
            first_new_seq = self._seq + 1
            written: dict[tuple[str, str], tuple[int, int, int, str]] = {}
            acks, replaced = [], []
            for i, row in enumerate(rows):
                key = (row["tenant"], row["id"])
                decision = decide(
                    row,
                    currents.get(key),
                    self.clock,
                    self.replica_id,
                    self.sync_tiers,
                    write.reencode,
                )
                acks.append((row["id"], decision.hlc))
                if not decision.write:
                    continue
                self._seq += 1
                old = decision.replaces
                if old is not None and old.seq < first_new_seq:
                    replaced.append((key, old))  # a stored row; one from this put is just dropped
                written[key] = (i, self._seq, decision.hlc, decision.origin)
                currents[key] = current_of(row, self._seq, decision, table, i)
            in_order = sorted(written.values(), key=lambda w: w[1])
            new_rows = self._rows_to_insert(table, in_order)
            sealed = sealed_sql.vector_table(table, [w[:2] for w in in_order], write.sealed)
            if sealed.num_rows:
                self._check_dimensions(sealed_sql.dimension_rows(new_rows, sealed))
            fields = fields_table([w[:2] for w in in_order], write.opened)
            old_models = sealed_sql.models_of(self._cursor(), [old.seq for _, old in replaced])
            # A keyword index opened after the commit would catch up on this put's own rows
            # from the table, and send its lm rows to the model instead of using write.texts.
            for tenant in set(new_rows.column("tenant").to_pylist()):
                self.indexes.keyword(tenant)
            self._commit(
                new_rows,
                replaced,
                [w[1] for w in in_order if w[0] in write.deferred],
                sealed,
                fields,
            )
            self._note_for_sync(new_rows, [old.seq for _, old in replaced])
            self._allowed_cache.clear()
            self._hits.append(new_rows, len(replaced))
            self._index(
                new_rows, [write.texts[w[0]] for w in in_order], replaced, sealed, old_models
            )
            if write.deferred:
                self._backfill.notify()
            return split_acks(acks, write.batch_sizes)

    def currents(self, table: pa.Table) -> dict[tuple[str, str], Current]:
        """The stored current version of each (tenant, id) of ``table`` that has one."""
        return self._currents(table)

    def check_dimensions(self, table: pa.Table) -> None:
        """Refuse vectors whose dimension differs from the one their model stores."""
        self._check_dimensions(table)

    def _currents(self, table: pa.Table) -> dict[tuple[str, str], Current]:
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

    def _rows_to_insert(
        self, table: pa.Table, written: list[tuple[int, int, int, str]]
    ) -> pa.Table:
        if not written:
            return table.slice(0, 0).append_column("seq", pa.array([], pa.int64()))
        picked = table.take(pa.array([w[0] for w in written], pa.int64()))
        picked = picked.set_column(
            picked.schema.get_field_index("hlc"),
            RECORD_SCHEMA.field("hlc"),
            pa.array([w[2] for w in written], pa.uint64()),
        )
        picked = picked.set_column(
            picked.schema.get_field_index("origin"),
            RECORD_SCHEMA.field("origin"),
            pa.array([w[3] for w in written], pa.string()),
        )
        self._check_dimensions(picked)
        return picked.append_column("seq", pa.array([w[1] for w in written], pa.int64()))

    def _check_dimensions(self, table: pa.Table) -> None:
        lengths = table.column("embedding").combine_chunks().value_lengths().to_pylist()
        dims = dict(self._dims)  # a new model takes the dimension of its first vector
        for row, (tenant, model, dim) in enumerate(
            zip(
                table.column("tenant").to_pylist(), table.column("embed_model").to_pylist(), lengths
            )
        ):
            if dim is None:
                continue
            known = dims.setdefault((tenant, model), dim)
            if known != dim:
                raise InvalidVectorError(
                    f"embedding at row {row} has dimension {dim}; tenant {tenant!r} stores "
                    f"{known}-dimensional vectors for model {model!r}",
                    row=row,
                    expected=known,
                    got=dim,
                    embed_model=model,
                )

    def _commit(
        self,
        new_rows: pa.Table,
        replaced: list[tuple[tuple[str, str], Current]],
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
            self._register_models(cur, new_rows)
            self._register_models(cur, sealed)
            cur.execute("COMMIT")
        except duckdb.Error as exc:
            cur.execute("ROLLBACK")
            raise ServerInternalError(f"the write was not committed: {exc}") from None

    def _register_models(self, cur: duckdb.DuckDBPyConnection, rows: pa.Table) -> None:
        models = set(zip(rows.column("tenant").to_pylist(), rows.column("embed_model").to_pylist()))
        if all(key in self._dims for key in models if key[1] is not None):
            return
        lengths = rows.column("embedding").combine_chunks().value_lengths().to_pylist()
        for tenant, model, dim in zip(
            rows.column("tenant").to_pylist(), rows.column("embed_model").to_pylist(), lengths
        ):
            if dim is not None and (tenant, model) not in self._dims:
                cur.execute("INSERT INTO models VALUES (?, ?, ?)", [tenant, model, dim])
                self._dims[(tenant, model)] = dim

    def _index(
        self,
        rows: pa.Table,
        texts: list[str | None],
        replaced: list[tuple[tuple[str, str], Current]],
        sealed: pa.Table,
        old_models: dict[int, str],
    ) -> None:
        for (tenant, _), old in replaced:
            model = old.embed_model or old_models.get(old.seq)  # a sealed row's is apart
            if model is not None:
                index = self.indexes.existing_vector((tenant, old.tier, model))
                if index is not None:
                    index.remove([old.seq])
        self._add_vectors(rows)
        if sealed.num_rows:
            self._add_vectors(sealed)
        by_tenant: dict[str, list[KeywordDoc]] = {}
        columns = (rows.column(c).to_pylist() for c in ("tenant", "id", "seq", "tier", "privacy"))
        for tenant, id_, seq, tier, privacy, text in zip(*columns, texts):
            by_tenant.setdefault(tenant, []).append(KeywordDoc(id_, seq, tier, privacy, text))
        for tenant, docs in by_tenant.items():
            self.indexes.keyword(tenant).apply(docs)
        self.indexes.notify()

    def _add_vectors(self, rows: pa.Table) -> None:
        groups: dict[VectorKey, list[int]] = {}
        columns = (
            rows.column(c).to_pylist()
            for c in ("tenant", "tier", "embed_model", "embedding_scale", "deleted")
        )
        for i, (tenant, tier, model, scale, deleted) in enumerate(zip(*columns)):
            if scale is not None and not deleted:
                groups.setdefault((tenant, tier, model), []).append(i)
        for key, positions in groups.items():
            index = self.indexes.existing_vector(key)
            if index is None:
                # Opening reconciles with the committed records, which already hold these rows.
                self.indexes.vector(key, self._dims[(key[0], key[2])])
                continue
            part = rows.take(pa.array(positions, pa.int64()))
            vectors = dequantize(
                part.column("embedding").combine_chunks(),
                part.column("embedding_scale").combine_chunks(),
            )
            index.add(part.column("seq").to_numpy(), vectors)
        self.indexes.notify()

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

    def _load_hit_rows(self) -> pa.Table:
        columns = ", ".join(CACHED_COLUMNS)
        return (
            self._cursor()
            .sql(f"SELECT seq, {columns} FROM records WHERE NOT deleted ORDER BY seq")
            .to_arrow_table()
        )

    def _allowed(
        self, request: SearchRequest, tiers: list[str], view: View | None
    ) -> AllowedRows | None:
        """Live rows a ``where`` and the caller's view admit, cached until the next write
        (agents repeat filters); None when neither filters more than ``tiers`` does."""
        if not request.where and not _filters_rows(view):
            return None
        key = json.dumps(
            [
                request.tenant,
                tiers,
                request.where,
                view and [view.tiers, view.max_privacy, view.reader],
            ],
            sort_keys=True,
        )
        cached = self._allowed_cache.get(key)
        if cached is not None:
            return cached
        sql = Sql()
        sql.add("tenant = ?", request.tenant)
        compile_where(sql, {"tier": {"$in": tiers}, **(request.where or {})})
        compile_view(sql, view)
        sql.add("NOT deleted")
        rows = (
            self._cursor()
            .execute(f"SELECT seq FROM {OPENED_VIEW} WHERE {sql.where()}", sql.params)
            .fetchnumpy()
        )
        allowed = AllowedRows(rows["seq"])
        with self._write_lock:
            if len(self._allowed_cache) >= _ALLOWED_CACHE_SIZE:
                self._allowed_cache.pop(next(iter(self._allowed_cache)))
            self._allowed_cache[key] = allowed
        return allowed

    def search(
        self,
        request: SearchRequest,
        query_vector: np.ndarray | None,
        embed_model: str | None,
        *,
        view: View | None = None,
    ) -> pa.Table:
        tiers = [t for t in tiers_of(request.tier) if view is None or t in view.tiers]
        allowed = self._allowed(request, tiers, view)
        depth = min(max(request.k * 2, _CANDIDATES_MIN), 2000)
        vector_hits = keyword_hits = None
        if request.mode != "keyword" and query_vector is not None and embed_model:
            vector_hits = self._vector_candidates(
                request.tenant,
                tiers,
                embed_model,
                query_vector,
                depth,
                None if allowed is None else allowed.seqs,
            )
        if request.mode != "vector" and request.query:
            # A clearance alone is a range inside tantivy's query, much cheaper than a set
            # of allowed rows (bench/privacy.py); a where or a reader list needs the set.
            by_rows = bool(request.where) or (view is not None and view.reader is not None)
            keyword_hits = self.indexes.keyword(request.tenant).search(
                request.query,
                depth,
                tiers,
                allowed if by_rows else None,
                view.max_privacy if view is not None and not by_rows else None,
            )
        return self._hits.take(fuse(vector_hits, keyword_hits, request.k))

    def _vector_candidates(
        self,
        tenant: str,
        tiers: list[str],
        model: str,
        query: np.ndarray,
        depth: int,
        allowed: np.ndarray | None,
    ) -> list[tuple[int, float]]:
        dim = self._dims.get((tenant, model))
        if dim is None:
            return []
        if len(query) != dim:
            raise InvalidVectorError(
                f"query vector has dimension {len(query)}; model {model!r} stores {dim}",
                expected=dim,
                got=len(query),
            )
        found: list[tuple[int, float]] = []
        for tier in tiers:
            index = self.indexes.vector((tenant, tier, model), dim)
            if len(index):
                labels, distances = index.search(query, depth, allowed)
                found.extend((int(l), float(d)) for l, d in zip(labels, distances))
        return sorted(found, key=lambda pair: pair[1])[:depth]

    # -- facts ------------------------------------------------------------------------------
    def tier_counts(self, tenant: str, view: View | None = None) -> dict[str, tuple[int, int]]:
        sql = Sql()
        sql.add(
            "tenant = ? AND NOT deleted AND kind NOT IN (?, ?)", tenant, DICTIONARY_KIND, SCENE_KIND
        )
        compile_view(sql, view)
        rows = (
            self._cursor()
            .execute(
                "SELECT tier, count(*), coalesce(sum(octet_length(payload)), 0) FROM records "
                f"WHERE {sql.where()} GROUP BY tier",
                sql.params,
            )
            .fetchall()
        )
        counts = {tier: (0, 0) for tier in TIERS}
        counts.update({tier: (int(n), int(b)) for tier, n, b in rows})
        return counts

    def stats(self, tenant: str, *, view: View | None = None) -> dict[str, Any]:
        # Dictionaries and episodes' scene data are records but not memories: counted apart.
        sql = Sql()
        sql.add("tenant = ?", tenant)
        compile_view(sql, view)
        rows = (
            self._cursor()
            .execute(
                "SELECT tier, count(*) FILTER (WHERE NOT deleted), count(*) FILTER (WHERE deleted), "
                "coalesce(sum(raw_size), 0), coalesce(sum(octet_length(payload)), 0), "
                "CASE kind WHEN ? THEN 'dictionary' WHEN ? THEN 'scene' ELSE 'memory' END "
                f"FROM records WHERE {sql.where()} GROUP BY ALL",
                [DICTIONARY_KIND, SCENE_KIND, *sql.params],
            )
            .fetchall()
        )
        tiers = {
            t: {
                "memories": 0,
                "deleted": 0,
                "text_bytes": 0,
                "payload_bytes": 0,
                "dictionaries": 0,
                "dictionary_bytes": 0,
                "scene_bytes": 0,
            }
            for t in TIERS
        }
        for tier, live, dead, raw, stored, kind in rows:
            if kind == "dictionary":
                tiers[tier].update(dictionaries=live, dictionary_bytes=int(stored))
            elif kind == "scene":
                tiers[tier].update(scene_bytes=int(stored))
            else:
                tiers[tier].update(
                    memories=live, deleted=dead, text_bytes=int(raw), payload_bytes=int(stored)
                )
        return {
            "tenant": tenant,
            "tiers": tiers,
            "memories": sum(t["memories"] for t in tiers.values()),
            "embed_models": {m: d for (t, m), d in self._dims.items() if t == tenant},
            "data_dir_bytes": dir_bytes(self.data_dir),
            "replica_id": self.replica_id,
            "vectors_pending": self.indexes.pending,
            "keyword_backlog": self._keyword_backlog_count(tenant),
            "index_events": list(self.indexes.events),
        }

    # -- index callbacks --------------------------------------------------------------------
    def _live_labels(self, key: VectorKey) -> np.ndarray:
        rows = (
            self._cursor()
            .execute(
                f"SELECT seq FROM {VECTOR_ROWS} WHERE tenant = ? AND tier = ? AND embed_model = ?",
                list(key),
            )
            .fetchnumpy()
        )
        return rows["seq"].astype(np.uint64)

    def _fetch_vectors(self, key: VectorKey, labels: np.ndarray) -> np.ndarray:
        cur = self._cursor()
        cur.register("wanted", pa.table({"seq": pa.array(labels.astype(np.int64))}))
        table = cur.sql(
            "SELECT r.seq, r.embedding, r.embedding_scale FROM wanted w "
            f"JOIN {VECTOR_ROWS} r USING (seq) ORDER BY w.seq"
        ).to_arrow_table()
        if table.num_rows != len(labels):
            raise ServerInternalError(f"vectors of {key} changed while the index was opening")
        return dequantize(
            table.column("embedding").combine_chunks(),
            table.column("embedding_scale").combine_chunks().cast(pa.float32()),
        )

    # -- payload decoding (see _payloads) --------------------------------------------------
    def _dictionary_row(self, tenant: str, dict_id: int) -> dict[str, Any] | None:
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
        return found[0] if found else None  # decoded (and opened, if sealed) by _payloads

    def _current_rows(self, tenant: str, ids: list[str]) -> list[dict[str, Any]]:
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

    def checkpoint(self) -> None:
        done = (
            self._backfill.take_done()
        )  # before: their docs are staged, the checkpoint saves them
        self.indexes.checkpoint()
        self._forget_backlog(done)

    def close(self) -> None:
        self._backfill.close()
        with self._write_lock:
            done = self._backfill.take_done()
            self.indexes.close()
            self._forget_backlog(done)
            self._con.execute("CHECKPOINT")
            self._con.close()


def _filters_rows(view: View | None) -> bool:
    """Whether ``view`` hides rows of the tiers it admits (a clearance or a reader list)."""
    return view is not None and (view.reader is not None or view.max_privacy < MAX_CLEARANCE)
