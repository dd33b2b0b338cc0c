"""Bearer-token authentication, checked in middleware before any handler runs.

pyarrow's Flight server has no message-size cap, so refusing a caller
before its body is read is the first line of defence.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

import pyarrow.flight as flight

from aios_memory.schemas import AuthenticationError

from ._files import atomic_write_bytes
from ._flight_errors import to_flight_error

__all__ = ["BearerAuthMiddlewareFactory", "resolve_token", "TOKEN_FILE"]

TOKEN_FILE = "token"


class _Authenticated(flight.ServerMiddleware):
    pass


class BearerAuthMiddlewareFactory(flight.ServerMiddlewareFactory):
    """Refuses every call whose ``authorization`` header is not ``Bearer <token>``."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self._expected = f"Bearer {token}".encode()

    def start_call(self, info: flight.CallInfo, headers: dict) -> flight.ServerMiddleware:
        values = headers.get("authorization") or headers.get("Authorization") or []
        presented = values[0].encode() if values and isinstance(values[0], str) else b""
        if not presented:
            raise to_flight_error(AuthenticationError(
                "no token: pass --token or set AIMEM_TOKEN (the server prints where its token is)"))
        if not hmac.compare_digest(presented, self._expected):
            raise to_flight_error(AuthenticationError(
                "wrong token: pass --token or AIMEM_TOKEN with the one in the server's DATA/token"))
        return _Authenticated()


def resolve_token(data_dir: Path, given: str | None) -> tuple[str, Path | None]:
    """The token to require and the file it is kept in (None when it was given).

    With no token given, the one in ``DATA/token`` is used, or a new one is
    made and kept there with mode 0600.
    """
    if given:
        return given, None
    path = Path(data_dir) / TOKEN_FILE
    if path.exists():
        token = path.read_text().strip()
        if token:
            return token, path
    token = secrets.token_urlsafe(32)
    atomic_write_bytes(path, token.encode() + b"\n", mode=0o600)
    os.chmod(path, 0o600)
    return token, path
