"""The human-facing forms of a tenant key: the recovery code and the transfer file.

A **recovery code** is the data key itself in base32, with a version byte
and a checksum bound to the tenant, grouped by four for reading aloud or on
paper. Whoever holds it can read the tenant's memories: it is shown once.

A **transfer file** carries a data key to a second device, wrapped
(AES-256-GCM) by a key stretched (scrypt) from a random one-time
**transfer code** that travels apart from the file (read it off one screen,
type it on the other). The code has its own checksum, so a typo is told
apart from a wrong code or an edited file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from aios_memory.schemas import InvalidValueError, TamperedError

__all__ = [
    "recovery_code",
    "parse_recovery_code",
    "new_transfer_code",
    "wrap_for_transfer",
    "unwrap_transfer",
    "key_id_of",
    "KEY_BYTES",
]

KEY_BYTES = 32
_RECOVERY_VERSION = 1
_TRANSFER_VERSION = 1
_TRANSFER_FORMAT = "aimem-key-transfer"
# Codes are whole groups of 5 bytes, so every base32 character carries data (no ignored bits
# that would let a typo in the last one pass): recovery 1 + 32 + 7 = 40 bytes, 64 characters;
# transfer 12 + 3 = 15 bytes, 24 characters.
_RECOVERY_CHECK_BYTES = 7
_TRANSFER_SECRET_BYTES = 12  # 96 bits, stretched by scrypt: a one-time code, not a password
_TRANSFER_CHECK_BYTES = 3
_SCRYPT = {"n": 2**15, "r": 8, "p": 1}


def key_id_of(key: bytes) -> int:
    """The 32-bit id of a data key: made from the key, so every device agrees on it."""
    return int.from_bytes(
        hashlib.blake2b(key, digest_size=4, person=b"aimem-key-id").digest(), "big"
    )


def _checksum(*parts: bytes, size: int) -> bytes:
    return hashlib.blake2b(b"\0".join(parts), digest_size=size, person=b"aimem-code").digest()


def _grouped(raw: bytes) -> str:
    text = base64.b32encode(raw).decode().rstrip("=")
    return "-".join(text[i : i + 4] for i in range(0, len(text), 4))


def _ungrouped(code: str, what: str) -> bytes:
    text = "".join(ch for ch in code.upper() if ch not in " -\t\r\n")
    try:
        return base64.b32decode(text + "=" * (-len(text) % 8))
    except ValueError:
        raise InvalidValueError(
            f"the {what} is not base32 (letters A-Z and digits 2-7, in "
            "groups of four): check it for typos"
        ) from None


def recovery_code(tenant: str, key: bytes) -> str:
    """The recovery code of ``tenant``'s data ``key`` (64 characters in groups of four)."""
    body = bytes([_RECOVERY_VERSION]) + key
    return _grouped(body + _checksum(tenant.encode(), body, size=_RECOVERY_CHECK_BYTES))


def parse_recovery_code(tenant: str, code: str) -> bytes:
    """The data key a recovery code holds; ``InvalidValueError`` if it does not check out."""
    raw = _ungrouped(code, "recovery code")
    body, check = raw[:-_RECOVERY_CHECK_BYTES], raw[-_RECOVERY_CHECK_BYTES:]
    if (
        len(body) != 1 + KEY_BYTES
        or body[0] != _RECOVERY_VERSION
        or _checksum(tenant.encode(), body, size=_RECOVERY_CHECK_BYTES) != check
    ):
        raise InvalidValueError(
            f"this recovery code does not check out for tenant {tenant!r}: a typo, or the code "
            "of another tenant. Type it again exactly as printed by `aimem keys init`.",
            tenant=tenant,
        )
    return body[1:]


def new_transfer_code() -> str:
    """A fresh one-time transfer code (24 characters in groups of four)."""
    secret = os.urandom(_TRANSFER_SECRET_BYTES)
    return _grouped(secret + _checksum(secret, size=_TRANSFER_CHECK_BYTES))


