"""Signed access tokens: made by ``aimem token create``, checked by the server on every call.

A token is ``aimem_<claims>.<signature>``: the claims are base64url JSON
(tenant, principal, tiers, write tiers, clearance, expiry, token id), the
signature an HMAC-SHA256 of them under the data directory's signing key
(``DATA/signing.key``, mode 0600, checksummed: ``key_files``). The server
needs no token table to check one; revocation is the revocation store
(``revocations``: two HMAC-checked copies, re-read whenever either changes,
so ``aimem token revoke`` works while the server runs, and failing closed
when both are lost). Issued tokens are noted (never their secret part) in
``DATA/tokens.jsonl`` for ``aimem token list``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from aios_memory.schemas import (
    AuthStateError,
    Grant,
    InvalidValueError,
    TokenExpiredError,
    TokenInvalidError,
    TokenRevokedError,
)
from aios_memory.schemas.validate import TENANT_PATTERN

from .revocations import Revocations, RevocationStore
from .state import ISSUED_FILE, SIGNING_KEY_FILE, open_signing_key, rebuilt_state

__all__ = [
    "TokenAuthority",
    "TOKEN_PREFIX",
    "SIGNING_KEY_FILE",
    "ISSUED_FILE",
    "check_tenant",
    "issued_ids",
]

TOKEN_PREFIX = "aimem_"
_MAX_TOKEN_CHARS = 4096
_CLAIMS = {"v", "id", "t", "p", "r", "w", "c", "e", "iat"}
_LABEL = b"aimem-token-v1."

log = logging.getLogger("aios_memory.server")


class TokenAuthority:
    """Makes, checks and revokes the tokens of one data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self._key = open_signing_key(self.data_dir)
        self._store = RevocationStore(self.data_dir, self._key)
        self._lock = threading.Lock()
        # Read once now, so a lost or damaged store is logged when the server starts.
        self._stamp: object = self._store.stamp()
        self._state: Revocations | AuthStateError = self._read_checked()

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
        """A new token and the grant it carries; noted in ``tokens.jsonl``.

        Refused (``AuthStateError``) while the revocation store is lost: the
        server would refuse the token, and a repair would revoke it.
        """
        self.revocations()
        token_id = secrets.token_hex(8)
        grant = Grant(tenant, principal, tiers, write_tiers, clearance, expires, token_id)
        check_tenant(tenant)
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
        state = self._readable_state()
        rows = _issued_rows(path)
        return [{**row, "revoked": state.refuses(row["id"], row["iat"])} for row in rows]

    def _readable_state(self) -> Revocations:
        """The store's state, or for a lost store the one a repair would write (for listing)."""
        state, _ = self._store.read()
        if state is not None:
            return state
        return rebuilt_state(self._store, set())

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
        state = self.revocations()
        if grant.token_id in state.ids:
            raise TokenRevokedError(f"token {grant.token_id} was revoked", token_id=grant.token_id)
        if state.refuses(str(claims["id"]), int(claims["iat"])):
            raise TokenRevokedError(
                f"token {grant.token_id} was made before the revocation store was rebuilt "
                "(aimem token repair); ask for a new one (aimem token create)",
                token_id=grant.token_id,
            )
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
    def revoke(self, token_or_id: str) -> tuple[str, bool]:
        """Revoke a token (given whole or by id): its id, and whether a lost store was rebuilt.

        Works on a damaged store: one bad copy is healed from the other; with both
        lost the store is rebuilt as ``aimem token repair`` does (every token made
        before now refused too), since refusing more is the safe side.
        """
        token_id = (
            self.token_id_of(token_or_id) if token_or_id.startswith(TOKEN_PREFIX) else token_or_id
        )
        known = {row["id"] for row in _issued_rows(self.data_dir / ISSUED_FILE)}
        if token_id is None or token_id not in known:
            raise InvalidValueError(
                f"no token {token_or_id!r} was made with this data "
                "directory; `aimem token list` shows them"
            )
        current, _ = self._store.read()
        rebuilt = current is None
        if current is None:
            current = rebuilt_state(self._store, known)
        self._store.write(current.with_ids({token_id}))
        return token_id, rebuilt

    def revocations(self) -> Revocations:
        """The revocation store's state, re-read when either copy changed (two stats a call);
        ``AuthStateError`` while no copy is valid."""
        stamp = self._store.stamp()
        with self._lock:
            if stamp != self._stamp:
                self._state = self._read_checked()
                self._stamp = stamp
            if isinstance(self._state, AuthStateError):
                raise self._state
            return self._state

    def _read_checked(self) -> Revocations | AuthStateError:
        state, damaged = self._store.read()
        for copy in damaged:
            log.warning("auth: %s is %s; `aimem token repair` rewrites it", copy.path, copy.reason)
        if state is None:
            error = self._store.lost_error(damaged)
            log.error("auth: scoped tokens refused: %s", error.message)
            return error
        return state

    def revoked(self) -> frozenset[str]:
        """Revoked token ids (``AuthStateError`` while the store is lost)."""
        return self.revocations().ids


def issued_ids(data_dir: Path) -> set[str]:
    """The ids of every token noted as made with ``data_dir`` (damaged lines skipped)."""
    return {row["id"] for row in _issued_rows(Path(data_dir) / ISSUED_FILE)}


def _issued_rows(path: Path) -> list[dict[str, Any]]:
    """The notes of issued tokens; a damaged line is skipped (it names no usable token)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_bytes().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("id"), str):
            rows.append(row)
    return rows


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


def check_tenant(tenant: str) -> None:
    """Refuse a tenant name a record or a key store would refuse: the record rule
    (``schemas.validate.TENANT_PATTERN``) and no leading dot (a tenant's key file is
    ``KEYS/tenants/<tenant>.json``, so ``..`` and hidden names are not tenants)."""
    if not re.match(TENANT_PATTERN, tenant) or tenant.startswith("."):
        raise InvalidValueError(
            f"tenant {tenant!r} is not a tenant name: use 1-64 characters of [0-9A-Za-z_.-] "
            "that do not start with '.'",
            field="tenant",
        )


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
