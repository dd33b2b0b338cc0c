"""The stored form of an episode: its five tables in one checked byte string.

Layout (version 1), little-endian::

    b"AISC"  magic
    u8       container version (1)
    u8       number of tables (5, in ``SCENE_TABLES`` order)
    5 x u32  length of each table's body
    bodies   each one zstd frame holding one Arrow IPC record batch message
    8 bytes  BLAKE2b-64 of everything before it

A body is a bare record batch message, without the Arrow schema: the version
names the schemas (``schemas.scenes``), and five schema messages would be
about 4.5 KB, more than a whole compressed pedestrian scene's motion. Every
size is checked against the bytes actually there and against ``max_bytes``
before anything is allocated; each batch is validated in full.
"""

from __future__ import annotations

import hashlib
import struct

import pyarrow as pa
import zstandard

from aios_memory.schemas.errors import CorruptDataError, LimitExceededError, UnsupportedVersionError
from aios_memory.schemas.scenes import SCENE_SCHEMAS, SCENE_TABLES

from ._motion import ZSTD_LEVEL, decompress_exact

MAGIC = b"AISC"
CONTAINER_VERSION = 1
CHECKSUM_BYTES = 8
_HEADER = struct.Struct(f"<4sBB{len(SCENE_TABLES)}I")
# Decoded bytes a container may expand to (all tables together).
DEFAULT_MAX_BYTES = 1 << 30


def table_bodies(tables: dict[str, pa.Table]) -> dict[str, bytes]:
    """Each table as its stored body: one compressed record batch message."""
    compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    return {
        name: compressor.compress(_one_batch(tables[name]).serialize().to_pybytes())
        for name in SCENE_TABLES
    }


def _one_batch(table: pa.Table) -> pa.RecordBatch:
    batches = table.combine_chunks().to_batches()
    if len(batches) == 1:
        return batches[0]
    return pa.RecordBatch.from_pylist([], schema=table.schema)


def pack_container(bodies: dict[str, bytes]) -> bytes:
    """The container of the table bodies (see the module docstring)."""
    header = _HEADER.pack(
        MAGIC, CONTAINER_VERSION, len(SCENE_TABLES), *(len(bodies[name]) for name in SCENE_TABLES)
    )
    payload = header + b"".join(bodies[name] for name in SCENE_TABLES)
    return payload + _checksum(payload)


def _checksum(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=CHECKSUM_BYTES).digest()


def unpack_container(data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, pa.Table]:
    """The five tables of a container; any damage is a ``CorruptDataError``."""
    data = bytes(data)
    if len(data) < _HEADER.size + CHECKSUM_BYTES or data[:4] != MAGIC:
        raise CorruptDataError("not a stored scene (no AISC header)")
    magic, version, count, *lengths = _HEADER.unpack_from(data)
    if version != CONTAINER_VERSION:
        raise UnsupportedVersionError(
            f"stored scene version {version}; this client reads version {CONTAINER_VERSION}",
            version=version,
        )
    payload, checksum = data[:-CHECKSUM_BYTES], data[-CHECKSUM_BYTES:]
    if count != len(SCENE_TABLES) or _HEADER.size + sum(lengths) != len(payload):
        raise CorruptDataError("a stored scene whose table sizes do not add up (cut short?)")
    if _checksum(payload) != checksum:
        raise CorruptDataError("a stored scene whose checksum does not match (damaged)")
    return _read_bodies(payload, lengths, max_bytes)


def _read_bodies(payload: bytes, lengths: list[int], max_bytes: int) -> dict[str, pa.Table]:
    tables, offset, budget = {}, _HEADER.size, max_bytes
    for name, length in zip(SCENE_TABLES, lengths, strict=True):
        body = payload[offset : offset + length]
        if _declared_size(body) > budget:
            raise LimitExceededError(
                f"a stored scene expands past {max_bytes} bytes", limit=max_bytes
            )
        raw = decompress_exact(body, budget)
        budget -= len(raw)
        offset += length
        tables[name] = _read_batch(name, raw)
    return tables


def _declared_size(body: bytes) -> int:
    try:
        return int(zstandard.frame_content_size(body))
    except zstandard.ZstdError:
        return -1  # decompress_exact names the damage


def _read_batch(name: str, raw: bytes) -> pa.Table:
    schema = SCENE_SCHEMAS[name]
    try:
        batch = pa.ipc.read_record_batch(pa.py_buffer(raw), schema)
        batch.validate(full=True)
    except (pa.ArrowException, OSError, ValueError, EOFError) as error:  # all from pyarrow
        raise CorruptDataError(
            f"table {name!r} of a stored scene does not read: {error}", table=name
        ) from None
    return pa.Table.from_batches([batch], schema=schema)
