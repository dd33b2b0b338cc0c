"""End-to-end encryption of private memories: sealing a record on the client, opening it.

A record whose privacy is at or above its tenant's threshold is **sealed**
after compression: everything private moves into an *envelope* that is
encrypted with the tenant's data key (AES-256-GCM, a random 96-bit nonce),
and the record keeps outside only what storing and syncing need::

    codec         "sealed"
    payload       format byte (1) || key id (4 bytes, big-endian) || nonce (12) || ciphertext
    content_hash  BLAKE2b-128 of the payload (a hash of ciphertext)
    raw_size      length of the envelope
    metadata      null, or only the access list {"aimem:readers": [...]} the server enforces
    agent, session, embedding, embedding_scale, embed_model   null
    dict_id       null (a dictionary keeps its id: memories name it, readers look it up)
    id, tenant, tier, kind, created_at, hlc, origin, privacy, deleted   as they are

The associated data binds the key id, tenant, id, tier, kind, created_at,
hlc, origin, privacy, deleted, the outer metadata and dict_id, so a server cannot
swap payloads between records, replay an old version under a newer hlc or
move a record to another tier unnoticed. Binding the hlc needs the client to
make the version: a sealed record carries ``hlc`` from the client's hybrid
clock and ``origin`` "c-" + its device id, which the server keeps as it keeps
a replica's (the highest ``(hlc, origin)`` wins; a retry is idempotent).

The envelope (``_envelope``) packs the private fields in binary, then the
int8 vector, then the inner payload; it is parsed strictly. No pickle.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from aios_memory.schemas import (
    CODEC_SEALED,
    DEFAULT_LIMITS,
    DICTIONARY_KIND,
    READERS_KEY,
    CorruptDataError,
    HybridClock,
    InvalidValueError,
    KeyMissingError,
    PutAck,
    ServerInternalError,
    TamperedError,
    TextTooLargeError,
)

from ._envelope import pack_envelope, unpack_envelope
from .batches import chunk_rows, rows_to_batch
from .keys import DEFAULT_ENCRYPT_AT, KeyStore, TenantKey, check_encrypt_at

__all__ = [
    "Sealer",
    "seal_row",
    "open_row",
    "check_sealed",
    "sealed_key_id",
    "is_sealed",
    "KeyLookup",
    "SEALED_FORMAT",
    "ORIGIN_PREFIX",
]

log = logging.getLogger("aios_memory.client")

SEALED_FORMAT = 1
ORIGIN_PREFIX = "c-"
_HEADER = struct.Struct(">BI")  # format byte, key id
_NONCE_BYTES = 12
_TAG_BYTES = 16
_MIN_PAYLOAD = _HEADER.size + _NONCE_BYTES + _TAG_BYTES
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# Fields the envelope carries; a sealed row has them null outside.
_PRIVATE = ("agent", "session", "embedding", "embedding_scale", "embed_model")

KeyLookup = Callable[[str, int], "TenantKey | None"]
"""``(tenant, key_id) -> TenantKey | None``: the keys a side has."""


def is_sealed(row: Mapping[str, Any]) -> bool:
    """Whether ``row`` is a sealed record."""
    return row.get("codec") == CODEC_SEALED


def sealed_key_id(payload: bytes) -> int:
    """The id of the key that sealed ``payload``; ``CorruptDataError`` if it is not sealed."""
    if len(payload) < _MIN_PAYLOAD or payload[0] != SEALED_FORMAT:
        raise CorruptDataError(
            f"a sealed payload starts with format byte {SEALED_FORMAT} and "
            f"holds at least {_MIN_PAYLOAD} bytes"
        )
    return int(_HEADER.unpack_from(payload)[1])


# -- sealing --------------------------------------------------------------------------------


def seal_row(row: Mapping[str, Any], key: TenantKey, hlc: int, origin: str) -> dict[str, Any]:
    """The sealed form of one record row (a dict of RECORD_SCHEMA fields), as version ``hlc``."""
    metadata = _outer_metadata(row.get("metadata"))
    sealed = {
        **row,
        "hlc": hlc,
        "origin": origin,
        "codec": CODEC_SEALED,
        "metadata": metadata,
        "dict_id": row["dict_id"] if row["kind"] == DICTIONARY_KIND else None,
        **{name: None for name in _PRIVATE},
    }
    envelope = pack_envelope(row)
    nonce = os.urandom(_NONCE_BYTES)
    header = _HEADER.pack(SEALED_FORMAT, key.key_id)
    payload = (
        header + nonce + AESGCM(key.key).encrypt(nonce, envelope, _associated(sealed, key.key_id))
    )
    limits = DEFAULT_LIMITS
    if len(envelope) > limits.max_text_bytes or len(payload) > limits.max_payload_bytes:
        raise TextTooLargeError(
            f"memory {row['id']} is {len(envelope)} bytes sealed (text, metadata and vector); "
            f"a private memory may be {limits.max_text_bytes}. Split it into several memories.",
            memory_id=row["id"],
            limit=limits.max_text_bytes,
        )
    sealed.update(
        payload=payload,
        raw_size=len(envelope),
        content_hash=hashlib.blake2b(payload, digest_size=16).digest(),
    )
    return sealed


def _outer_metadata(text: str | None) -> str | None:
    """Only the access list stays outside: the server enforces it, and it reveals no text."""
    if text is None:
        return None
    value = json.loads(text)
    if not isinstance(value, dict) or READERS_KEY not in value:
        return None
    return json.dumps({READERS_KEY: value[READERS_KEY]}, ensure_ascii=False)


def _associated(row: Mapping[str, Any], key_id: int) -> bytes:
    fields = [
        "aimem-sealed",
        SEALED_FORMAT,
        key_id,
        row["tenant"],
        row["id"],
        row["tier"],
        row["kind"],
        _micros(row["created_at"]),
        int(row["hlc"]),
        row["origin"],
        int(row["privacy"]),
        bool(row["deleted"]),
        row.get("metadata"),
        row.get("dict_id"),
    ]
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=True).encode()


def _micros(value: Any) -> int:
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
        return (aware - _EPOCH) // timedelta(microseconds=1)
    return int(value)


# -- opening --------------------------------------------------------------------------------


def open_row(row: Mapping[str, Any], keys: KeyLookup) -> dict[str, Any]:
    """The record as its client wrote it: ``row`` with its envelope's fields put back.

    Raises ``KeyMissingError`` when ``keys`` lacks the key that sealed it and
    ``TamperedError`` when the ciphertext or a bound field was changed.
    """
    payload = bytes(row["payload"])
    key_id = sealed_key_id(payload)
    key = keys(row["tenant"], key_id)
    if key is None:
        raise KeyMissingError(
            f"memory {row['id']} of tenant {row['tenant']!r} is end-to-end encrypted with key "
            f"{key_id:08x}, which this side does not have. Bring it here with `aimem keys "
            f"export --tenant {row['tenant']}` on a device that has it and `aimem keys import "
            f"FILE` here (or `aimem keys recover --tenant {row['tenant']}`).",
            memory_id=row["id"],
            tenant=row["tenant"],
            key_id=f"{key_id:08x}",
        )
    nonce = payload[_HEADER.size : _HEADER.size + _NONCE_BYTES]
    try:
        envelope = AESGCM(key.key).decrypt(
            nonce, payload[_HEADER.size + _NONCE_BYTES :], _associated(row, key_id)
        )
    except InvalidTag:
        raise TamperedError(
            f"memory {row['id']} of tenant {row['tenant']!r} does not authenticate: its "
            "ciphertext or a field bound to it (tenant, id, tier, kind, created_at, hlc, origin, "
            "privacy, deleted, readers, dict_id) was changed, swapped or replayed. Nothing was "
            "decoded; sync it again from a replica you trust.",
            memory_id=row["id"],
        ) from None
    return {**row, **_parse_envelope(envelope, row["id"])}


def _parse_envelope(envelope: bytes, memory_id: str) -> dict[str, Any]:
    def bad(why: str) -> CorruptDataError:
        return CorruptDataError(
            f"memory {memory_id}: its sealed envelope {why}", memory_id=memory_id
        )

    return unpack_envelope(envelope, bad)


def check_sealed(row: Mapping[str, Any]) -> None:
    """What anyone can check of a sealed row without its key (the cloud does, on every put).

    The format byte and length, the hash of the ciphertext, a client-made
    version, and nothing private left outside.
    """
    payload = bytes(row["payload"])
    sealed_key_id(payload)
    if hashlib.blake2b(payload, digest_size=16).digest() != row["content_hash"]:
        raise CorruptDataError(
            f"sealed memory {row['id']} does not match its content_hash", memory_id=row["id"]
        )
    if not row["hlc"] or not row["origin"]:
        raise InvalidValueError(
            f"sealed memory {row['id']} has no version: a client seals with its own hlc and origin",
            memory_id=row["id"],
        )
    leaked = [name for name in _PRIVATE if row.get(name) is not None]
    if row.get("metadata") is not None and set(json.loads(row["metadata"])) != {READERS_KEY}:
        leaked.append("metadata")
    if row["kind"] != DICTIONARY_KIND and row.get("dict_id") is not None:
        leaked.append("dict_id")
    if leaked:
        raise InvalidValueError(
            f"sealed memory {row['id']} carries {', '.join(leaked)} outside "
            "its ciphertext; a sealed record keeps them inside",
            memory_id=row["id"],
            field=leaked[0],
        )


# -- the client's side ----------------------------------------------------------------------


class Sealer:
    """What a client needs to seal and open: its key store, threshold, clock and origin.

    Parameters
    ----------
    keys : KeyStore
        Where the tenant keys are.
    encrypt_at : int, optional
        Seal records at or above this privacy (0..4; 4 seals none), over the
        tenant's own threshold (``aimem keys init --encrypt-at``, default 2).
    """

    def __init__(self, keys: KeyStore, encrypt_at: int | None = None) -> None:
        self.keys = keys
        self.encrypt_at = None if encrypt_at is None else check_encrypt_at(encrypt_at)
        self.clock = HybridClock()

    def threshold(self, tenant: str) -> int:
        """The privacy from which ``tenant``'s records are sealed."""
        if self.encrypt_at is not None:
            return self.encrypt_at
        stored = self.keys.encrypt_at(tenant)
        return DEFAULT_ENCRYPT_AT if stored is None else stored

    def seal(self, row: dict[str, Any]) -> dict[str, Any]:
        """``row`` sealed when its privacy calls for it (tombstones never are), else as is."""
        if is_sealed(row) or row["deleted"] or row["privacy"] < self.threshold(row["tenant"]):
            return row
        key = self.keys.key(row["tenant"]) or self._new_key(row["tenant"])
        origin = ORIGIN_PREFIX + self.keys.device_id()
        return seal_row(row, key, self.clock.now(), origin)

    def open(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """``row`` opened if sealed (``KeyMissingError``, ``TamperedError``), else as it is."""
        if not is_sealed(row):
            return dict(row)
        return open_row(row, self.keys.key)

    def observe(self, data: Any) -> Any:
        """Pass ``data`` (records read, a Table or RecordBatch) through, the clock observing its
        newest version: a sealed edit made after a read orders after what was read."""
        if data.num_rows:
            newest = pc.max(data.column("hlc")).as_py()
            if newest:
                self.clock.observe(int(newest))
        return data

    def conflicts(self, rows: Sequence[Mapping[str, Any]], acks: Sequence[PutAck]) -> list[int]:
        """Positions of sealed ``rows`` the server acked with another hlc (it holds a newer
        version); the clock observes every acked hlc, so re-sealing orders after them."""
        hlcs = [hlc for ack in acks for hlc in ack.hlcs]
        if len(hlcs) != len(rows):
            raise ServerInternalError(f"the server acknowledged {len(hlcs)} of {len(rows)} rows")
        for hlc in hlcs:
            self.clock.observe(hlc)
        return [
            i
            for i, (row, hlc) in enumerate(zip(rows, hlcs, strict=True))
            if is_sealed(row) and hlc != row["hlc"]
        ]

    def write(
        self, rows: Sequence[dict[str, Any]], upload: Callable[[list[pa.RecordBatch]], list[PutAck]]
    ) -> list[PutAck]:
        """Seal what the threshold asks, ``upload`` the batches, and settle sealed versions.

        Where the server already holds a newer version of a sealed id, the
        rows are sealed again past it (the clock saw its hlc) and sent once
        more; a second refusal raises.
        """
        sealed = [self.seal(row) for row in rows]
        acks = upload(_batches(sealed))
        again = self.conflicts(sealed, acks)
        if not again:
            return acks
        resealed = [self.seal(rows[i]) for i in again]
        newer = self.conflicts(resealed, upload(_batches(resealed)))
        if newer:
            raise ServerInternalError(
                f"the server kept another version of memory {resealed[newer[0]]['id']} twice, "
                "though this client sealed past it; is another device writing it with a clock "
                "far ahead? Retry later.",
                memory_id=resealed[newer[0]]["id"],
            )
        hlcs = {row["id"]: row["hlc"] for row in resealed}
        return [
            PutAck(
                batch=ack.batch,
                ids=ack.ids,
                # An ack short of hlcs was refused by the count check above.
                hlcs=[hlcs.get(i, hlc) for i, hlc in zip(ack.ids, ack.hlcs, strict=False)],
            )
            for ack in acks
        ]

    def _new_key(self, tenant: str) -> TenantKey:
        try:
            key = self.keys.create(tenant)  # the default threshold: an override is not stored
        except InvalidValueError:  # another process made it meanwhile
            found = self.keys.key(tenant)
            if found is None:
                raise
            return found
        log.warning(
            "made a new end-to-end encryption key for tenant %r in %s. Print its "
            "recovery code once and keep it safe: aimem keys recovery-code --tenant %s",
            tenant,
            self.keys.path,
            tenant,
        )
        return key


def _batches(rows: Sequence[dict[str, Any]]) -> list[pa.RecordBatch]:
    return [rows_to_batch(chunk) for chunk in chunk_rows(rows)]
