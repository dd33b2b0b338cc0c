"""Which version of a memory wins: pure logic, no I/O.

A write from a client (hlc 0) gets a fresh hlc from this replica's clock,
unless it repeats the stored current version exactly (a retry), which is
acknowledged with the stored hlc and not written again. A write from another
replica (hlc set) wins only with a higher ``(hlc, origin)``; the clock
observes it either way so that later local writes order after it. A client's
sealed write (``client.sealing``) carries its own version and is decided the
same way: a retry is acknowledged with the same hlc, and a newer stored
version with its own (the client then seals again past it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aios_memory.schemas import HybridClock, TierPolicyError

__all__ = ["Current", "Decision", "decide"]

# Fields that make two client writes of the same id the same memory.
SAME_MEMORY_FIELDS = (
    "content_hash",
    "tier",
    "privacy",
    "metadata",
    "kind",
    "session",
    "agent",
    "deleted",
)


@dataclass(frozen=True)
class Current:
    """The stored current version of an id, as far as deciding needs it."""

    seq: int
    hlc: int
    origin: str
    tier: str
    embed_model: str | None
    fields: tuple[Any, ...]  # values of SAME_MEMORY_FIELDS
    encoding: tuple[Any, ...] = ()  # (codec, dict_id)


@dataclass(frozen=True)
class Decision:
    """``write`` the row with ``hlc``/``origin``, replacing ``replaces`` (a Current) if any."""

    write: bool
    hlc: int
    origin: str
    replaces: Current | None


def decide(
    row: dict[str, Any],
    current: Current | None,
    clock: HybridClock,
    replica_id: str,
    sync_tiers: tuple[str, ...] = (),
    reencode: bool = False,
) -> Decision:
    """The decision for one incoming row given the stored current version.

    A client may not move a memory from a tier that syncs to one that does not:
    the cloud would keep the old version and no later round could tell it.
    """
    if reencode:
        return _decide_reencode(row, current, clock, replica_id)
    # Also for versioned rows: a client's sealed write carries its hlc (a sync round only
    # carries synced tiers, so this never refuses a replica's version).
    if current is not None and current.tier in sync_tiers and row["tier"] not in sync_tiers:
        raise TierPolicyError(
            f"memory {row['id']} is in {current.tier!r}, which syncs; it cannot move to "
            f"{row['tier']!r}, which does not. Forget it and remember it anew there.",
            memory_id=row["id"],
            tier=row["tier"],
        )
    if row["hlc"] == 0:
        if current is not None and current.fields == tuple(row[f] for f in SAME_MEMORY_FIELDS):
            return Decision(False, current.hlc, current.origin, None)
        return Decision(True, clock.now(), replica_id, current)
    clock.observe(row["hlc"])
    origin = row["origin"] or replica_id
    if current is not None and (current.hlc, current.origin) >= (row["hlc"], origin):
        return Decision(False, current.hlc, current.origin, None)
    return Decision(True, row["hlc"], origin, current)


def _decide_reencode(
    row: dict[str, Any], current: Current | None, clock: HybridClock, replica_id: str
) -> Decision:
    same = (
        current is not None
        and row["hlc"] == 0
        and current.fields == tuple(row[f] for f in SAME_MEMORY_FIELDS)
    )
    if current is None or not same:
        return Decision(False, 0, "", None)  # edited, forgotten or gone: acked with hlc 0
    if current.encoding == (row["codec"], row["dict_id"]):
        return Decision(False, current.hlc, current.origin, None)  # a retry of a done one
    return Decision(True, clock.now(), replica_id, current)
