"""The puts of one group commit: split where they touch the same memory, merged to commit once.

Pure shaping, no I/O: ``duckdb_store`` plans each put of a group against the
stored versions, leaves out the ones refused (each with its own error), and
commits the rest as one transaction. Two puts of one (tenant, id) in a group
would be decided against the same stored version, so ``parts`` puts the later
one in a part of its own, committed after the earlier one: exactly as if the
puts had come one after the other.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa

from aios_memory.flight_server.search.hybrid import DeadVector

from .base import PreparedWrite, WriteResult
from .versioning import Current

__all__ = ["Planned", "Merged", "parts", "merge", "IndexedUpTo"]


@dataclass
class Planned:
    """One put of a group, planned: what it writes and what its writer is told."""

    acks: WriteResult
    rows: pa.Table  # the versions written, with seq, in seq order
    texts: list[str | None]
    sealed: pa.Table
    fields: pa.Table
    replaced: list[tuple[tuple[str, str], Current]]
    dead_vectors: list[DeadVector]
    deferred: list[int]  # seqs whose text the background indexes
    dimensions: pa.Table  # (tenant, embed_model, embedding) of its vectors, for the checks


@dataclass
class Merged:
    """The planned puts of one part, as one transaction writes them."""

    rows: pa.Table
    texts: list[str | None] = field(default_factory=list)
    sealed: pa.Table | None = None
    fields: pa.Table | None = None
    replaced: list[tuple[tuple[str, str], Current]] = field(default_factory=list)
    dead_vectors: list[DeadVector] = field(default_factory=list)
    deferred: list[int] = field(default_factory=list)

    @property
    def seqs(self) -> tuple[int, int] | None:
        """The first and last seq written (seqs of a part are consecutive), or None."""
        if not self.rows.num_rows:
            return None
        seqs = self.rows.column("seq")
        return int(seqs[0].as_py()), int(seqs[-1].as_py())


def keys_of(write: PreparedWrite) -> set[tuple[str, str]]:
    """The (tenant, id) of every record of ``write``."""
    records = write.records
    return set(
        zip(records.column("tenant").to_pylist(), records.column("id").to_pylist(), strict=True)
    )


def parts(writes: Sequence[PreparedWrite]) -> list[list[int]]:
    """Positions of ``writes`` in runs where no two puts share a (tenant, id), in order."""
    runs: list[list[int]] = []
    seen: set[tuple[str, str]] = set()
    for position, write in enumerate(writes):
        keys = keys_of(write)
        if not runs or keys & seen:
            runs.append([])
            seen = set()
        runs[-1].append(position)
        seen |= keys
    return runs


def merge(planned: Sequence[Planned]) -> Merged:
    """One transaction's worth of ``planned`` puts (given in seq order)."""
    merged = Merged(rows=_concat([p.rows for p in planned]))
    merged.sealed = _concat([p.sealed for p in planned])
    merged.fields = _concat([p.fields for p in planned])
    for put in planned:
        merged.texts.extend(put.texts)
        merged.replaced.extend(put.replaced)
        merged.dead_vectors.extend(put.dead_vectors)
        merged.deferred.extend(put.deferred)
    return merged


def _concat(tables: list[pa.Table]) -> pa.Table:
    # Empty tables built from Python lists may have null-typed columns: leave them out.
    full = [t for t in tables if t.num_rows]
    if len(full) <= 1:
        return full[0] if full else tables[0]
    return pa.concat_tables([t.cast(full[0].schema) for t in full])


class IndexedUpTo:
    """The highest seq whose index work is done: the background indexer waits on it, so
    a row's late text never lands before (and is never undone by) its put's own indexing."""

    def __init__(self, seq: int) -> None:
        self._seq = seq
        self._changed = threading.Condition()

    def advance(self, seq: int) -> None:
        with self._changed:
            if seq > self._seq:
                self._seq = seq
                self._changed.notify_all()

    def wait_for(self, seq: int, timeout: float = 60.0) -> bool:
        """Wait until ``seq`` is indexed; False if ``timeout`` ran out first."""
        with self._changed:
            return self._changed.wait_for(lambda: self._seq >= seq, timeout)
