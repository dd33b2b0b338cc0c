"""Which tiers leave the device: the one place the rule lives.

``core`` and ``working`` stay on the device unless the user's server is
started with them in its sync tiers; ``long_term`` and ``shared`` travel both
ways. A server started as a ``cloud`` endpoint stores only its sync tiers and
refuses any other record, from a client or from a sync; a ``device`` server
stores every tier and offers only its sync tiers to a sync round.
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import TierPolicyError, UnknownTierError
from .record import SYNCED_TIERS, TIERS

__all__ = ["DEFAULT_SYNC_TIERS", "SERVER_ROLES", "parse_sync_tiers", "check_tiers_allowed"]

DEFAULT_SYNC_TIERS: tuple[str, ...] = SYNCED_TIERS
SERVER_ROLES = ("device", "cloud")


def parse_sync_tiers(tiers: Iterable[str] | None) -> tuple[str, ...]:
    """The sync tiers in tier order, defaulting to ``DEFAULT_SYNC_TIERS``; unknown names raise."""
    if tiers is None:
        return DEFAULT_SYNC_TIERS
    chosen = set(tiers)
    for name in chosen - set(TIERS):
        raise UnknownTierError(f"unknown tier {name!r}; tiers are {', '.join(TIERS)}", tier=name)
    if not chosen:
        raise TierPolicyError("at least one tier must sync")
    return tuple(t for t in TIERS if t in chosen)


def check_tiers_allowed(requested: Iterable[str], allowed: Iterable[str], what: str) -> None:
    """Raise TierPolicyError naming the first tier in ``requested`` outside ``allowed``."""
    allowed = tuple(allowed)
    for tier in requested:
        if tier not in allowed:
            raise TierPolicyError(
                f"tier {tier!r} is not carried by {what} (it carries {', '.join(allowed)}); "
                f"to sync it, start the servers with --sync-tier {tier}",
                tier=tier,
            )