def _transfer_secret(code: str) -> bytes:
    raw = _ungrouped(code, "transfer code")
    secret, check = raw[:-_TRANSFER_CHECK_BYTES], raw[-_TRANSFER_CHECK_BYTES:]
    if (
        len(secret) != _TRANSFER_SECRET_BYTES
        or _checksum(secret, size=_TRANSFER_CHECK_BYTES) != check
    ):
        raise InvalidValueError(
            "the transfer code has a typo (its checksum does not match): "
            "type it again exactly as `aimem keys export` printed it"
        )
    return secret


def _transfer_key(secret: bytes, salt: bytes) -> bytes:
    return Scrypt(salt=salt, length=KEY_BYTES, **_SCRYPT).derive(secret)


def _transfer_ad(tenant: str, key_id: int, encrypt_at: int) -> bytes:
    return json.dumps(
        ["aimem-transfer", _TRANSFER_VERSION, tenant, key_id, encrypt_at], separators=(",", ":")
    ).encode()


def wrap_for_transfer(tenant: str, key: bytes, encrypt_at: int, code: str) -> bytes:
    """The transfer file (JSON bytes) carrying ``key``, openable only with ``code``."""
    salt, nonce = os.urandom(16), os.urandom(12)
    key_id = key_id_of(key)
    sealed = AESGCM(_transfer_key(_transfer_secret(code), salt)).encrypt(
        nonce, key, _transfer_ad(tenant, key_id, encrypt_at)
    )
    body = {
        "v": _TRANSFER_VERSION,
        "format": _TRANSFER_FORMAT,
        "tenant": tenant,
        "key_id": key_id,
        "encrypt_at": encrypt_at,
        "salt": _b64(salt),
        "wrapped": _b64(nonce + sealed),
    }
    return (json.dumps(body, indent=1) + "\n").encode()


def unwrap_transfer(blob: bytes, code: str) -> tuple[str, bytes, int]:
    """``(tenant, key, encrypt_at)`` from a transfer file and its code.

    Raises ``InvalidValueError`` for a file that is not one or a code with a
    typo, ``TamperedError`` when the code does not open the file.
    """
    body = _transfer_body(blob)
    secret = _transfer_secret(code)
    wrapped = _unb64(body["wrapped"])
    try:
        key = AESGCM(_transfer_key(secret, _unb64(body["salt"]))).decrypt(
            wrapped[:12],
            wrapped[12:],
            _transfer_ad(body["tenant"], body["key_id"], body["encrypt_at"]),
        )
    except InvalidTag:
        raise TamperedError(
            f"the transfer code does not open this file (tenant {body['tenant']!r}): it is the "
            "code of another export, or the file was changed. Run `aimem keys export` again "
            "on the device that has the key and use the code it prints.",
            tenant=body["tenant"],
        ) from None
    if len(key) != KEY_BYTES or key_id_of(key) != body["key_id"]:
        raise TamperedError("the transfer file holds a key that does not match its key id")
    return body["tenant"], key, body["encrypt_at"]


def _transfer_body(blob: bytes) -> dict[str, Any]:
    try:
        body = json.loads(blob)
    except ValueError:
        body = None
    fields = {
        "v": int,
        "format": str,
        "tenant": str,
        "key_id": int,
        "encrypt_at": int,
        "salt": str,
        "wrapped": str,
    }
    if (
        not isinstance(body, dict)
        or set(body) != set(fields)
        or any(not isinstance(body[k], t) for k, t in fields.items())
        or body["format"] != _TRANSFER_FORMAT
        or body["v"] != _TRANSFER_VERSION
    ):
        raise InvalidValueError(
            "this is not an aimem key transfer file (made by "
            "`aimem keys export --tenant T --out FILE`)"
        )
    return body


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise InvalidValueError("a key file holds a field that is not base64") from None
