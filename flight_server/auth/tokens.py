"""Signed access tokens: made by ``aimem token create``, checked by the server on every call.

A token is ``aimem_<claims>.<signature>``: the claims are base64url JSON
(tenant, principal, tiers, write tiers, clearance, expiry, token id), the
signature an HMAC-SHA256 of them under the data directory's signing key
(``DATA/signing.key``, mode 0600). The server needs no token table to check
one; revocation is a list of token ids (``DATA/revoked.json``) that the
server re-reads whenever the file changes, so ``aimem token revoke`` works
while the server runs. Issued tokens are noted (never their secret part) in
``DATA/tokens.jsonl`` for ``aimem token list``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from aios_memory.flight_server._files import atomic_write_bytes
from aios_memory.schemas import (
    Grant,
    InvalidValueError,
    TokenExpiredError,
    TokenInvalidError,
    TokenRevokedError,
)

__all__ = ["TokenAuthority", "TOKEN_PREFIX", "SIGNING_KEY_FILE", "REVOKED_FILE", "ISSUED_FILE"]

TOKEN_PREFIX = "aimem_"
SIGNING_KEY_FILE = "signing.key"
REVOKED_FILE = "revoked.json"
ISSUED_FILE = "tokens.jsonl"
_MAX_TOKEN_CHARS = 4096
_CLAIMS = {"v", "id", "t", "p", "r", "w", "c", "e", "iat"}
_LABEL = b"aimem-token-v1."


class TokenAuthority:
    """Makes, checks and revokes the tokens of one data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self._key = _signing_key(self.data_dir / SIGNING_KEY_FILE)
        self._revoked: frozenset[str] = frozenset()
        self._revoked_stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()

    # -- making -----------------------------------------------------------------------------
    def create(
        self,
        tenant: str,
        principal: str,
        tiers: tuple[str, ...],
        write_tiers: tuple[str, ...],
        clearance: int,
        expires: float | None,
    ) -> tuple[str, Grant]:
        """A new token and the grant it carries; noted in ``tokens.jsonl``."""
        token_id = secrets.token_hex(8)
        grant = Grant(tenant, principal, tiers, write_tiers, clearance, expires, token_id)
        _check_name(tenant, "tenant")
        _check_name(principal, "principal")
        claims = {
            "v": 1,
            "id": token_id,
            "t": tenant,
            "p": principal,
            "r": list(grant.tiers),
            "w": list(grant.write_tiers),
            "c": clearance,
            "e": expires,
            "iat": int(time.time()),
        }
        body = _b64(json.dumps(claims, separators=(",", ":")).encode())
        token = f"{TOKEN_PREFIX}{body}.{_b64(self._sign(body))}"
        self._note_issued({k: claims[k] for k in ("id", "t", "p", "r", "w", "c", "e", "iat")})
        return token, grant

    def _sign(self, body: str) -> bytes:
        return hmac.new(self._key, _LABEL + body.encode(), hashlib.sha256).digest()

    def _note_issued(self, claims: dict[str, Any]) -> None:
        path = self.data_dir / ISSUED_FILE
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(claims, separators=(",", ":")) + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.chmod(path, 0o600)

    def issued(self) -> list[dict[str, Any]]:
        """Every token made here (id, tenant, principal, tiers, clearance, expiry, revoked)."""
        path = self.data_dir / ISSUED_FILE
        if not path.exists():
            return []
        revoked = self.revoked()
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [{**row, "revoked": row["id"] in revoked} for row in rows]

    # -- checking ---------------------------------------------------------------------------
    def verify(self, token: str, now: float | None = None) -> Grant:
        """The grant of a token signed here, unexpired and unrevoked; else the specific error."""
        claims = self._claims(token)
        grant = _grant(claims)
        if grant.expired(now):
            raise TokenExpiredError(
                f"token {grant.token_id} for {grant.tenant}/{grant.principal} expired; ask for "
                "a new one (aimem token create)",
                token_id=grant.token_id,
            )
        if grant.token_id in self.revoked():
            raise TokenRevokedError(f"token {grant.token_id} was revoked", token_id=grant.token_id)
        return grant

    def _claims(self, token: str) -> dict[str, Any]:
        if (
            not token.startswith(TOKEN_PREFIX)
            or len(token) > _MAX_TOKEN_CHARS
            or token.count(".") != 1
        ):
            raise TokenInvalidError("not a token of this server (wrong form)")
        body, signature = token[len(TOKEN_PREFIX) :].split(".")
        if not hmac.compare_digest(_unb64(signature), self._sign(body)):
            raise TokenInvalidError("the token's signature does not match this server's key")
        try:
            claims = json.loads(_unb64(body))
        except ValueError:
            raise TokenInvalidError("the token's claims are not JSON") from None
        if not isinstance(claims, dict) or set(claims) != _CLAIMS or claims["v"] != 1:
            raise TokenInvalidError("the token's claims are not version 1")
        return claims

    def token_id_of(self, token: str) -> str | None:
        """The id of a well-signed token (even expired or revoked), else None."""
        try:
            return str(self._claims(token)["id"])
        except TokenInvalidError:
            return None

    # -- revoking ---------------------------------------------------------------------------
    def revoke(self, token_or_id: str) -> str:
        """Revoke a token (given whole or by id); returns its id."""
        token_id = (
            self.token_id_of(token_or_id) if token_or_id.startswith(TOKEN_PREFIX) else token_or_id
        )
        known = {row["id"] for row in self.issued()}
        if token_id is None or token_id not in known:
            raise InvalidValueError(
                f"no token {token_or_id!r} was made with this data "
                "directory; `aimem token list` shows them"
            )
        revoked = sorted(self.revoked() | {token_id})
        atomic_write_bytes(self.data_dir / REVOKED_FILE, json.dumps(revoked).encode(), mode=0o600)
        return token_id

    def revoked(self) -> frozenset[str]:
        """Revoked token ids, re-read when the file changed (a stat per call)."""
        path = self.data_dir / REVOKED_FILE
        try:
            info = path.stat()
        except FileNotFoundError:
            return frozenset()
        stamp = (info.st_mtime_ns, info.st_size)
        with self._lock:
            if stamp != self._revoked_stamp:
                self._revoked = frozenset(json.loads(path.read_text()))
                self._revoked_stamp = stamp
            return self._revoked


def _grant(claims: dict[str, Any]) -> Grant:
    try:
        return Grant(
            tenant=str(claims["t"]),
            principal=str(claims["p"]),
            tiers=tuple(claims["r"]),
            write_tiers=tuple(claims["w"]),
            clearance=int(claims["c"]),
            expires=None if claims["e"] is None else float(claims["e"]),
            token_id=str(claims["id"]),
        )
    except (InvalidValueError, TypeError, ValueError):
        raise TokenInvalidError("the token's claims are out of range") from None


def _signing_key(path: Path) -> bytes:
    if path.exists():
        key = path.read_bytes()
        if len(key) == 32:
            return key
        raise InvalidValueError(
            f"{path} is not a 32-byte signing key; restore it from a backup "
            "or remove it (every token made with it stops working)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    atomic_write_bytes(path, key, mode=0o600)
    return key


def _check_name(value: str, what: str) -> None:
    ok = 0 < len(value) <= 64 and all(c.isalnum() or c in "_.-" for c in value) and value.isascii()
    if not ok:
        raise InvalidValueError(f"{what} {value!r} must be 1-64 characters of [0-9A-Za-z_.-]")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raise TokenInvalidError("the token is not base64url") from None
