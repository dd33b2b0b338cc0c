"""The store's DuckDB file as writes see it: commit, checkpoint, and heal after a disk fault.

A COMMIT that fails on a full or failing disk is answered with ``StorageFullError``
or ``StorageError`` only once the store knows the write is not stored: it
reads the write's seqs back (opening the database again if DuckDB invalidated
it) and acknowledges the write if they are there. DuckDB's own checkpoints
are kept out of COMMIT (``_storage.CHECKPOINT_THRESHOLD``); this class
checkpoints after commits, when the WAL has grown, and on the store's
``checkpoint()``: a failed checkpoint costs no write (the WAL keeps them),
invalidates DuckDB's instance, and is healed by opening the file again.
Reads keep working throughout; the first write or checkpoint that succeeds
ends the degraded state.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

from aios_memory.schemas import AiosMemoryError, ServerInternalError, StorageError

from ._database import connect
from ._storage import (
    CHECKPOINT_ROOM,
    CHECKPOINT_ROOM_FACTOR,
    CHECKPOINT_THRESHOLD,
    WAL_CHECKPOINT_BYTES,
    StorageState,
    is_invalidated,
    storage_fault,
)

__all__ = ["DurableFile", "BackgroundCheckpoints"]

log = logging.getLogger("aios_memory.server")


class DurableFile:
    """The connection to ``path`` and what the store's write path does with it.

    Call ``commit``, ``checkpoint`` and ``heal`` under the store's write lock.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.state = StorageState()
        self.con = self._open()
        self.read_only = False  # opened read-only after a fault (reads only, until healed)
        # The cursors made from ``con``, and connections a compaction switched away from with
        # theirs: each is closed once its last cursor is gone (its file's space returns to
        # the disk then), or at ``close``.
        self._cursors: weakref.WeakSet[duckdb.DuckDBPyConnection] = weakref.WeakSet()
        self._retired: list[tuple[duckdb.DuckDBPyConnection, weakref.WeakSet[Any]]] = []
        self._retired_lock = threading.Lock()

    def _open(self) -> duckdb.DuckDBPyConnection:
        return self.open_other(self.path)

    @staticmethod
    def open_other(path: Path) -> duckdb.DuckDBPyConnection:
        """A connection to the database at ``path`` set up as the store's own."""
        con = connect(path)
        con.execute(f"SET checkpoint_threshold = '{CHECKPOINT_THRESHOLD}'")
        return con

    def swap(self, path: Path, con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
        """Serve from ``con`` (the database at ``path``) from now on; returns the old
        connection, left open until its cursors are gone: readers finish on the old file
        (``compaction``). Call under the store's write lock."""
        with self._retired_lock:
            old, self.path, self.con, self.read_only = self.con, Path(path), con, False
            self._retired.append((old, self._cursors))
            self._cursors = weakref.WeakSet()
        return old

    def _close_retired(self, only_unused: bool) -> None:
        with self._retired_lock:
            keep = []
            for con, cursors in self._retired:
                if only_unused and len(cursors):
                    keep.append((con, cursors))
                    continue
                with contextlib.suppress(duckdb.Error):
                    con.close()
            self._retired = keep

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new cursor (DuckDB connections are not shared across threads)."""
        if self._retired:
            self._close_retired(only_unused=True)
        with self._retired_lock:  # a cursor and the set it joins belong to one connection
            cur = self.con.cursor()
            self._cursors.add(cur)
        return cur

    # -- writing ----------------------------------------------------------------------------
    def commit(
        self, write: Callable[[duckdb.DuckDBPyConnection], None], seqs: tuple[int, int]
    ) -> None:
        """Run ``write`` in one transaction and commit it durably.

        ``seqs``: the first and last record seq it writes, by which a failed commit is
        looked for. Raises ``StorageError`` (nothing stored) or ``ServerInternalError``.
        """
        cur = self.cursor()
        cur.execute("BEGIN")
        try:
            write(cur)
            cur.execute("COMMIT")
        except duckdb.Error as exc:
            _rollback(cur)
            fault = storage_fault(exc, "the write")
            if fault is None:
                raise ServerInternalError(f"the write was not committed: {exc}") from None
            self._failed(fault)
            if self._stored(seqs):
                log.warning("a write whose COMMIT failed is stored after all: acknowledged")
                return
            raise fault from None
        self.state.healed()

    def _stored(self, seqs: tuple[int, int]) -> bool:
        """Whether every record of ``seqs`` is in the (reopened if need be) database."""
        try:
            with contextlib.suppress(StorageError):  # read-only still reads
                self.heal()
            found = (
                self.cursor()
                .execute("SELECT count(*) FROM records WHERE seq BETWEEN ? AND ?", list(seqs))
                .fetchone()
            )
        except (duckdb.Error, AiosMemoryError) as exc:
            raise StorageError(
                f"the write failed on the server's disk and the server cannot tell whether "
                f"it was stored ({exc}); retry it (retries are idempotent)",
                outcome="unknown",
            ) from None
        return found is not None and int(found[0]) == seqs[1] - seqs[0] + 1

    def _failed(self, fault: StorageError) -> None:
        if self.state.fault is None:
            log.error("storage fault, writes are refused until it heals: %s", fault.message)
        self.state.failed(fault)

    # -- healing ----------------------------------------------------------------------------
    def heal(self) -> None:
        """Open the database again if DuckDB invalidated it (a failed checkpoint does), or
        read-write again if it could only be opened read-only."""
        if not self.read_only:
            try:
                self.cursor().execute("SELECT 1").fetchone()
                return
            except duckdb.Error as exc:
                if not is_invalidated(exc) and "closed" not in str(exc).lower():
                    raise
        self.reopen()
        if self.read_only:
            raise StorageError("the database is open read-only until the disk takes writes")

    def reopen(self) -> None:
        """Close the connection and open the file again (replaying its WAL); read-only when
        the disk refuses even that (opening writes), so that reads keep working."""
        with contextlib.suppress(duckdb.Error):
            self.con.close()
        gc.collect()  # cursors left by failed calls keep the invalidated instance alive
        self._cursors = weakref.WeakSet()  # of the connection just closed
        try:
            self.con, self.read_only = self._open(), False
        except (duckdb.Error, AiosMemoryError) as exc:
            log.warning("database %s opened read-only for now: %s", self.path, exc)
            self.con, self.read_only = _open_read_only(self.path), True
            return
        log.info("database %s opened again", self.path)

    # -- checkpoints ------------------------------------------------------------------------
    def wal_bytes(self) -> int:
        try:
            return os.path.getsize(f"{self.path}.wal")
        except OSError:
            return 0

    def checkpoint_if_large(self) -> None:
        """Checkpoint when the WAL passed ``WAL_CHECKPOINT_BYTES`` (what DuckDB would do)."""
        if self.wal_bytes() > WAL_CHECKPOINT_BYTES:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Move the WAL into the file; on a disk fault, degrade and open the file again.

        Skipped while the disk lacks the room it needs (a failed checkpoint invalidates
        DuckDB's database); the WAL keeps every write meanwhile.
        """
        if self.read_only or not room_for_checkpoint(self.path, self.wal_bytes()):
            return
        try:
            self.cursor().execute("CHECKPOINT")
        except duckdb.Error as exc:
            fault = storage_fault(exc, "a checkpoint")
            if fault is None:
                raise
            self._failed(fault)
            self.reopen()
            return
        if self.wal_bytes() == 0:
            self.state.healed()

    def close(self) -> None:
        """Checkpoint (if the disk lets it) and close, with any connection still open on a
        file a compaction replaced."""
        self._close_retired(only_unused=False)
        try:
            if not self.read_only and room_for_checkpoint(self.path, self.wal_bytes()):
                self.con.execute("CHECKPOINT")
        except duckdb.Error as exc:
            log.warning("no checkpoint at close (%s); the WAL is replayed on the next start", exc)
        with contextlib.suppress(duckdb.Error):
            self.con.close()


def room_for_checkpoint(path: Path, wal_bytes: int) -> bool:
    """Whether the disk of ``path`` has room for a checkpoint of ``wal_bytes`` of WAL."""
    try:
        stat = os.statvfs(path.parent)
    except OSError:
        return True
    return stat.f_bavail * stat.f_frsize > CHECKPOINT_ROOM_FACTOR * wal_bytes + CHECKPOINT_ROOM


def _open_read_only(path: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path), read_only=True)
    con.execute("SET TimeZone = 'UTC'")  # as _database.connect does
    return con


