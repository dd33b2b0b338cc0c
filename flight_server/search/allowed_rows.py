"""The rows a filtered search may return, in the form each index takes, each made once.

``AllowedCache`` keeps one per distinct filter (a ``where``, a token's view) and
brings it up to date after writes instead of recomputing it. Converting 10,000
allowed rows for tantivy (a Python list, then a term-set query) and checking
them for hnswlib took about 10 ms of a 27 ms filtered search at 20,000 memories
(bench/privacy.py); agents repeat their filters, so the conversions are paid
once per filter and only again when a write changes the filter's rows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["AllowedRows", "AllowedCache"]

DEFAULT_CACHE_SIZE = 64
# Commits remembered for entries not used since; one older than that is computed afresh.
DEFAULT_LOG_MAX = 1024


class AllowedRows:
    """Sorted, unique row sequence numbers, with memoized derived forms."""

    def __init__(self, seqs: np.ndarray, *, is_sorted: bool = False) -> None:
        seqs = np.asarray(seqs, np.uint64)
        self.seqs = seqs if is_sorted else np.unique(seqs)
        self._memo: dict[Hashable, Any] = {}

    def __len__(self) -> int:
        return len(self.seqs)

    def memo(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """``make()``, computed once per ``key`` for these rows."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def as_list(self) -> list[int]:
        """The rows as Python ints (what tantivy's term-set query takes)."""
        return self.memo("list", self.seqs.tolist)


@dataclass(frozen=True)
class _Entry:
    rows: AllowedRows
    stamp: int  # the number of commits it includes
    mark: int  # every row with a seq at or below this was considered


@dataclass(frozen=True)
class _Commit:
    number: int
    top_seq: int
    dead: np.ndarray  # seqs this commit replaced or deleted
    tenants: frozenset[str]  # whose rows it wrote


class AllowedCache:
    """The allowed rows of each filter, brought up to date by writes instead of cleared.

    A put used to clear every filter's rows, so a filtered read after each put
    recomputed its filter in SQL (filtered p50 28.5 -> 79 ms, issue 16). Now each
    entry remembers the commits it includes; ``committed`` logs what each commit
    made dead, and the next use asks the store only for the allowed rows above the
    entry's mark (``compute(after_seq)``) and subtracts the dead ones.

    Correct as long as ``committed`` is told of commits in seq order, after they are
    visible to ``compute``: a row ``compute`` sees live was either killed by a commit
    logged after the stamp read before it (subtracted at the next use), or is live.
    """

    def __init__(self, size: int = DEFAULT_CACHE_SIZE, log_max: int = DEFAULT_LOG_MAX) -> None:
        self._size, self._log_max = size, log_max
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._log: list[_Commit] = []
        self._commits = 0
        self._top_seq = 0

    def committed(self, top_seq: int, dead: Iterable[int], tenants: Iterable[str]) -> None:
        """A commit of rows of ``tenants`` up to ``top_seq``, which killed the rows ``dead``."""
        with self._lock:
            self._commits += 1
            self._top_seq = max(self._top_seq, top_seq)
            if not self._entries:
                self._log.clear()  # nothing cached to bring up to date
                return
            dead_seqs = np.asarray(list(dead), np.uint64)
            self._log.append(_Commit(self._commits, top_seq, dead_seqs, frozenset(tenants)))
            if len(self._log) > self._log_max:
                keep = self._log[-(self._log_max // 2) :]
                self._log = keep
                oldest = keep[0].number - 1
                self._entries = {k: e for k, e in self._entries.items() if e.stamp >= oldest}

    def clear(self) -> None:
        """Forget every filter's rows (what filters admit changed in place)."""
        with self._lock:
            self._entries.clear()
            self._log.clear()

    def get(
        self, key: str, tenant: str, compute: Callable[[int | None], np.ndarray]
    ) -> AllowedRows:
        """The rows of ``key`` (a filter over ``tenant``'s rows); ``compute(after_seq)`` gives
        the live allowed seqs above ``after_seq`` (None: all of them)."""
        with self._lock:
            entry = self._entries.get(key)
            stamp, mark = self._commits, self._top_seq
            if entry is not None and entry.stamp == stamp:
                return entry.rows
            dead = self._dead_since(entry.stamp) if entry is not None else None
            if entry is not None and dead is not None and not self._touched(tenant, entry.stamp):
                self._entries[key] = _Entry(entry.rows, stamp, entry.mark)  # others' writes
                return entry.rows
        if entry is None or dead is None:
            rows = AllowedRows(compute(None))
        else:
            rows = _updated(entry.rows, compute(entry.mark), dead)
        with self._lock:
            current = self._entries.get(key)
            if current is None or current.stamp < stamp:
                if current is None and len(self._entries) >= self._size:
                    self._entries.pop(next(iter(self._entries)))
                self._entries[key] = _Entry(rows, stamp, mark)
        return rows

    def _touched(self, tenant: str, stamp: int) -> bool:
        """Whether a commit after ``stamp`` wrote rows of ``tenant``."""
        return any(tenant in c.tenants for c in self._log if c.number > stamp)

    def _dead_since(self, stamp: int) -> np.ndarray | None:
        """The seqs killed by commits after ``stamp``; None if the log no longer has them."""
        if stamp < self._commits and (not self._log or self._log[0].number > stamp + 1):
            return None
        parts = [c.dead for c in self._log if c.number > stamp]
        return np.concatenate(parts) if parts else np.empty(0, np.uint64)


def _updated(old: AllowedRows, new: np.ndarray, dead: np.ndarray) -> AllowedRows:
    """``old`` with ``new`` added and ``dead`` removed; ``old`` itself (and its memos) when
    neither changes it."""
    new = np.asarray(new, np.uint64)
    fresh = new[~_contains(old.seqs, new)] if len(new) else new
    gone = _contains(np.unique(dead), old.seqs) if len(dead) else None
    if not len(fresh) and (gone is None or not gone.any()):
        return old
    kept = old.seqs if gone is None else old.seqs[~gone]
    fresh = np.unique(fresh)
    if len(kept) and len(fresh) and fresh[0] <= kept[-1]:
        return AllowedRows(np.union1d(kept, fresh), is_sorted=True)
    return AllowedRows(np.concatenate([kept, fresh]), is_sorted=True)  # new rows come last


def _contains(sorted_seqs: np.ndarray, seqs: np.ndarray) -> np.ndarray:
    """Mask of ``seqs`` found in the sorted array ``sorted_seqs``."""
    if not len(sorted_seqs):
        return np.zeros(len(seqs), bool)
    at = np.minimum(np.searchsorted(sorted_seqs, seqs), len(sorted_seqs) - 1)
    return sorted_seqs[at] == seqs
