"""Give back the space a store no longer uses: rewrite its DuckDB file, online.

DuckDB reuses the blocks it frees but never returns them, and leaves deleted rows in
their row groups until most of a group is gone: a ``recompress`` that re-encodes every
memory, or a tier forgotten, leaves the file as large as before. Compaction copies
everything live into a new file and switches to it (``_generations``):

1. ``COPY FROM DATABASE`` into the new file, in one snapshot, while writes go on; then
   checkpoint and sync the copy.
2. Under the store's write lock: bring the copy up to date with what committed since
   (tables keyed by record seq by their seqs, the small ones whole if they changed),
   close it, sync it.
3. Open the copy, make ``memory.duckdb`` link to it (one rename), serve from it; readers
   still streaming from the old file finish there.

Writes wait only for step 2 and 3 (a delta and an fsync); reads never wait. A crash
before the rename leaves the old file and a partial copy that the next start deletes;
after it, the new file, complete. A compaction that fails (a full disk) deletes its
copy and leaves the store as it was.

The waste estimate that decides whether a rewrite pays: DuckDB's free blocks, plus the
share of the records table's rows that are deleted but still stored, of its used blocks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import duckdb

from aios_memory.flight_server._files import fsync_file
from aios_memory.schemas import AiosMemoryError, ServerInternalError, StorageFullError

from ._durable import DurableFile
from ._generations import current_path, generation_of, install, next_path, wal_of
from ._storage import is_disk_full, storage_fault

__all__ = ["Compactor", "Waste", "AUTO_COMPACT_MIN_BYTES"]

log = logging.getLogger("aios_memory.server")

# Tables whose rows are keyed by a record's seq and never change under one seq (a change
# is a delete and an insert): brought up to date by their seqs. Every other table is small
# (facts, models, sync books): copied again whole under the lock when it changed.
_SEQ_TABLES = ("records", "sealed_vectors", "sealed_fields", "text_backlog")
_TARGET = "aimem_compact_target"
# The background trigger leaves files below this alone: a rewrite would give back little.
AUTO_COMPACT_MIN_BYTES = 64 << 20
# Room a rewrite needs besides the live data it copies: DuckDB's metadata and a margin.
_ROOM_MARGIN = 16 << 20


@dataclass(frozen=True)
class Waste:
    """How much of the database file holds nothing live (an estimate, see the module)."""

    file_bytes: int
    wal_bytes: int
    block_size: int
    total_blocks: int
    free_blocks: int
    dead_rows: int
    stored_rows: int

    @property
    def fraction(self) -> float:
        if not self.total_blocks:
            return 0.0
        used = self.total_blocks - self.free_blocks
        dead_share = self.dead_rows / self.stored_rows if self.stored_rows else 0.0
        return (self.free_blocks + used * dead_share) / self.total_blocks

    @property
    def live_bytes(self) -> int:
        return int(self.file_bytes * (1.0 - self.fraction))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fraction": round(self.fraction, 4)}


class Compactor:
    """Rewrites ``file``'s database without its dead space; one rewrite at a time.

    Parameters
    ----------
    data_dir
        The store's data directory (where the rewrite and the link go).
    file
        The store's ``DurableFile``; switched to the rewrite when it is done.
    write_lock
        The store's write lock: held for the catch-up and the switch only.
    """

    def __init__(self, data_dir: Path, file: DurableFile, write_lock: threading.Lock) -> None:
        self.data_dir, self._file, self._write_lock = Path(data_dir), file, write_lock
        self._running = threading.Lock()

    def waste(self) -> Waste:
        """The current file's dead space, after a checkpoint (rows still in the log are
        neither live nor dead in the file yet): a checkpoint and a few catalog queries."""
        with self._write_lock:
            self._file.checkpoint()
        cur = self._file.cursor()
        size = cur.execute(
            "SELECT block_size, total_blocks, free_blocks FROM pragma_database_size() "
            "WHERE database_name = current_database()"
        ).fetchone()
        stored = cur.execute(
            "SELECT estimated_size FROM duckdb_tables() "
            "WHERE database_name = current_database() AND table_name = 'records'"
        ).fetchone()
        live = cur.execute("SELECT count(*) FROM records").fetchone()
        block_size, total, free = size if size else (0, 0, 0)
        stored_rows = int(stored[0]) if stored else 0
        live_rows = int(live[0]) if live else 0
        return Waste(
            file_bytes=_size(self._file.path),
            wal_bytes=self._file.wal_bytes(),
            block_size=int(block_size),
            total_blocks=int(total),
            free_blocks=int(free),
            dead_rows=max(0, stored_rows - live_rows),
            stored_rows=stored_rows,
        )

    def compact(
        self, min_waste: float = 0.0, *, wait: bool = True, min_bytes: int = 0
    ) -> dict[str, Any]:
        """Rewrite the file if at least ``min_waste`` of it is dead and it has at least
        ``min_bytes``; the report says what was done (``compacted`` False and why, when
        nothing was). ``wait`` False returns at once when another compaction is running.
        """
        if not self._running.acquire(blocking=wait):
            return {"compacted": False, "reason": "a compaction is already running"}
        try:
            before = self.waste()
            if self._file.read_only or self._file.state.fault is not None:
                raise self._file.state.fault or StorageFullError(
                    "the database is open read-only until the disk takes writes: "
                    "compaction waits for it"
                )
            if before.fraction < min_waste:
                return _skipped(before, f"waste {before.fraction:.1%} is under {min_waste:.1%}")
            if before.file_bytes < min_bytes:
                return _skipped(before, f"the file is under {min_bytes >> 20} MiB")
            return self._rewrite(before)
        finally:
            self._running.release()

    # -- the rewrite ------------------------------------------------------------------------
    def _rewrite(self, before: Waste) -> dict[str, Any]:
        started = time.monotonic()
        old, new = self._file.path, next_path(self.data_dir)
        _check_room(self.data_dir, before)
        _remove(new)
        log.info("compacting %s into %s (%.0f%% waste)", old, new.name, 100 * before.fraction)
        cur = self._file.cursor()
        try:
            cur.execute(f"ATTACH '{_literal(new)}' AS {_TARGET} (BLOCK_SIZE {before.block_size})")
            cur.execute(f"COPY FROM DATABASE {_ident(_catalog(cur))} TO {_TARGET}")
            # The copy's blocks written and synced before writes wait: under the lock, only
            # the catch-up's few are (0.9 s of a 1.8 s compaction at 100k memories otherwise).
            cur.execute(f"CHECKPOINT {_TARGET}")
            fsync_file(new)
            copied = time.monotonic()
            with self._write_lock:
                writes_waited = time.monotonic()
                self._catch_up(cur)
                cur.execute(f"DETACH {_TARGET}")
                fsync_file(new)
                self._switch(new)
                locked_seconds = time.monotonic() - writes_waited
        except (duckdb.Error, OSError, AiosMemoryError) as exc:
            with contextlib.suppress(duckdb.Error):
                cur.execute(f"DETACH DATABASE IF EXISTS {_TARGET}")
            if current_path(self.data_dir) != new:  # never the file the link names
                _remove(new)
            raise _failure(exc) from None
        if generation_of(old):
            _remove(old)  # readers still on it keep it until they finish (an open file)
        after = self.waste()
        report = {
            "compacted": True,
            "file": new.name,
            "before_bytes": before.file_bytes + before.wal_bytes,
            "after_bytes": after.file_bytes + after.wal_bytes,
            "waste_before": round(before.fraction, 4),
            "seconds": round(time.monotonic() - started, 3),
            "copy_seconds": round(copied - started, 3),
            "writes_paused_seconds": round(locked_seconds, 3),
        }
        log.info("compacted: %s", report)
        return report

    def _catch_up(self, cur: duckdb.DuckDBPyConnection) -> None:
        """Make the copy equal to the live file (under the write lock): what committed
        after the copy's snapshot, as one transaction of the copy."""
        source = _ident(_catalog(cur))
        cur.execute("BEGIN")
        try:
            for table in _tables(cur, _TARGET):
                here, there = f"{source}.{_ident(table)}", f"{_TARGET}.{_ident(table)}"
                if table in _SEQ_TABLES:
                    cur.execute(f"DELETE FROM {there} WHERE seq NOT IN (SELECT seq FROM {here})")
                    cur.execute(
                        f"INSERT INTO {there} SELECT * FROM {here} "
                        f"WHERE seq NOT IN (SELECT seq FROM {there})"
                    )
                elif _differ(cur, here, there):  # rewritten blocks are freed ones: only if
                    cur.execute(f"DELETE FROM {there}")
                    cur.execute(f"INSERT INTO {there} SELECT * FROM {here}")
            cur.execute("COMMIT")
        except duckdb.Error:
            with contextlib.suppress(duckdb.Error):
                cur.execute("ROLLBACK")
            raise

    def _switch(self, new: Path) -> None:
        """Serve from ``new`` (under the write lock): open it first, so a file that will
        not open is never linked."""
        fresh = self._file.open_other(new)
        try:
            install(self.data_dir, new)
        except OSError:
            if current_path(self.data_dir) != new:
                fresh.close()
                raise
            # Linked already (only syncing the directory failed): it is the database now.
        old = self._file.swap(new, fresh)
        self._keep_backlog_rows(old)

    def _keep_backlog_rows(self, old: duckdb.DuckDBPyConnection) -> None:
        # The keyword catch-up adds backlog rows without the write lock; one added to the
        # old file after the catch-up above would be lost. Rows removed there meanwhile stay
        # in the new file: the background only indexes them once more.
        with contextlib.suppress(duckdb.Error):
            seqs = old.execute("SELECT seq FROM text_backlog").fetchall()
            if seqs:
                self._file.cursor().executemany(
                    "INSERT OR IGNORE INTO text_backlog VALUES (?)", seqs
                )