def _rollback(cur: duckdb.DuckDBPyConnection) -> None:
    # A failed COMMIT has already ended the transaction; an invalidated database refuses.
    with contextlib.suppress(duckdb.Error):
        cur.execute("ROLLBACK")


class BackgroundCheckpoints:
    """Checkpoints the WAL on a thread of its own once it passes ``WAL_CHECKPOINT_BYTES``.

    A checkpoint inline at the end of the put that grew the WAL made that put's writer
    wait for it (a fifth of the server's time in a bulk import); here the put is
    acknowledged and the checkpoint overlaps with the next put's decoding and planning.
    It still takes the write lock, so commits wait for it, never the other way round.
    """

    def __init__(self, file: DurableFile, write_lock: threading.Lock) -> None:
        self._file, self._write_lock = file, write_lock
        self._due, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-checkpoints", daemon=True)
        self._thread.start()

    def nudge(self) -> None:
        """After a commit: checkpoint soon if the WAL has grown past the threshold."""
        if self._file.wal_bytes() > WAL_CHECKPOINT_BYTES:
            self._due.set()

    def _run(self) -> None:
        while True:
            self._due.wait()
            self._due.clear()
            if self._stop.is_set():
                return
            try:
                with self._write_lock:
                    self._file.checkpoint_if_large()
            except Exception:  # the WAL keeps every write; the next nudge tries again
                log.exception("background checkpoint failed")

    def close(self) -> None:
        self._stop.set()
        self._due.set()
        self._thread.join()
