"""The write path of the DuckDB store, apart from its commit: look up, plan, and the SQL of a part.

``WritePlanner`` decides the puts of a group one after the other against the stored
versions (``versioning.plan_put``) and checks each beside the ones accepted before
it, so that a refused put fails alone; ``write_part`` is what one transaction
writes for the puts accepted. ``duckdb_store`` holds the lock, commits and indexes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import duckdb
import pyarrow as pa

from aios_memory.flight_server.search.hybrid import DeadVector
from aios_memory.schemas import RECORD_SCHEMA, AiosMemoryError, HybridClock

from . import sealed_vectors as sealed_sql
from ._database import COLUMNS
from ._embed_models import EmbedModels
from ._sealed_fields import fields_table, write_fields
from ._write_group import Merged, Planned
from .base import PreparedWrite
from .rows import split_acks, with_versions
from .versioning import SAME_MEMORY_FIELDS, Current, plan_put

__all__ = ["WritePlanner", "write_part"]

_SMALL_PART = 8  # up to this many rows, a part's SQL binds values instead of Arrow tables
_INSERT_VALUES = (
    f"INSERT INTO records (seq, {COLUMNS}) VALUES ({', '.join('?' * (len(RECORD_SCHEMA) + 1))})"
)
_LOOKUP_BY_VALUE = 256  # a put of up to this many ids looks its stored versions up by value
_SELECT_CURRENT = (
    "SELECT r.tenant, r.id, r.seq, r.hlc, r.origin, r.tier, r.embed_model, r.codec, r.dict_id, "
    + ", ".join(f"r.{f}" for f in SAME_MEMORY_FIELDS)
    + " FROM records r"
)


class WritePlanner:
    """Plans puts for a store: its cursor factory, models, clock, replica id and sync tiers."""

    def __init__(
        self,
        cursor: Callable[[], duckdb.DuckDBPyConnection],
        models: EmbedModels,
        clock: HybridClock,
        replica_id: str,
        sync_tiers: tuple[str, ...],
    ) -> None:
        self._cursor, self._models, self._clock = cursor, models, clock
        self._replica_id, self._sync_tiers = replica_id, sync_tiers

    # -- stored versions --------------------------------------------------------------------
    def currents(self, table: pa.Table) -> dict[tuple[str, str], Current]:
        """The stored current version of each (tenant, id) of ``table`` that has one."""
        keys = table.select(["tenant", "id"])
        if keys.num_rows <= _LOOKUP_BY_VALUE:
            found = self._currents_by_value(keys)
        else:
            cur = self._cursor()
            cur.register("incoming_keys", keys)
            found = cur.execute(
                f"{_SELECT_CURRENT} JOIN incoming_keys k ON r.tenant = k.tenant AND r.id = k.id"
            ).fetchall()
        return {
            (t, i): Current(seq, hlc, origin, tier, model, tuple(rest), (codec, dict_id))
            for t, i, seq, hlc, origin, tier, model, codec, dict_id, *rest in found
        }

    def _currents_by_value(self, keys: pa.Table) -> list[Any]:
        # Ids as values, not a joined table: DuckDB then skips every row group whose id range
        # misses them, and a new id (time-ordered) misses all (1 ms at 100k rows, not 60).
        by_tenant: dict[str, list[str]] = {}
        tenants, ids = keys.column("tenant").to_pylist(), keys.column("id").to_pylist()
        for tenant, id_ in zip(tenants, ids, strict=True):
            by_tenant.setdefault(tenant, []).append(id_)
        cur, found = self._cursor(), []
        for tenant, wanted in by_tenant.items():
            marks = ", ".join("?" * len(wanted))
            sql = f"{_SELECT_CURRENT} WHERE r.tenant = ? AND r.id IN ({marks})"
            found += cur.execute(sql, [tenant, *wanted]).fetchall()
        return found

    # -- planning ---------------------------------------------------------------------------
    def plan_each(
        self, writes: list[PreparedWrite], last_seq: int
    ) -> tuple[list[Planned | BaseException], int]:
        """Each put of a part planned (or its own error), and the last seq given out."""
        currents = self.currents(pa.concat_tables([w.records for w in writes]))
        planned: list[Planned | BaseException] = []
        seq, accepted = last_seq, list[pa.Table]()
        for write in writes:
            try:
                put = self._plan(write, currents, seq, accepted)
            except AiosMemoryError as exc:  # this put alone is refused
                planned.append(exc)
                continue
            planned.append(put)
            if put.dimensions.num_rows and self._new_models(put.dimensions):
                accepted.append(put.dimensions)
            seq += put.rows.num_rows
        return planned, seq

    def _plan(
        self,
        write: PreparedWrite,
        currents: dict[tuple[str, str], Current],
        last_seq: int,
        accepted: list[pa.Table],
    ) -> Planned:
        """Decide ``write`` against the stored versions; check it beside the group's others."""
        plan = plan_put(
            write.records,
            currents,
            self._clock,
            self._replica_id,
            self._sync_tiers,
            write.reencode,
            last_seq,
        )
        in_order = plan.written
        new_rows = with_versions(write.records, in_order)
        sealed = sealed_sql.vector_table(write.records, [w[:2] for w in in_order], write.sealed)
        dims = sealed_sql.dimension_rows(new_rows, sealed) if sealed.num_rows else new_rows
        # A model new to the tenant takes its first dimension from the group as a whole.
        self._models.check(_dimension_rows([*accepted, dims]) if accepted else dims)
        return Planned(
            acks=split_acks(plan.acks, write.batch_sizes),
            rows=new_rows,
            texts=[write.texts[w[0]] for w in in_order],
            sealed=sealed,
            fields=fields_table([w[:2] for w in in_order], write.opened),
            replaced=plan.replaced,
            dead_vectors=self._dead_vectors(plan.replaced),
            deferred=[w[1] for w in in_order if w[0] in write.deferred],
            dimensions=dims,
        )

    def _new_models(self, dims: pa.Table) -> list[tuple[str, str]]:
        """The (tenant, model) of ``dims`` the store has no dimension for yet."""
        tenants, models = dims.column("tenant").to_pylist(), dims.column("embed_model").to_pylist()
        return [
            (t, m)
            for t, m in set(zip(tenants, models, strict=True))
            if m is not None and self._models.dimension(t, m) is None
        ]

    def _dead_vectors(self, replaced: list[tuple[tuple[str, str], Current]]) -> list[DeadVector]:
        """The vectors of the rows a put replaces; read before the commit deletes the sealed
        ones (a sealed row's model is apart from its record)."""
        old_models = sealed_sql.models_of(self._cursor(), [old.seq for _, old in replaced])
        dead = []
        for (tenant, _), old in replaced:
            model = old.embed_model or old_models.get(old.seq)
            if model is not None:
                dead.append(((tenant, old.tier, model), old.seq))
        return dead