def _differ(cur: duckdb.DuckDBPyConnection, here: str, there: str) -> bool:
    found = cur.execute(
        f"SELECT EXISTS (SELECT * FROM {here} EXCEPT ALL SELECT * FROM {there}) "
        f"OR EXISTS (SELECT * FROM {there} EXCEPT ALL SELECT * FROM {here})"
    ).fetchone()
    return bool(found and found[0])


def _skipped(waste: Waste, reason: str) -> dict[str, Any]:
    return {"compacted": False, "reason": reason, "waste": waste.to_dict()}


def _check_room(data_dir: Path, waste: Waste) -> None:
    """Refuse before writing anything when the disk cannot hold the copy."""
    stat = os.statvfs(data_dir)
    free = stat.f_bavail * stat.f_frsize
    needed = waste.live_bytes + waste.wal_bytes + _ROOM_MARGIN
    if free < needed:
        raise StorageFullError(
            f"compaction needs about {needed >> 20} MiB free beside {data_dir} for the "
            f"rewritten database and the disk has {free >> 20} MiB; nothing was changed",
            reason="disk full",
        )


def _failure(exc: BaseException) -> AiosMemoryError:
    if isinstance(exc, AiosMemoryError):
        return exc
    if is_disk_full(exc):
        return StorageFullError(
            f"the disk filled up during the compaction ({exc}); its partial copy was "
            "deleted and the database is as it was",
            reason="disk full",
        )
    return storage_fault(exc, "the compaction") or ServerInternalError(
        f"the compaction failed ({exc}); its partial copy was deleted and the database is as it was"
    )


def _catalog(cur: duckdb.DuckDBPyConnection) -> str:
    row = cur.execute("SELECT current_database()").fetchone()
    return str(row[0]) if row else "memory"


def _tables(cur: duckdb.DuckDBPyConnection, database: str) -> list[str]:
    rows = cur.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND NOT temporary",
        [database],
    ).fetchall()
    return [str(name) for (name,) in rows]


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(path: Path) -> str:
    return str(path).replace("'", "''")


def _size(path: Path) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _remove(path: Path) -> None:
    for name in (path, wal_of(path)):
        with contextlib.suppress(FileNotFoundError):
            name.unlink()
