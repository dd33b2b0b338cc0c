"""Payload codecs: text -> stored bytes and back, safe against bombs.

The registry of names is in ``schemas.codecs``; the code is here because the
client is where bytes are made (before upload, so the server never needs the
plain text on the wire). The server imports ``decode_text`` to index what it
may read.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import zstandard

from aios_memory.schemas import (
    CODEC_NONE,
    CODEC_ZSTD,
    CorruptDataError,
    InvalidUtf8Error,
    InvalidValueError,
    TextTooLargeError,
)

__all__ = ["EncodedText", "encode_text", "decode_payload", "decode_text", "content_hash"]

DEFAULT_ZSTD_LEVEL = 3
# Below this many bytes a zstd frame costs more than it saves.
MIN_COMPRESS_BYTES = 32
_READ_CHUNK = 64 * 1024


@dataclass(frozen=True)
class EncodedText:
    """What a record stores for one text."""

    codec: str
    payload: bytes
    raw_size: int
    content_hash: bytes


def content_hash(raw: bytes) -> bytes:
    """BLAKE2b-128 of the UTF-8 text: 16 bytes, the record's ``content_hash``."""
    return hashlib.blake2b(raw, digest_size=16).digest()


def encode_text(text: str, *, level: int = DEFAULT_ZSTD_LEVEL) -> EncodedText:
    """Compress one text for upload; tiny texts are stored as they are."""
    if not isinstance(text, str):
        raise InvalidValueError(f"a memory must be text (str), not {type(text).__name__}")
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidUtf8Error(f"the text is not valid Unicode: {exc.reason}") from None
    digest = content_hash(raw)
    if len(raw) >= MIN_COMPRESS_BYTES:
        frame = _compressor(level).compress(raw)
        if len(frame) < len(raw):
            return EncodedText(CODEC_ZSTD, frame, len(raw), digest)
    return EncodedText(CODEC_NONE, raw, len(raw), digest)


def decode_payload(codec: str, payload: bytes, raw_size: int, *, max_bytes: int) -> bytes:
    """Decoded bytes of a payload, never more than ``min(raw_size, max_bytes)``.

    1 GiB of zeros is 32 KB of zstd and ``decompress()`` trusts the size a
    frame declares, so the declared size is checked first and the output is
    streamed with a running cap.
    """
    if raw_size > max_bytes:
        raise TextTooLargeError(f"declared size {raw_size} is over the limit {max_bytes}")
    if codec == CODEC_NONE:
        raw = bytes(payload)
    elif codec == CODEC_ZSTD:
        raw = _zstd_decode(payload, raw_size)
    else:
        raise CorruptDataError(f"unknown codec {codec!r}: upgrade the client", codec=codec)
    if len(raw) != raw_size:
        raise CorruptDataError(f"payload decodes to {len(raw)} bytes, record says {raw_size}")
    return raw


def decode_text(codec: str, payload: bytes, raw_size: int, expected_hash: bytes | None = None,
                *, max_bytes: int) -> str:
    """Decoded text of a payload, checked against its hash when one is given."""
    raw = decode_payload(codec, payload, raw_size, max_bytes=max_bytes)
    if expected_hash is not None and content_hash(raw) != expected_hash:
        raise CorruptDataError("payload does not match its content_hash")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidUtf8Error(f"text is not valid UTF-8 at byte {exc.start}") from None


def _compressor(level: int) -> zstandard.ZstdCompressor:
    # The record carries codec and dict_id; a magic number and checksum would
    # repeat them (content_hash covers integrity). Content size stays: it is
    # what lets a reader refuse a bomb before allocating.
    return zstandard.ZstdCompressor(
        compression_params=zstandard.ZstdCompressionParameters.from_level(
            level, format=zstandard.FORMAT_ZSTD1_MAGICLESS,
            write_checksum=False, write_content_size=True, write_dict_id=False,
        )
    )


def _decompressor() -> zstandard.ZstdDecompressor:
    return zstandard.ZstdDecompressor(format=zstandard.FORMAT_ZSTD1_MAGICLESS)


def _zstd_decode(payload: bytes, raw_size: int) -> bytes:
    try:
        params = zstandard.get_frame_parameters(b"\x28\xb5\x2f\xfd" + bytes(payload[:18]))
        declared = params.content_size
    except zstandard.ZstdError:
        raise CorruptDataError("payload is not a zstd frame") from None
    if declared not in (raw_size, zstandard.CONTENTSIZE_UNKNOWN):
        raise CorruptDataError(f"frame declares {declared} bytes, record says {raw_size}")
    reader = _decompressor().stream_reader(bytes(payload), read_across_frames=False)
    out = bytearray()
    try:
        while len(out) <= raw_size:
            chunk = reader.read(min(_READ_CHUNK, raw_size + 1 - len(out)))
            if not chunk:
                break
            out += chunk
    except zstandard.ZstdError as exc:
        raise CorruptDataError(f"payload does not decompress: {exc}") from None
    if len(out) > raw_size:
        raise CorruptDataError(f"payload decompresses past its declared {raw_size} bytes")
    return bytes(out)
