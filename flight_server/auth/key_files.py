"""The data directory's secrets on disk: the signing key and the owner token, checked on read.

Both files carry a checksum, so a flipped byte, a cut tail or a truncation is
refused at start with one message naming the file and the fix, instead of a
``UnicodeDecodeError``, a server every client fails against ("Illegal header
value"), or a key that silently invalidates every scoped token.

``DATA/signing.key`` (mode 0600), one line::

    aimem-signing-key-v2 <32 bytes, base64url> <first 16 hex of their SHA-256>

The first format was the 32 raw bytes; ``read_signing_key`` says which it read
so the caller can migrate it (``tokens.TokenAuthority``).

``DATA/token`` holds exactly the owner token clients send, so its checksum is
part of the token: ``aimem-owner.<43 base64url characters>.<8 hex>``. A token
file of the first format (43 base64url characters) still works, since
changing it would lock out every client that holds it; it is checked for its
alphabet and length only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from pathlib import Path

from aios_memory.flight_server._files import atomic_write_bytes
from aios_memory.schemas import AuthStateError

__all__ = [
    "KEY_BYTES",
    "read_signing_key",
    "write_signing_key",
    "new_owner_token",
    "read_owner_token",
    "check_header_token",
]

KEY_BYTES = 32
_KEY_MAGIC = "aimem-signing-key-v2"
_OWNER_PREFIX = "aimem-owner."
_OWNER = re.compile(r"^aimem-owner\.([A-Za-z0-9_-]{43})\.([0-9a-f]{8})$")
_LEGACY_OWNER = re.compile(r"^[A-Za-z0-9_-]{43}$")
# What an HTTP/2 header value may hold and a token needs: visible ASCII, no spaces.
_HEADER_SAFE = re.compile(r"^[\x21-\x7e]+$")


def _key_check(key: bytes) -> str:
    return hashlib.sha256(b"aimem-signing-key\x00" + key).hexdigest()[:16]


def write_signing_key(path: Path, key: bytes) -> None:
    """Keep ``key`` in ``path`` in the checksummed format (atomic, fsynced, mode 0600)."""
    text = f"{_KEY_MAGIC} {base64.urlsafe_b64encode(key).decode()} {_key_check(key)}\n"
    atomic_write_bytes(path, text.encode(), mode=0o600)


def read_signing_key(path: Path) -> tuple[bytes, bool]:
    """The key in ``path`` and whether it was in the first (raw) format; else AuthStateError."""
    data = path.read_bytes()
    # The first format: 32 raw bytes, nothing to check (a new-format file cut to 32 is not one).
    if len(data) == KEY_BYTES and not data.startswith(_KEY_MAGIC.encode()[:8]):
        return data, True
    key = _parse_key(data)
    if key is None:
        raise AuthStateError(
            f"{path} is damaged (not a signing key, or its checksum does not match): restore "
            "it from a backup; if there is none, `aimem token repair --data DIR --new-key` makes "
            "a new one and every scoped token made before must be made again",
            file=str(path),
        )
    return key, False


def _parse_key(data: bytes) -> bytes | None:
    try:
        magic, encoded, check = data.decode("ascii").split()
        key = base64.urlsafe_b64decode(encoded)
    except (UnicodeDecodeError, ValueError, binascii.Error):
        return None
    if magic != _KEY_MAGIC or len(key) != KEY_BYTES or check != _key_check(key):
        return None
    return key


def _owner_check(secret: str) -> str:
    return hashlib.sha256(b"aimem-owner-token\x00" + secret.encode()).hexdigest()[:8]


def new_owner_token() -> str:
    """A new owner token that carries its own checksum."""
    secret = secrets.token_urlsafe(32)
    return f"{_OWNER_PREFIX}{secret}.{_owner_check(secret)}"


def read_owner_token(path: Path) -> str:
    """The owner token kept in ``path``, checked; else AuthStateError naming the file."""
    data = path.read_bytes().strip()
    try:
        token = data.decode("ascii")
    except UnicodeDecodeError:
        token = None
    if token is not None:
        found = _OWNER.match(token)
        if found and found.group(2) == _owner_check(found.group(1)):
            return token
        if _LEGACY_OWNER.match(token):
            return token
    raise AuthStateError(
        f"{path} is damaged (not an owner token, or its checksum does not match): write back "
        "the token your clients use (one line), or delete the file and restart `aimem serve` "
        "to make a new one (clients then need the new token)",
        file=str(path),
    )


def check_header_token(token: str, where: str) -> str:
    """``token`` if it can travel in an ``authorization`` header; else AuthStateError."""
    if not _HEADER_SAFE.match(token):
        raise AuthStateError(
            f"the token {where} holds a character a token cannot have (only visible ASCII, "
            "no spaces): give the token exactly as it was made",
            file=where,
        )
    return token
