"""A tenant a lake replica serves: its cache, its log, and how far the cache holds the log.

Apart from ``store`` so that module is about planning, committing and serving;
this one is the tenant's state and the small files that keep it across restarts
(the lake version the cache holds, the replica's name), and the shaping of lake
rows into what the cache applies.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from aios_memory.flight_server.store.duckdb_store import DuckDBStore
from aios_memory.flight_server.store.group_commit import GroupCommit
from aios_memory.schemas import DICTIONARY_KIND

from ._log import TenantLog

__all__ = ["Tenant", "latest_versions", "read_seen", "note_seen", "replica_id_of"]


@dataclass
class Tenant:
    """A tenant this replica serves: its cache, its log, and how far it has read."""

    name: str
    cache: DuckDBStore
    log: TenantLog
    seen: int
    lock: threading.RLock = field(default_factory=threading.RLock)
    checked: float = 0.0
    used: float = field(default_factory=time.monotonic)
    commits: GroupCommit | None = None


def latest_versions(rows: pa.Table) -> pa.Table:
    """Only the highest ``(hlc, origin)`` of each id (what the cache would keep anyway, and
    one row per id is what a put may carry), in the order the lake holds them (commit
    order: a cache rebuilt or caught up scans in the order the writer's did), dictionaries
    first: the memories compressed with one are decoded after it, even when a later chunk
    holds them."""
    order = pc.sort_indices(
        rows, [("id", "ascending"), ("hlc", "descending"), ("origin", "descending")]
    )
    ids = rows.column("id").take(order).combine_chunks()
    first = np.ones(len(ids), dtype=bool)
    if len(ids) > 1:
        first[1:] = pc.not_equal(ids[1:], ids[:-1]).to_numpy(zero_copy_only=False)
    latest = rows.take(np.sort(order.to_numpy()[first]))
    dictionaries = pc.equal(latest.column("kind"), DICTIONARY_KIND)
    return pa.concat_tables([latest.filter(dictionaries), latest.filter(pc.invert(dictionaries))])


_SEEN_FILE = "lake_version"


def read_seen(folder: Path) -> int:
    """The lake version the cache in ``folder`` holds (0: read the whole log)."""
    try:
        return int((folder / _SEEN_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return 0  # a new or damaged note: read the whole log again (applying is idempotent)


def note_seen(tenant: Tenant, version: int) -> None:
    """Remember how far the cache holds the lake, after the cache committed it: behind is
    safe (rows are read again), ahead never happens. A file, not a DuckDB row: a synced
    DuckDB commit cost 4.6 ms a write (bench/cluster.py's profile)."""
    tenant.seen = version
    path = tenant.cache.data_dir / _SEEN_FILE
    scratch = path.with_suffix(".tmp")
    scratch.write_text(str(version))
    scratch.replace(path)


def replica_id_of(data_dir: Path) -> str:
    """This replica's name, kept in ``data_dir`` (made on first use)."""
    path = data_dir / "replica_id"
    if path.exists():
        return path.read_text().strip()
    value = "r" + secrets.token_hex(8)
    path.write_text(value + "\n")
    return value
