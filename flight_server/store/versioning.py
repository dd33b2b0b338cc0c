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

import pyarrow as pa

from aios_memory.schemas import HybridClock, TierPolicyError

__all__ = ["Current", "Decision", "decide", "PutPlan", "Written", "plan_put"]

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


Written = tuple[int, int, int, str]
"""A version a put writes: (row number in the put, seq, hlc, origin)."""


@dataclass
class PutPlan:
    """What one put writes, decided row by row against the stored current versions.

    Attributes
    ----------
    acks
        ``(id, hlc)`` of every row of the put, in its order.
    written
        The versions to write, in seq order (at most one per id: the put's last).
    replaced
        ``((tenant, id), stored current version)`` of the stored rows they replace.
    last_seq
        The highest seq given out.
    """

    acks: list[tuple[str, int]]
    written: list[Written]
    replaced: list[tuple[tuple[str, str], Current]]
    last_seq: int


def plan_put(
    table: pa.Table,
    currents: dict[tuple[str, str], Current],
    clock: HybridClock,
    replica_id: str,
    sync_tiers: tuple[str, ...],
    reencode: bool,
    last_seq: int,
) -> PutPlan:
    """Decide every row of ``table`` (see ``decide``); new seqs follow ``last_seq``.

    ``currents`` (the stored current versions of the put's ids) follows the put's
    own rows as they are decided, so a later row of an id is decided against an
    earlier one.
    """
    rows = table.select(
        ["id", "tenant", "hlc", "origin", "codec", "dict_id", *SAME_MEMORY_FIELDS]
    ).to_pylist()
    first_new_seq, seq = last_seq + 1, last_seq
    written: dict[tuple[str, str], Written] = {}
    plan = PutPlan([], [], [], last_seq)
    for i, row in enumerate(rows):
        key = (row["tenant"], row["id"])
        decision = decide(row, currents.get(key), clock, replica_id, sync_tiers, reencode)
        plan.acks.append((row["id"], decision.hlc))
        if not decision.write:
            continue
        seq += 1
        old = decision.replaces
        if old is not None and old.seq < first_new_seq:
            plan.replaced.append((key, old))  # a stored row; one from this put is just dropped
        written[key] = (i, seq, decision.hlc, decision.origin)
        currents[key] = _current_after(row, seq, decision, table, i)
    plan.written = sorted(written.values(), key=lambda w: w[1])
    plan.last_seq = seq
    return plan


def _current_after(
    row: dict[str, Any], seq: int, decision: Decision, table: pa.Table, i: int
) -> Current:
    return Current(
        seq,
        decision.hlc,
        decision.origin,
        row["tier"],
        table.column("embed_model")[i].as_py(),
        tuple(row[f] for f in SAME_MEMORY_FIELDS),
        (row["codec"], row["dict_id"]),
    )


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
