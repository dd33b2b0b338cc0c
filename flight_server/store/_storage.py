"""What a DuckDB error says about the disk, and the store's state while the disk refuses.

DuckDB reports a full disk or a failed write as an ``IOException``, a
``TransactionException`` ("Failed to commit: Could not write file ...") or, when
a checkpoint fails, a ``FatalException`` after which every call on that
database instance fails ("database has been invalidated") until it is opened
again. The store keeps checkpoints out of its commits (``CHECKPOINT_THRESHOLD``),
so a failed COMMIT means the write was not stored; it still checks, by reading
the write's seqs back, before it tells the client anything.
"""

from __future__ import annotations

import errno
import threading

import duckdb

from aios_memory.schemas import StorageError, StorageFullError

__all__ = [
    "CHECKPOINT_ROOM",
    "CHECKPOINT_ROOM_FACTOR",
    "CHECKPOINT_THRESHOLD",
    "WAL_CHECKPOINT_BYTES",
    "StorageState",
    "is_disk_full",
    "is_invalidated",
    "storage_fault",
]

# DuckDB checkpoints inside COMMIT once the WAL passes this; large, so that it never does:
# the store checkpoints itself, after the commit, where a failure costs no acknowledged write.
CHECKPOINT_THRESHOLD = "1TB"
# ... when the WAL passes this (DuckDB's own default threshold), and on ``checkpoint()``.
WAL_CHECKPOINT_BYTES = 16 * 1024 * 1024
# A checkpoint is tried only with this much free space: twice the WAL (its rows are written
# to new blocks before the old ones are freed) and a margin.
CHECKPOINT_ROOM_FACTOR = 2
CHECKPOINT_ROOM = 8 * 1024 * 1024

_FULL_MARKS = ("no space left on device", "disk full", "errno 28", "not enough space")
_IO_MARKS = ("could not write", "could not read", "could not open", "i/o error", "fsync")


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (an OSError, or DuckDB's or tantivy's text of one) says the disk is
    full: the one test every write, checkpoint and start-up path uses."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc).lower()
    return any(mark in text for mark in _FULL_MARKS)


def storage_fault(exc: BaseException, doing: str) -> StorageError | None:
    """The typed error for a DuckDB error caused by the disk, or None for any other error.

    ``doing`` says what failed ("the write", "the checkpoint") in the message.
    """
    text = str(exc).lower()
    if is_disk_full(exc):
        return StorageFullError(
            f"{doing} was refused: the server's disk is full. Free space on the server's "
            f"data directory; the server recovers by itself and retries are idempotent.",
            reason="disk full",
        )
    io_error = isinstance(exc, (duckdb.IOException, duckdb.FatalException))
    if io_error or any(mark in text for mark in _IO_MARKS):
        return StorageError(
            f"{doing} was refused: the server's disk failed ({exc}). Reads keep working; "
            f"retries are idempotent.",
            reason=str(exc).splitlines()[0][:200],
        )
    return None


def is_invalidated(exc: BaseException) -> bool:
    """Whether ``exc`` says the database instance must be opened again to be used."""
    return isinstance(exc, duckdb.FatalException) or "invalidated" in str(exc).lower()


class StorageState:
    """The fault that put the store in a degraded state (writes refused), or none."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fault: StorageError | None = None

    @property
    def fault(self) -> StorageError | None:
        """The last storage error, until a write or checkpoint succeeds again."""
        with self._lock:
            return self._fault

    def failed(self, fault: StorageError) -> None:
        with self._lock:
            self._fault = fault

    def healed(self) -> None:
        with self._lock:
            self._fault = None

    def reason(self) -> str | None:
        """Why the store is degraded, for ``health``; None when it is not."""
        fault = self.fault
        if fault is None:
            return None
        return f"{fault.code}: {fault.detail.get('reason', fault.message)}"
