"""Row-shaping helpers of the DuckDB store: pure functions over Arrow tables."""

from __future__ import annotations

import hashlib
from typing import Any

import pyarrow as pa

from aios_memory.schemas import DICTIONARY_KIND, RECORD_SCHEMA, InvalidValueError

from .versioning import SAME_MEMORY_FIELDS, Current

__all__ = ["WriteResult", "current_of", "split_acks", "tombstones", "tombstones_to_forget"]

WriteResult = list[tuple[list[str], list[int]]]  # per client batch: ids, hlcs


def current_of(row: dict[str, Any], seq: int, decision: Any, table: pa.Table, i: int) -> Current:
    return Current(
        seq,
        decision.hlc,
        decision.origin,
        row["tier"],
        table.column("embed_model")[i].as_py(),
        tuple(row[f] for f in SAME_MEMORY_FIELDS),
        (row["codec"], row["dict_id"]),
    )


def split_acks(acks: list[tuple[str, int]], sizes: list[int]) -> WriteResult:
    out, start = [], 0
    for size in sizes:
        part = acks[start : start + size]
        out.append(([a[0] for a in part], [a[1] for a in part]))
        start += size
    return out


def tombstones_to_forget(live: pa.Table) -> pa.Table:
    """Tombstones of ``live`` rows; refused if one is a dictionary stored memories need."""
    kinds = live.column("kind").to_pylist()
    if DICTIONARY_KIND in kinds:
        memory_id = live.column("id")[kinds.index(DICTIONARY_KIND)].as_py()
        raise InvalidValueError(
            f"{memory_id} is a zstd dictionary that stored memories need "
            "to be read; dictionaries are never forgotten",
            memory_id=memory_id,
        )
    return tombstones(live)


def tombstones(live: pa.Table) -> pa.Table:
    n = live.num_rows
    empty_hash = hashlib.blake2b(b"", digest_size=16).digest()
    replace = {
        "hlc": pa.array([0] * n, pa.uint64()),
        "origin": pa.array([""] * n, pa.string()),
        "codec": pa.array(["none"] * n, pa.string()),
        "dict_id": pa.nulls(n, pa.uint32()),
        "payload": pa.array([b""] * n, pa.binary()),
        "raw_size": pa.array([0] * n, pa.uint32()),
        "content_hash": pa.array([empty_hash] * n, pa.binary(16)),
        "embedding": pa.nulls(n, pa.list_(pa.int8())),
        "embedding_scale": pa.nulls(n, pa.float32()),
        "embed_model": pa.nulls(n, pa.string()),
        "metadata": pa.nulls(n, pa.string()),
        "deleted": pa.array([True] * n, pa.bool_()),
    }
    for name, values in replace.items():
        live = live.set_column(live.schema.get_field_index(name), RECORD_SCHEMA.field(name), values)
    return live
