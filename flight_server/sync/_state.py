"""What a sync round needs of the DuckDB store: item sets, rows by seq, peers and the horizon.

SQL for sync lives here, kept out of ``duckdb_store`` so that module stays about
records. Every function takes a cursor; ``bookkeeping.SyncBook`` holds the lock.

Tombstone collection (``sync/PROTOCOL.md``, "Tombstones"): a hub (the side
that answers a round) remembers, per peer, the round it is in (``pending_*``)
and the last round the peer finished (``acked_*``): its own last ``seq`` at
that round's start and the peer's clock then. A tombstone is settled when
every known peer finished a round that started after the hub stored it, and
no peer can still write below it; the horizon is the highest hlc below which
every tombstone is settled. Settled tombstones leave the item sets and the
records; a device adopts its hub's horizon when a round finishes.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa

from aios_memory.flight_server._arrow import conform
from aios_memory.schemas import RECORD_SCHEMA

__all__ = [
    "SYNC_DDL",
    "item_arrays",
    "rows_by_seq",
    "open_round",
    "settle",
    "adopt_horizon",
    "horizon_of",
    "completed_rounds",
    "finish_round",
]

SYNC_DDL = """
CREATE TABLE IF NOT EXISTS sync_peers (
    tenant VARCHAR NOT NULL, peer VARCHAR NOT NULL,
    pending_round VARCHAR, pending_seq BIGINT, pending_clock UBIGINT,
    acked_seq BIGINT, acked_clock UBIGINT, completed_round VARCHAR,
    PRIMARY KEY (tenant, peer)
);
CREATE TABLE IF NOT EXISTS sync_horizons (tenant VARCHAR PRIMARY KEY, horizon UBIGINT NOT NULL);
"""
_COLUMNS = ", ".join(f.name for f in RECORD_SCHEMA)
# The item id of a version, as sync/reconcile.py's item_id computes it.
_ITEM_SQL = (
    "unhex(substr(sha256(id || chr(10) || origin || chr(10) || CAST(hlc AS VARCHAR)), 1, 32))"
)


def _tier_marks(tiers: tuple[str, ...]) -> str:
    return ", ".join("?" for _ in tiers)


def item_arrays(
    cur: duckdb.DuckDBPyConnection, tenant: str, tiers: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(seq, hlc, ids[n,16], deleted)`` of every current version in ``tiers``."""
    table = cur.sql(
        f"SELECT seq, hlc, {_ITEM_SQL} AS item, deleted FROM records WHERE tenant = ? "
        f"AND tier IN ({_tier_marks(tiers)})",
        params=[tenant, *tiers],
    ).to_arrow_table()
    ids = np.empty((0, 16), np.uint8)
    if table.num_rows:
        items = table.column("item").combine_chunks().cast(pa.binary(16))
        ids = np.frombuffer(
            items.buffers()[1], np.uint8, count=16 * len(items), offset=16 * items.offset
        ).reshape(-1, 16)
    return (
        table.column("seq").to_numpy().astype(np.int64),
        table.column("hlc").to_numpy().astype(np.uint64),
        ids,
        table.column("deleted").to_numpy(zero_copy_only=False).astype(bool),
    )


def rows_by_seq(cur: duckdb.DuckDBPyConnection, seqs: np.ndarray) -> pa.RecordBatch:
    """The stored rows of ``seqs`` as one record batch (rows replaced meanwhile are skipped)."""
    cur.register("wanted_seqs", pa.table({"seq": pa.array(np.asarray(seqs, np.int64))}))
    table = cur.sql(
        f"SELECT {_COLUMNS} FROM records JOIN wanted_seqs USING (seq) ORDER BY seq"
    ).to_arrow_table()
    batches = table.combine_chunks().to_batches()
    return conform(batches[0]) if batches else pa.RecordBatch.from_pylist([], schema=RECORD_SCHEMA)


