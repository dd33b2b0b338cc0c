"""Authentication, checked in middleware before any handler runs.

pyarrow's Flight server has no message-size cap, so refusing a caller
before its body is read is the first line of defence. Two kinds of bearer
token are accepted: the owner token of the data directory (``DATA/token`` or
``--token``: every tenant, every right) and signed tokens made by
``aimem token create`` (one tenant, see ``tokens``). Both files are checked
when they are read (``key_files``). The handler reads the
caller's ``Grant`` from this middleware and enforces it (``schemas.rights``).
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path

import pyarrow.flight as flight

from aios_memory.flight_server._files import atomic_write_bytes
from aios_memory.flight_server._flight_errors import to_flight_error
from aios_memory.schemas import OWNER, AuthenticationError, Grant

from .audit import AuditLog
from .key_files import check_header_token, new_owner_token, read_owner_token
from .tokens import TokenAuthority

__all__ = ["TokenAuthMiddlewareFactory", "Caller", "resolve_token", "TOKEN_FILE"]

TOKEN_FILE = "token"


class Caller(flight.ServerMiddleware):
    """The authenticated caller of one call: its grant."""

    def __init__(self, grant: Grant) -> None:
        self.grant = grant


class TokenAuthMiddlewareFactory(flight.ServerMiddlewareFactory):
    """Refuses every call without a valid ``authorization: Bearer <token>`` header."""

    def __init__(self, owner_token: str, authority: TokenAuthority, audit: AuditLog) -> None:
        super().__init__()
        self._owner = f"Bearer {owner_token}".encode()
        self._authority, self._audit = authority, audit

    def start_call(self, info: flight.CallInfo, headers: dict) -> flight.ServerMiddleware:
        values = headers.get("authorization") or headers.get("Authorization") or []
        presented = values[0] if values and isinstance(values[0], str) else ""
        if hmac.compare_digest(presented.encode(), self._owner):
            return Caller(OWNER)
        try:
            return Caller(self._grant(presented))
        except AuthenticationError as exc:
            token_id = self._authority.token_id_of(presented[7:]) if presented else None
            self._audit.record(
                "denied", None, _method(info), reason=exc.message, code=exc.code, token_id=token_id
            )
            raise to_flight_error(exc) from None

    def _grant(self, presented: str) -> Grant:
        if not presented:
            raise AuthenticationError(
                "no token: pass --token or set AIMEM_TOKEN (the server prints where its token is)"
            )
        if not presented.startswith("Bearer "):
            raise AuthenticationError("the authorization header must be 'Bearer <token>'")
        token = presented[len("Bearer ") :]
        if not token.startswith("aimem_"):
            raise AuthenticationError(
                "wrong token: pass --token or AIMEM_TOKEN with the one in the server's DATA/token, "
                "or a token from `aimem token create`"
            )
        return self._authority.verify(token)


def _method(info: flight.CallInfo) -> str:
    return str(info.method).rsplit(".", 1)[-1].lower()


def resolve_token(data_dir: Path, given: str | None) -> tuple[str, Path | None]:
    """The token to require and the file it is kept in (None when it was given).

    With no token given, the one in ``DATA/token`` is used (checked: a damaged
    or cut file is refused with ``AuthStateError`` naming it and the fix), or a
    new one, carrying its own checksum, is made and kept there with mode 0600.
    """
    if given:
        return check_header_token(given, "given by --token/AIMEM_TOKEN"), None
    path = Path(data_dir) / TOKEN_FILE
    if path.exists():
        return read_owner_token(path), path
    token = new_owner_token()
    atomic_write_bytes(path, token.encode() + b"\n", mode=0o600)
    os.chmod(path, 0o600)
    return token, path
