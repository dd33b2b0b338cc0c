"""``client_options``: the connection options of commands that talk to a memory server."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from aios_memory.client.client import DEFAULT_TIMEOUT, DEFAULT_URI, MemoryClient
from aios_memory.schemas import DEFAULT_TENANT

from .kit import read_token, tls_client_options

__all__ = ["client_options"]


def client_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add the connection options; the command gets an open ``MemoryClient`` as ``mem``."""

    @click.option(
        "--server",
        envvar="AIMEM_SERVER",
        default=DEFAULT_URI,
        show_default=True,
        help="Memory server address [env AIMEM_SERVER].",
    )
    @click.option("--token", envvar="AIMEM_TOKEN", help="Bearer token [env AIMEM_TOKEN].")
    @click.option(
        "--token-file",
        envvar="AIMEM_TOKEN_FILE",
        type=click.Path(dir_okay=False),
        help="File holding the token, e.g. DATA/token of `aimem serve` [env AIMEM_TOKEN_FILE].",
    )
    @click.option(
        "--tenant",
        envvar="AIMEM_TENANT",
        help="Whose memories to use [env AIMEM_TENANT]; default: the token's own tenant "
        f"when it is scoped to one, else {DEFAULT_TENANT!r}.",
    )
    @click.option(
        "--timeout",
        type=click.FloatRange(min=0, min_open=True),
        default=DEFAULT_TIMEOUT,
        show_default=True,
        help="Seconds per call.",
    )
    @tls_client_options("--tls-", "AIMEM_TLS_", "the server")
    @functools.wraps(fn)
    def wrapper(
        server: str,
        token: str | None,
        token_file: str | None,
        tenant: str | None,
        timeout: float,
        tls_ca: str | None,
        tls_client_cert: str | None,
        tls_client_key: str | None,
        **kwargs: Any,
    ) -> Any:
        secret = read_token(token, token_file)
        with MemoryClient(
            server,
            secret or "",
            timeout=timeout,
            tenant=tenant,
            tls_root_certs=tls_ca,
            tls_cert=tls_client_cert,
            tls_key=tls_client_key,
        ) as mem:
            return fn(mem=mem, **kwargs)

    return wrapper
