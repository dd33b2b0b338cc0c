"""The plaintext inside a sealed record: every private field, packed in binary.

Layout (big-endian), version 1::

    B   version                 1
    B   codec                   index into CODEC_ORDER
    B   flags                   bit 0: dict_id set, bit 1: a vector follows
    I   dict_id                 0 unless flag 0
    I   raw_size                of the text
    16s content_hash            BLAKE2b-128 of the text
    f   embedding_scale         0.0 without a vector
    H   dim                     0 without a vector
    4 x (I length, bytes)       agent, session, metadata, embed_model (UTF-8; NONE for null)
    dim bytes                   the int8 vector
    rest                        the inner payload (the compressed text)

A JSON header cost about 170 bytes more per private memory (its keys, a hex
hash, a float64 as text) on LoCoMo turns: as much as the text itself. Parsed
strictly: every length is checked before it is used, strings must be UTF-8.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from aios_memory.schemas import CODEC_LM, CODEC_NONE, CODEC_ZSTD, CODEC_ZSTD_DICT, DEFAULT_LIMITS

__all__ = ["pack_envelope", "unpack_envelope", "CODEC_ORDER"]

ENVELOPE_VERSION = 1
CODEC_ORDER = (CODEC_NONE, CODEC_ZSTD, CODEC_ZSTD_DICT, CODEC_LM)
_FIXED = struct.Struct(">BBBII16sfH")
_LENGTH = struct.Struct(">I")
_NONE = 0xFFFFFFFF
_STRINGS = ("agent", "session", "metadata", "embed_model")
_HAS_DICT, _HAS_VECTOR = 1, 2


def pack_envelope(row: Mapping[str, Any]) -> bytes:
    """The envelope of one record row (a dict of RECORD_SCHEMA fields)."""
    vector = (
        b"" if row.get("embedding") is None else np.asarray(row["embedding"], np.int8).tobytes()
    )
    flags = (_HAS_DICT if row["dict_id"] is not None else 0) | (_HAS_VECTOR if vector else 0)
    scale = float(row["embedding_scale"]) if vector else 0.0
    parts = [
        _FIXED.pack(
            ENVELOPE_VERSION,
            CODEC_ORDER.index(row["codec"]),
            flags,
            row["dict_id"] or 0,
            int(row["raw_size"]),
            bytes(row["content_hash"]),
            scale,
            len(vector),
        )
    ]
    for name in _STRINGS:
        value = row.get(name) if name != "embed_model" or vector else None
        data = b"" if value is None else value.encode()
        parts += [_LENGTH.pack(_NONE if value is None else len(data)), data]
    return b"".join(parts) + vector + bytes(row["payload"])


def unpack_envelope(data: bytes, bad: Callable[[str], Exception]) -> dict[str, Any]:
    """The private fields of a record from its envelope; ``bad(why)`` makes the error raised."""
    if len(data) < _FIXED.size or data[0] != ENVELOPE_VERSION:
        raise bad(f"is not envelope version {ENVELOPE_VERSION}")
    _, codec, flags, dict_id, raw_size, digest, scale, dim = _FIXED.unpack_from(data)
    if codec >= len(CODEC_ORDER) or flags > 3 or (flags & _HAS_VECTOR) != (dim > 0 and 2):
        raise bad("has a header with values out of range")
    if dim and not (math.isfinite(scale) and scale > 0) or dim > DEFAULT_LIMITS.max_dimension:
        raise bad("has a vector that does not match its header")
    fields, offset = _strings(data, _FIXED.size, bad)
    if offset + dim > len(data) or (dim > 0) != (fields["embed_model"] is not None):
        raise bad("has a vector that does not match its header")
    vector = np.frombuffer(data, np.int8, count=dim, offset=offset)
    return {
        "codec": CODEC_ORDER[codec],
        "dict_id": dict_id if flags & _HAS_DICT else None,
        "payload": data[offset + dim :],
        "raw_size": raw_size,
        "content_hash": digest,
        "embedding": vector.tolist() if dim else None,
        "embedding_scale": scale if dim else None,
        **fields,
    }


def _strings(
    data: bytes, offset: int, bad: Callable[[str], Exception]
) -> tuple[dict[str, str | None], int]:
    fields: dict[str, str | None] = {}
    for name in _STRINGS:
        if offset + _LENGTH.size > len(data):
            raise bad("ends inside its header")
        (length,) = _LENGTH.unpack_from(data, offset)
        offset += _LENGTH.size
        if length == _NONE:
            fields[name] = None
            continue
        if offset + length > len(data):
            raise bad(f"has a {name} longer than itself")
        try:
            fields[name] = data[offset : offset + length].decode("utf-8")
        except UnicodeDecodeError:
            raise bad(f"has a {name} that is not UTF-8") from None
        offset += length
    return fields, offset