def open_round(
    cur: duckdb.DuckDBPyConnection,
    tenant: str,
    peer: str,
    round_id: str | None,
    peer_clock: int,
    my_seq: int,
    my_id: str,
    completed: dict[str, str],
) -> None:
    """A hub's bookkeeping when a peer opens a round: promote the round it finished, if any.

    ``round_id`` None registers the peer (so it holds collection back) and nothing else.
    """
    row = cur.execute(
        "SELECT pending_round, pending_seq, pending_clock FROM sync_peers "
        "WHERE tenant = ? AND peer = ?",
        [tenant, peer],
    ).fetchone()
    if row is None:
        cur.execute("INSERT INTO sync_peers (tenant, peer) VALUES (?, ?)", [tenant, peer])
    if round_id is None:
        return
    if row is not None and row[0] is not None and completed.get(my_id) == row[0]:
        cur.execute(
            "UPDATE sync_peers SET acked_seq = ?, acked_clock = ? WHERE tenant = ? AND peer = ?",
            [row[1], row[2], tenant, peer],
        )
    cur.execute(
        "UPDATE sync_peers SET pending_round = ?, pending_seq = ?, pending_clock = ? "
        "WHERE tenant = ? AND peer = ?",
        [round_id, my_seq, peer_clock, tenant, peer],
    )


def horizon_of(cur: duckdb.DuckDBPyConnection, tenant: str) -> int:
    row = cur.execute("SELECT horizon FROM sync_horizons WHERE tenant = ?", [tenant]).fetchone()
    return int(row[0]) if row else 0


def settle(
    cur: duckdb.DuckDBPyConnection, tenant: str, tiers: tuple[str, ...]
) -> tuple[int, list[int]]:
    """A hub's horizon from its peers' finished rounds, never lowered.

    Returns ``(horizon, seqs of the tombstones purged)``.
    """
    peers = cur.execute(
        "SELECT count(*), count(acked_seq), min(acked_seq), min(acked_clock) FROM sync_peers "
        "WHERE tenant = ?",
        [tenant],
    ).fetchone()
    known, acked, acked_seq, acked_clock = peers if peers is not None else (0, 0, None, None)
    computed = 0
    if known and known == acked:
        found = cur.execute(
            "SELECT min(hlc) FROM records WHERE tenant = ? AND deleted AND seq > ?",
            [tenant, acked_seq],
        ).fetchone()
        first_open = None if found is None else found[0]
        computed = (
            int(acked_clock) if first_open is None else min(int(acked_clock), int(first_open) - 1)
        )
    return adopt_horizon(cur, tenant, tiers, computed)


def adopt_horizon(
    cur: duckdb.DuckDBPyConnection, tenant: str, tiers: tuple[str, ...], horizon: int
) -> tuple[int, list[int]]:
    """Raise the tenant's horizon to ``horizon`` (never lower it) and drop settled tombstones.

    Returns ``(horizon now, seqs of the tombstones dropped)``; one transaction.
    """
    adopted = max(horizon_of(cur, tenant), int(horizon))
    cur.execute("BEGIN")
    try:
        cur.execute(
            "INSERT INTO sync_horizons VALUES (?, ?) ON CONFLICT (tenant) "
            "DO UPDATE SET horizon = excluded.horizon",
            [tenant, adopted],
        )
        purged = [
            seq
            for (seq,) in cur.execute(
                f"DELETE FROM records WHERE tenant = ? AND deleted AND hlc <= ? "
                f"AND tier IN ({_tier_marks(tiers)}) RETURNING seq",
                [tenant, adopted, *tiers],
            ).fetchall()
        ]
        cur.execute("COMMIT")
    except duckdb.Error:
        cur.execute("ROLLBACK")
        raise
    return adopted, purged


def completed_rounds(cur: duckdb.DuckDBPyConnection, tenant: str) -> dict[str, str]:
    rows = cur.execute(
        "SELECT peer, completed_round FROM sync_peers WHERE tenant = ? "
        "AND completed_round IS NOT NULL",
        [tenant],
    ).fetchall()
    return {peer: round_id for peer, round_id in rows}


def finish_round(cur: duckdb.DuckDBPyConnection, tenant: str, peer: str, round_id: str) -> None:
    """The initiator's note that ``round_id`` with ``peer`` finished on both sides."""
    cur.execute(
        "INSERT INTO sync_peers (tenant, peer, completed_round) VALUES (?, ?, ?) "
        "ON CONFLICT (tenant, peer) DO UPDATE SET completed_round = excluded.completed_round",
        [tenant, peer, round_id],
    )
