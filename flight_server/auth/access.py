"""The server's side of access control: from a call's grant to what it may touch.

The rules themselves live in ``schemas.rights``; this module applies them to
Flight calls and record batches.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from aios_memory.schemas import (
    MAX_CLEARANCE,
    READERS_KEY,
    AuthenticationError,
    Grant,
    View,
    check_readers,
)

__all__ = [
    "grant_of",
    "who",
    "read_view",
    "check_rows",
    "check_sync",
    "check_reader_lists",
    "public_stats",
    "describe_grant",
]

# Server-wide facts that say nothing about one tenant; a scoped caller sees only these.
_SCOPED_STATS = ("tenant", "tiers", "memories", "embed_models", "replica_id", "embedder")


def grant_of(context: Any) -> Grant:
    """The grant the auth middleware attached to this call."""
    caller = context.get_middleware("auth")
    if caller is None:  # every call passes the middleware; refuse rather than assume
        raise AuthenticationError("the call carries no authenticated caller")
    return caller.grant


def who(grant: Grant) -> str:
    return "owner" if grant.is_owner else f"{grant.tenant}/{grant.principal}"


def read_view(grant: Grant, tenant: str, tier: str | list[str] | None) -> View:
    """The caller's view of ``tenant``, refusing outright a tier it may not read."""
    view = grant.read_view(tenant)
    asked = [] if tier is None else [tier] if isinstance(tier, str) else tier
    grant.check_tiers(view, asked, "read")
    return view


def check_rows(batch: pa.RecordBatch, grant: Grant) -> None:
    """Raise unless ``grant`` may write every row of ``batch`` (tenant, tier, privacy)."""
    if grant.is_owner:
        return
    columns = (batch.column(c).to_pylist() for c in ("tenant", "tier", "privacy"))
    seen: set[tuple[str, str, int]] = set()
    for row, (tenant, tier, privacy) in enumerate(zip(*columns, strict=True)):
        if (tenant, tier, privacy) not in seen:
            grant.check_write(tenant, tier, privacy, row=row)
            seen.add((tenant, tier, privacy))


def check_reader_lists(batch: pa.RecordBatch) -> None:
    """Reader lists only on shared records, and well formed (``schemas.rights``)."""
    metadata = batch.column("metadata").to_pylist()
    tiers = batch.column("tier").to_pylist()
    for row, text in enumerate(metadata):
        if text is not None and READERS_KEY in text:
            check_readers(json.loads(text), tiers[row], row)


def check_sync(grant: Grant, tenant: str, tiers: Iterable[str]) -> None:
    """A sync round reads and writes whole tiers: it needs them all, at full clearance."""
    view = grant.write_view(tenant)
    tiers = list(tiers)
    grant.check_tiers(view, tiers, "sync")
    if view.max_privacy < MAX_CLEARANCE:
        raise grant.denied(
            "sync",
            tenant,
            f"a sync round carries every privacy level; its "
            f"clearance is {grant.clearance}, a sync needs {MAX_CLEARANCE}",
        )


def public_stats(stats: dict[str, Any], view: View, grant: Grant) -> dict[str, Any]:
    """``stats`` as a caller may see it: the owner all of it, anyone else the counts of its
    view (already filtered by the store) and nothing about the server or other tenants."""
    if grant.is_owner:
        return stats
    keep = _SCOPED_STATS if view.reader is None else ("tenant", "tiers", "memories")
    scoped = {k: v for k, v in stats.items() if k in keep}
    scoped["tiers"] = {t: v for t, v in stats["tiers"].items() if t in view.tiers}
    return scoped


def describe_grant(grant: Grant) -> dict[str, Any]:
    """The grant as ``whoami`` shows it: ``expires`` as ISO 8601 UTC (None: never), and the
    same moment as epoch seconds under ``expires_epoch`` for programs."""
    described = grant.describe()
    epoch = described["expires"]
    described["expires"] = None if epoch is None else iso_utc(epoch)
    described["expires_epoch"] = epoch
    return described


def iso_utc(moment: float) -> str:
    """``moment`` (epoch seconds) as ISO 8601 UTC to the second, e.g. 2026-01-31T12:00:00Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))
