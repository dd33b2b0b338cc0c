"""The CLI kit: what every ``aimem`` command shares, whichever package it lives in.

The server's and the sync daemon's commands use it too, so it imports nothing
of the SDK: options, output, and the small parsers commands have in common.
Commands that talk to a memory server add ``connection.client_options``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click

__all__ = [
    "CONTEXT",
    "read_token",
    "tls_client_options",
    "output_options",
    "json_object",
    "json_default",
    "parse_duration",
    "to_json",
    "render_rows",
    "render_mapping",
]

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
_TEXT_WIDTH = 60


def read_token(
    token: str | None, token_file: str | None, option: str = "--token-file"
) -> str | None:
    """The token given, else the one in ``token_file`` (``option`` names it in errors).

    A token with a character no token has (a damaged file, a pasted space) is
    refused here, naming where it came from, rather than by gRPC as an
    "Illegal header value" on the first call.
    """
    if token:
        return _checked_token(token.strip(), "--token/AIMEM_TOKEN")
    if not token_file:
        return None
    try:
        data = Path(token_file).read_bytes().strip()
    except OSError as exc:
        raise click.ClickException(f"cannot read {option} {token_file}: {exc.strerror}") from None
    return _checked_token(data.decode("latin-1"), f"{option} {token_file}") if data else None


# Tokens are visible ASCII with no spaces: what an HTTP/2 header value may carry.
_TOKEN_TEXT = re.compile(r"^[\x21-\x7e]+$")


def _checked_token(token: str, where: str) -> str:
    if not _TOKEN_TEXT.match(token):
        raise click.ClickException(
            f"the token in {where} has a character no token has (only visible ASCII, no spaces): "
            "it is damaged or not a token; copy it again from the server's DATA/token or from "
            "`aimem token create`"
        )
    return token


def tls_client_options(flags: str, env: str, whose: str) -> Callable[..., Any]:
    """Add ``{flags}ca``, ``{flags}client-cert``, ``{flags}client-key`` (env ``{env}CA`` ...).

    The command gets them as ``{name}ca``, ``{name}client_cert``, ``{name}client_key``
    where ``name`` is ``flags`` without dashes (``tls_ca`` for ``--tls-``).
    """
    file = click.Path(exists=True, dir_okay=False)
    specs = [
        (
            "ca",
            "CA",
            f"PEM CA that signed {whose}'s certificate, for grpc+tls:// "
            "(default: the system's roots)",
        ),
        ("client-cert", "CLIENT_CERT", f"PEM client certificate, when {whose} requires mutual TLS"),
        ("client-key", "CLIENT_KEY", "PEM key of that client certificate"),
    ]

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        for suffix, variable, text in reversed(specs):
            fn = click.option(
                f"{flags}{suffix}",
                envvar=f"{env}{variable}",
                type=file,
                help=f"{text} [env {env}{variable}].",
            )(fn)
        return fn

    return decorate


def json_default(value: Any) -> Any:
    """The `default` of `json.dumps` for what results hold: datetimes as ISO 8601, bytes as hex."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def to_json(value: Any) -> str:
    """``value`` as indented JSON with keys in a stable order."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=json_default)


def output_options(render: Callable[[Any], str]) -> Callable[..., Any]:
    """Add ``--json``; the command returns a JSON-ready value and ``render`` draws its table."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
        @functools.wraps(fn)
        def wrapper(as_json: bool, **kwargs: Any) -> None:
            value = fn(**kwargs)
            click.echo(to_json(value) if as_json else render(value))

        return wrapper

    return decorate


def json_object(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """A click callback: the option's value parsed as a JSON object (None stays None)."""
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise click.BadParameter('must be a JSON object, e.g. \'{"topic": "food"}\'')
    return parsed


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> timedelta | None:
    """A click callback: ``30d``, ``12h``, ``90m`` or seconds as a timedelta (None stays None)."""
    if value is None:
        return None
    found = _DURATION.match(value.strip())
    if not found:
        raise click.BadParameter("write a number with s, m, h or d, e.g. 30d or 12h")
    return timedelta(seconds=float(found.group(1)) * _UNITS[found.group(2)])


def render_rows(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A plain text table of ``columns`` with a header and a dashed rule."""
    if not rows:
        return "(none)"
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def render_mapping(value: dict[str, Any]) -> str:
    """``key: value`` lines; nested objects as compact JSON."""
    width = max((len(k) for k in value), default=0)
    lines = []
    for key, item in value.items():
        nested = isinstance(item, (dict, list))
        shown = json.dumps(item, default=json_default) if nested else _cell(item)
        lines.append(f"{key.ljust(width)}  {shown}")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False, default=json_default) if value else ""
    text = " ".join(str(value).split())
    return text if len(text) <= _TEXT_WIDTH else text[: _TEXT_WIDTH - 3] + "..."