def write_part(cur: duckdb.DuckDBPyConnection, merged: Merged, models: EmbedModels) -> None:
    """Inside one transaction on ``cur``: everything a part's accepted puts write."""
    replaced_seqs = [c.seq for _, c in merged.replaced]
    _delete_records(cur, replaced_seqs)
    _insert_records(cur, merged.rows)
    if merged.deferred:
        cur.executemany(
            "INSERT OR IGNORE INTO text_backlog VALUES (?)", [[seq] for seq in merged.deferred]
        )
    sealed, fields = merged.sealed, merged.fields
    assert sealed is not None and fields is not None  # merge() sets both
    sealed_sql.write_vectors(cur, sealed, replaced_seqs)
    write_fields(cur, fields, replaced_seqs)
    models.register(cur, merged.rows)
    models.register(cur, sealed)


def _delete_records(cur: duckdb.DuckDBPyConnection, seqs: list[int]) -> None:
    if not seqs:
        return
    if len(seqs) <= _SMALL_PART:
        cur.execute(f"DELETE FROM records WHERE seq IN ({', '.join('?' * len(seqs))})", seqs)
        return
    cur.register("old_seqs", pa.table({"seq": pa.array(seqs, pa.int64())}))
    cur.execute("DELETE FROM records WHERE seq IN (SELECT seq FROM old_seqs)")


def _insert_records(cur: duckdb.DuckDBPyConnection, rows: pa.Table) -> None:
    # A few rows go in as parameters: registering an Arrow table and planning a scan
    # of it costs about 1 ms more than binding one row's values (measured, 1 row).
    if rows.num_rows > _SMALL_PART:
        cur.register("new_rows", rows)
        cur.execute(f"INSERT INTO records (seq, {COLUMNS}) SELECT seq, {COLUMNS} FROM new_rows")
        return
    names = ["seq", *RECORD_SCHEMA.names]
    values = [rows.column(name).to_pylist() for name in names]
    for row in zip(*values, strict=True):
        cur.execute(_INSERT_VALUES, list(row))


def _dimension_rows(tables: list[pa.Table]) -> pa.Table:
    """``(tenant, embed_model, embedding)`` of several tables, as one for ``EmbedModels.check``."""
    schema = pa.schema(
        [
            ("tenant", pa.string()),
            ("embed_model", pa.string()),
            ("embedding", pa.list_(pa.float32())),
        ]
    )
    full = [t.select(schema.names).cast(schema) for t in tables if t.num_rows]
    return pa.concat_tables(full or [schema.empty_table()])
