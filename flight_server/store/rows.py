"""Row-shaping helpers of the stores: pure functions over Arrow tables."""

from __future__ import annotations

import hashlib

import pyarrow as pa

from aios_memory.schemas import DICTIONARY_KIND, RECORD_SCHEMA, InvalidValueError

__all__ = ["WriteResult", "with_versions", "split_acks", "tombstones", "tombstones_to_forget"]

WriteResult = list[tuple[list[str], list[int]]]  # per client batch: ids, hlcs


def with_versions(table: pa.Table, written: list[tuple[int, int, int, str]]) -> pa.Table:
    """The rows of ``table`` a put writes, with the hlc, origin and seq each was given.

    ``written``: (row number, seq, hlc, origin) of each, in seq order.
    """
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
    return picked.append_column("seq", pa.array([w[1] for w in written], pa.int64()))


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
