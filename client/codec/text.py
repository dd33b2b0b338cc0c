"""Payload codecs: text -> stored bytes and back, lossless and safe against bombs.

The registry of names is in ``schemas.codecs``; the code is here because the
client is where bytes are made (before upload, so the server never needs the
plain text on the wire). The server imports the same ``Codebook`` to index
what it may read.

``encode_text`` picks, among the codecs a policy allows, the smallest
payload that decodes back to the same bytes: every ``lm`` payload is decoded
and compared before it is accepted, and anything that fails falls back to the
dictionary or plain zstd. ``Codebook`` decodes: it resolves a ``zstd-dict``
payload's dictionary by id, refuses an ``lm`` payload made by another model
(``CodecMismatchError``) instead of returning garbage, and caches what the
model decoded, since that is the one slow codec.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import zstandard

from aios_memory.schemas import (
    CODEC_LM,
    CODEC_NONE,
    CODEC_SEALED,
    CODEC_ZSTD,
    CODEC_ZSTD_DICT,
    AiosMemoryError,
    CodecMismatchError,
    CodecUnavailableError,
    CorruptDataError,
    InvalidUtf8Error,
    InvalidValueError,
    KeyMissingError,
    TextTooLargeError,
)

__all__ = [
    "EncodedText",
    "Dictionary",
    "Codebook",
    "encode_text",
    "encode_bytes",
    "decode_payload",
    "decode_text",
    "content_hash",
    "utf8",
]

DEFAULT_ZSTD_LEVEL = 3
# Dictionaries pay for a slower level: 2.22x against 2.15x at level 3 on LoCoMo turns,
# still under 0.1 ms a memory (bench/compression.py).
DICT_ZSTD_LEVEL = 19
# Below this many bytes a zstd frame costs more than it saves.
MIN_COMPRESS_BYTES = 32
DECODED_CACHE_BYTES = 16 * 1024 * 1024
# The model takes 10-17 ms a token each way: past a few KB a memory would take minutes.
MAX_LM_BYTES = 4096
_READ_CHUNK = 64 * 1024


@dataclass(frozen=True)
class EncodedText:
    """What a record stores for one text."""

    codec: str
    payload: bytes
    raw_size: int
    content_hash: bytes
    dict_id: int | None = None


def content_hash(raw: bytes) -> bytes:
    """BLAKE2b-128 of the UTF-8 text: 16 bytes, the record's ``content_hash``."""
    return hashlib.blake2b(raw, digest_size=16).digest()


def utf8(text: Any) -> bytes:
    """``text`` as UTF-8, or the contract's error for anything that is not text."""
    if not isinstance(text, str):
        raise InvalidValueError(f"a memory must be text (str), not {type(text).__name__}")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidUtf8Error(f"the text is not valid Unicode: {exc.reason}") from None


class Dictionary:
    """A trained zstd dictionary and the compressor made from it (made once, reused)."""

    def __init__(self, dict_id: int, data: bytes) -> None:
        self.dict_id, self.data = dict_id, bytes(data)
        self._zdict = zstandard.ZstdCompressionDict(self.data, dict_type=zstandard.DICT_TYPE_AUTO)
        self._lock = threading.Lock()
        self._compressor: zstandard.ZstdCompressor | None = None

    def compress(self, raw: bytes) -> bytes:
        with self._lock:  # a ZstdCompressor is not thread-safe; making one costs ~0.3 ms
            if self._compressor is None:
                self._compressor = zstandard.ZstdCompressor(
                    dict_data=self._zdict, compression_params=_params(DICT_ZSTD_LEVEL, False)
                )
            return self._compressor.compress(raw)

    def decompress(self, payload: bytes, raw_size: int) -> bytes:
        reader = zstandard.ZstdDecompressor(
            dict_data=self._zdict, format=zstandard.FORMAT_ZSTD1_MAGICLESS
        )
        return _capped_read(reader, payload, raw_size)


def encode_text(
    text: str,
    *,
    codec: str = CODEC_ZSTD,
    dictionary: Dictionary | None = None,
    lm: Any = None,
    agent: str | None = None,
) -> EncodedText:
    """Compress one text with ``codec`` or, where that loses or fails, a cheaper one.

    ``codec`` is the most a policy allows: ``lm`` tries the model (``lm``, a
    loaded ``LanguageModelCodec``), then the dictionary, then zstd; ``zstd-dict``
    tries the dictionary, then zstd. The smallest payload wins; tiny texts stay
    as they are.
    """
    raw = utf8(text)
    digest = content_hash(raw)
    best = EncodedText(CODEC_NONE, raw, len(raw), digest)
    if codec == CODEC_NONE or (len(raw) < MIN_COMPRESS_BYTES and codec != CODEC_LM):
        return best
    for candidate in _candidates(raw, digest, codec, dictionary, lm, agent):
        if len(candidate.payload) < len(best.payload):
            best = candidate
    return best


