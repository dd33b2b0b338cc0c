"""``aimem token``: make, list and revoke the access tokens of a server's data directory.

Run on the machine that holds the data directory (it holds the signing key).
Every change of rights goes to the audit log.
"""

from __future__ import annotations

import getpass
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from aios_memory.client.cli.kit import CONTEXT, output_options, parse_duration, render_rows
from aios_memory.flight_server.auth.access import describe_grant, iso_utc
from aios_memory.flight_server.auth.audit import AuditLog
from aios_memory.flight_server.auth.state import repair as repair_state
from aios_memory.flight_server.auth.tokens import TokenAuthority, check_tenant, issued_ids
from aios_memory.schemas import MAX_CLEARANCE, PRIVACY_LEVELS, TIERS, InvalidValueError

__all__ = ["token"]

_DATA = click.option(
    "--data",
    "data_dir",
    required=True,
    envvar="AIMEM_DATA",
    type=click.Path(file_okay=False, path_type=Path),
    help="The server's data directory (it holds the signing key) [env AIMEM_DATA].",
)
_LEVELS = ", ".join(f"{n} {name}" for n, name in PRIVACY_LEVELS.items())


def _tier_list(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    unknown = [n for n in names if n not in TIERS]
    if unknown:
        raise click.BadParameter(f"unknown tiers {unknown}; tiers are {', '.join(TIERS)}")
    return names


@click.group(context_settings=CONTEXT)
def token() -> None:
    """Make, list and revoke access tokens for agents, devices and apps.

    A token belongs to one tenant and one principal; it names the tiers it may
    read and write, its clearance (the highest privacy level it sees) and when
    it expires. The server checks it on every call; revocation takes effect at
    once, even while the server runs.

    \b
    Example:
        aimem token create --data ~/.aimem --tenant alice --principal calendar-agent \\
            --tiers working,long_term --clearance 1 --expires 30d
        aimem token list --data ~/.aimem
        aimem token revoke --data ~/.aimem 3f2a9c0d1e4b5a67
    """


def _render_created(value: dict[str, Any]) -> str:
    return (
        f"{value['token']}\n(token {value['token_id']} for {value['tenant']}/"
        f"{value['principal']}: read {','.join(value['tiers']) or '-'}, write "
        f"{','.join(value['write_tiers']) or '-'}, clearance {value['clearance']}, "
        f"expires {value['expires_at'] or 'never'}; shown once, keep it secret)"
    )


def _render_revoked(value: dict[str, Any]) -> str:
    line = f"revoked token {value['token_id']}"
    if value["store_rebuilt"]:
        line += (
            "\n(the revocation store was lost and is rebuilt: every scoped token made before "
            "now is refused; make new ones with `aimem token create`)"
        )
    return line


def _render_repaired(value: dict[str, Any]) -> str:
    line = f"signing key {value['signing_key']}; revocation store {value['revocations']} "
    line += f"({value['revoked']} revoked)"
    if value["refused_before"]:
        line += f"; every scoped token made before {value['refused_before']} is refused"
    return line


def _tenant(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        check_tenant(value)
    except InvalidValueError as exc:
        raise click.BadParameter(exc.message) from None
    return value


@token.command("create", context_settings=CONTEXT)
@_DATA
@click.option(
    "--tenant",
    required=True,
    callback=_tenant,
    help="The user whose memories the token opens (1-64 of [0-9A-Za-z_.-]).",
)
@click.option(
    "--principal",
    required=True,
    help="Who acts with it: an agent, device or app name, e.g. calendar-agent.",
)
@click.option(
    "--tiers",
    callback=_tier_list,
    default=",".join(TIERS),
    show_default=True,
    help="Tiers it may read, comma-separated.",
)
@click.option(
    "--write-tiers",
    callback=_tier_list,
    help="Tiers it may write and forget in (default: the same as --tiers; "
    "'' for a read-only token).",
)
@click.option(
    "--clearance",
    type=click.IntRange(0, MAX_CLEARANCE),
    default=1,
    show_default=True,
    help=f"Highest privacy level it may see ({_LEVELS}).",
)
@click.option(
    "--expires",
    callback=parse_duration,
    default="90d",
    show_default=True,
    help="Lifetime, e.g. 12h, 30d; 0 never expires.",
)
@output_options(_render_created)
def create(
    data_dir: Path,
    tenant: str,
    principal: str,
    tiers: tuple[str, ...],
    write_tiers: tuple[str, ...] | None,
    clearance: int,
    expires: timedelta,
) -> dict[str, Any]:
    """Make a token; it is printed once and never stored.

    \b
    Example:
        aimem token create --data ~/.aimem --tenant alice --principal phone \\
            --tiers long_term,shared --clearance 3 --expires 365d --json
    """
    expires_at = time.time() + expires.total_seconds() if expires.total_seconds() else None
    secret, grant = TokenAuthority(data_dir).create(
        tenant,
        principal,
        tiers,
        tiers if write_tiers is None else write_tiers,
        clearance,
        expires_at,
    )
    AuditLog(data_dir).record(
        "token-created",
        getpass.getuser(),
        "token create",
        tenant,
        "granted by the operator",
        token_id=grant.token_id,
        to=principal,
        tiers=list(grant.tiers),
        write_tiers=list(grant.write_tiers),
        clearance=clearance,
        expires=expires_at,
    )
    return {
        "token": secret,
        **describe_grant(grant),
        "expires_at": None if expires_at is None else _iso(expires_at),
    }


@token.command("list", context_settings=CONTEXT)
@_DATA
@output_options(
    lambda rows: render_rows(
        rows,
        ("id", "tenant", "principal", "tiers", "write_tiers", "clearance", "expires_at", "revoked"),
    )
)
def list_(data_dir: Path) -> list[dict[str, Any]]:
    """List every token made with this data directory (never their secrets).

    \b
    Example:
        aimem token list --data ~/.aimem --json
    """
    return [
        {
            "id": row["id"],
            "tenant": row["t"],
            "principal": row["p"],
            "tiers": row["r"],
            "write_tiers": row["w"],
            "clearance": row["c"],
            "expires_at": None if row["e"] is None else _iso(row["e"]),
            "created_at": _iso(row["iat"]),
            "revoked": row["revoked"],
        }
        for row in TokenAuthority(data_dir).issued()
    ]


@token.command("revoke", context_settings=CONTEXT)
@_DATA
@click.argument("token_or_id")
@output_options(_render_revoked)
def revoke(data_dir: Path, token_or_id: str) -> dict[str, Any]:
    """Revoke a token, given whole or by its id; the server refuses it from its next call.

    Works on a damaged revocation store too: a damaged copy is rewritten from
    the other; if both are lost the store is rebuilt as `aimem token repair`
    does, which also refuses every token made before now.

    \b
    Example:
        aimem token revoke --data ~/.aimem 3f2a9c0d1e4b5a67
    """
    authority = TokenAuthority(data_dir)
    token_id, rebuilt = authority.revoke(token_or_id)
    tenant = next(row["t"] for row in authority.issued() if row["id"] == token_id)
    AuditLog(data_dir).record(
        "token-revoked",
        getpass.getuser(),
        "token revoke",
        tenant,
        "revoked by the operator",
        token_id=token_id,
    )
    return {"token_id": token_id, "revoked": True, "store_rebuilt": rebuilt}


@token.command("repair", context_settings=CONTEXT)
@_DATA
@click.option(
    "--new-key",
    is_flag=True,
    help="When signing.key is missing or damaged and no backup exists: make a new one "
    "(every scoped token made before must be made again).",
)
@output_options(_render_repaired)
def repair(data_dir: Path, new_key: bool) -> dict[str, Any]:
    """Check and repair the signing key and the revocation store, losing no revocation.

    A damaged copy of the store is rewritten from the other. If both copies are
    lost, the store is rebuilt from every id any file still names plus every
    token made here, and every scoped token made before now is refused: make
    new ones with `aimem token create`. Restoring the files from a backup
    keeps the tokens working instead.

    \b
    Example:
        aimem token repair --data ~/.aimem
    """
    done = repair_state(data_dir, new_key, issued_ids(data_dir))
    if done["signing_key"] != "ok" or done["revocations"] != "ok":
        AuditLog(data_dir).record(
            "auth-repaired",
            getpass.getuser(),
            "token repair",
            None,
            "repaired by the operator",
            signing_key=done["signing_key"],
            revocations=done["revocations"],
        )
    before = done["refused_before"]
    return {**done, "refused_before": None if before is None else _iso(before)}


_iso = iso_utc