def encode_bytes(raw: bytes) -> EncodedText:
    """Compress binary content (a dictionary, a scene) with zstd, or keep it as it is when
    that is smaller; ``raw_size`` and ``content_hash`` are of ``raw``."""
    digest = content_hash(raw)
    packed = _compressor(DEFAULT_ZSTD_LEVEL).compress(raw)
    if len(packed) < len(raw):
        return EncodedText(CODEC_ZSTD, packed, len(raw), digest)
    return EncodedText(CODEC_NONE, raw, len(raw), digest)


def _candidates(
    raw: bytes, digest: bytes, codec: str, dictionary: Dictionary | None, lm: Any, agent: str | None
) -> list[EncodedText]:
    found = [
        EncodedText(CODEC_ZSTD, _compressor(DEFAULT_ZSTD_LEVEL).compress(raw), len(raw), digest)
    ]
    if codec in (CODEC_ZSTD_DICT, CODEC_LM) and dictionary is not None:
        found.append(
            EncodedText(
                CODEC_ZSTD_DICT, dictionary.compress(raw), len(raw), digest, dictionary.dict_id
            )
        )
    if codec == CODEC_LM and lm is not None and len(raw) <= MAX_LM_BYTES:
        verified = _lm_encode_verified(raw, digest, lm, agent)
        if verified is not None:
            found.append(verified)
    return found


def _lm_encode_verified(
    raw: bytes, digest: bytes, lm: Any, agent: str | None
) -> EncodedText | None:
    """The model's payload, only if decoding it gives back exactly ``raw``."""
    try:
        payload = lm.encode(raw, agent)
        back = lm.decode(payload, len(raw), agent)
    except AiosMemoryError:
        return None
    if back != raw or content_hash(back) != digest:
        return None
    return EncodedText(CODEC_LM, payload, len(raw), digest, lm.fingerprint)


class Codebook:
    """What decoding needs beyond a payload: dictionaries by id, and the model.

    Parameters
    ----------
    dictionaries : callable
        ``dict_id -> Dictionary | None``; the client asks its server, the
        server its store.
    lm : callable, optional
        Returns the loaded ``LanguageModelCodec``; raises ``CodecUnavailableError``
        when the ``[lm]`` extra is not installed. Defaults to the process's model.
    opener : callable, optional
        ``row -> row``: opens a ``sealed`` record with the tenant's key
        (``sealing.Sealer.open``); without one a sealed record raises ``KeyMissingError``.
    """

    def __init__(
        self,
        dictionaries: Callable[[int], Dictionary | None] = lambda _: None,
        lm: Callable[[], Any] | None = None,
        cache_bytes: int = DECODED_CACHE_BYTES,
        opener: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
    ) -> None:
        self._dictionaries = dictionaries
        self._lm = lm or _default_lm
        self._cache = _DecodedCache(cache_bytes)
        self._opener = opener

    def open(self, row: Mapping[str, Any]) -> Mapping[str, Any]:
        """``row`` as its client wrote it: a sealed record opened, any other as it is."""
        if row.get("codec") != CODEC_SEALED:
            return row
        if self._opener is None:
            raise KeyMissingError(
                f"memory {row.get('id')} is end-to-end encrypted and this reader holds no keys",
                memory_id=row.get("id"),
            )
        return self._opener(row)

    def lm(self) -> Any:
        """The loaded model codec, or ``CodecUnavailableError``."""
        return self._lm()

    def dictionary(self, dict_id: int | None) -> Dictionary:
        found = self._dictionaries(dict_id) if dict_id is not None else None
        if found is None:
            raise CodecMismatchError(
                f"dictionary {dict_id} is not stored for this tenant: the memory was compressed "
                "with a dictionary this server has not received (sync it, or put the "
                "dictionary record first)",
                dict_id=dict_id,
            )
        return found

    def decode(self, row: Mapping[str, Any], *, max_bytes: int) -> bytes:
        """The checked bytes of one record row (codec, dict_id, payload, raw_size, ...)."""
        row = self.open(row)
        codec, size = row["codec"], row["raw_size"]
        if codec == CODEC_ZSTD_DICT:
            _check_size(size, max_bytes)
            raw = self.dictionary(row.get("dict_id")).decompress(bytes(row["payload"]), size)
        elif codec == CODEC_LM:
            raw = self._decode_lm(row, max_bytes)
        else:
            raw = decode_payload(codec, row["payload"], size, max_bytes=max_bytes)
        if len(raw) != size:
            raise CorruptDataError(f"payload decodes to {len(raw)} bytes, record says {size}")
        if row.get("content_hash") is not None and content_hash(raw) != row["content_hash"]:
            raise CorruptDataError(
                "payload does not match its content_hash", memory_id=row.get("id")
            )
        return raw

    def text(self, row: Mapping[str, Any], *, max_bytes: int) -> str:
        """The decoded, hash-checked text of one record row."""
        return _to_text(self.decode(row, max_bytes=max_bytes))

    def _decode_lm(self, row: Mapping[str, Any], max_bytes: int) -> bytes:
        _check_size(row["raw_size"], max_bytes)
        key = bytes(row["content_hash"] or b"") + bytes(row["payload"])
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        model = self.lm()
        if row.get("dict_id") != model.fingerprint:
            raise CodecMismatchError(
                f"memory {row.get('id')} was compressed by language model {row.get('dict_id')}; "
                f"this side has model {model.fingerprint} ({model.describe().get('model')}). "
                "Install the ai-os-memory[lm] versions that wrote it; nothing was decoded.",
                memory_id=row.get("id"),
                dict_id=row.get("dict_id"),
            )
        raw: bytes = model.decode(bytes(row["payload"]), row["raw_size"], row.get("agent"))
        if row.get("content_hash") is not None and content_hash(raw) == row["content_hash"]:
            self._cache.put(key, raw)
        return raw


class _DecodedCache:
    """Bytes the model decoded, least recently used first out, bounded in bytes."""

    def __init__(self, limit: int) -> None:
        self._limit, self._size = limit, 0
        self._items: OrderedDict[bytes, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: bytes) -> bytes | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: bytes, value: bytes) -> None:
        with self._lock:
            if key in self._items or len(value) > self._limit:
                return
            self._items[key] = value
            self._size += len(key) + len(value)
            while self._size > self._limit:
                old_key, old = self._items.popitem(last=False)
                self._size -= len(old_key) + len(old)


def _default_lm() -> Any:
    try:
        from ._lm import load_lm_codec
    except ImportError as exc:
        raise CodecUnavailableError(
            f"the lm codec needs the [lm] extra ({exc}): "
            "CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" pip install 'ai-os-memory[lm]'"
        ) from None
    return load_lm_codec()


def decode_payload(codec: str, payload: bytes, raw_size: int, *, max_bytes: int) -> bytes:
    """Decoded bytes of a payload that needs no dictionary or model.

    1 GiB of zeros is 32 KB of zstd and ``decompress()`` trusts the size a
    frame declares, so the declared size is checked first and the output is
    streamed with a running cap.
    """
    _check_size(raw_size, max_bytes)
    if codec == CODEC_NONE:
        raw = bytes(payload)
    elif codec == CODEC_ZSTD:
        raw = _zstd_decode(payload, raw_size)
    elif codec in (CODEC_ZSTD_DICT, CODEC_LM, CODEC_SEALED):
        raise CodecUnavailableError(
            f"codec {codec!r} needs a Codebook (and, sealed, a key) to decode", codec=codec
        )
    else:
        raise CorruptDataError(f"unknown codec {codec!r}: upgrade the client", codec=codec)
    if len(raw) != raw_size:
        raise CorruptDataError(f"payload decodes to {len(raw)} bytes, record says {raw_size}")
    return raw


def decode_text(
    codec: str, payload: bytes, raw_size: int, expected_hash: bytes | None = None, *, max_bytes: int
) -> str:
    """Decoded text of a payload that needs no dictionary or model, checked against its hash."""
    raw = decode_payload(codec, payload, raw_size, max_bytes=max_bytes)
    if expected_hash is not None and content_hash(raw) != expected_hash:
        raise CorruptDataError("payload does not match its content_hash")
    return _to_text(raw)


def _to_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidUtf8Error(f"text is not valid UTF-8 at byte {exc.start}") from None


def _check_size(raw_size: int, max_bytes: int) -> None:
    if raw_size > max_bytes:
        raise TextTooLargeError(f"declared size {raw_size} is over the limit {max_bytes}")


def _params(level: int, content_size: bool) -> zstandard.ZstdCompressionParameters:
    # The record carries codec, dict_id and raw_size; a magic number, checksum or
    # dictionary id would repeat them (content_hash covers integrity).
    return zstandard.ZstdCompressionParameters.from_level(
        level,
        format=zstandard.FORMAT_ZSTD1_MAGICLESS,
        write_checksum=False,
        write_content_size=content_size,
        write_dict_id=False,
    )


def _compressor(level: int) -> zstandard.ZstdCompressor:
    # Plain zstd keeps its content size: frames written before raw_size was trusted have it.
    return zstandard.ZstdCompressor(compression_params=_params(level, True))


def _zstd_decode(payload: bytes, raw_size: int) -> bytes:
    try:
        params = zstandard.get_frame_parameters(b"\x28\xb5\x2f\xfd" + bytes(payload[:18]))
        declared = params.content_size
    except zstandard.ZstdError:
        raise CorruptDataError("payload is not a zstd frame") from None
    if declared not in (raw_size, zstandard.CONTENTSIZE_UNKNOWN):
        raise CorruptDataError(f"frame declares {declared} bytes, record says {raw_size}")
    return _capped_read(
        zstandard.ZstdDecompressor(format=zstandard.FORMAT_ZSTD1_MAGICLESS), payload, raw_size
    )


def _capped_read(decompressor: zstandard.ZstdDecompressor, payload: bytes, raw_size: int) -> bytes:
    """At most ``raw_size + 1`` bytes of output, whatever the frame claims."""
    reader = decompressor.stream_reader(bytes(payload), read_across_frames=False)
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
