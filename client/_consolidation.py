"""``MemoryClient.consolidate`` and ``reconstruct``: the client's side of consolidation.

The work is in ``aios_memory.client.consolidate``; this module turns the client's
keyword arguments into a policy and a model, so ``MemoryClient`` stays a thin front.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any

from aios_memory.schemas import FACT_KIND, SUMMARY_KIND, TIERS

from .consolidate import (
    Chat,
    ConsolidationPolicy,
    ConsolidationReport,
    Consolidator,
    Demotion,
    MemoryApi,
    Reconstruction,
    SessionOutcome,
    group_sessions,
    parse_duration,
    reconstruct,
)
from .consolidate.sessions import metadata_of

__all__ = ["consolidate", "reconstruct_session", "policy_from"]


def policy_from(
    *,
    target_tier: str = "long_term",
    summary_tokens: int = 100,
    max_facts: int = 8,
    demote: str | Demotion | Mapping[str, str | Demotion] | None = None,
    tier: str = "working",
    allow_remote_private: Iterable[str] = (),
) -> ConsolidationPolicy:
    """A policy from ``consolidate``'s keyword arguments (``demote`` alone applies to ``tier``)."""
    if demote is None:
        demotions: dict[str, Demotion] = {}
    elif isinstance(demote, Mapping):
        demotions = {t: _demotion(d) for t, d in demote.items()}
    else:
        demotions = {tier: _demotion(demote)}
    return ConsolidationPolicy(
        target_tier=target_tier,
        summary_tokens=summary_tokens,
        max_facts=max_facts,
        demote=demotions,
        remote_private_tiers=frozenset(allow_remote_private),
    )


def consolidate(
    api: MemoryApi,
    *,
    session: str | None,
    tier: str,
    older_than: timedelta | str | None,
    dry_run: bool,
    llm: Chat | None,
    policy: ConsolidationPolicy,
    progress: Callable[[SessionOutcome, int, int], Any] | None,
    should_stop: Callable[[], bool] | None = None,
) -> ConsolidationReport:
    """Run one consolidation of ``tier`` (see ``MemoryClient.consolidate``)."""
    if isinstance(older_than, str):
        older_than = parse_duration(older_than)
    model: Chat | Callable[[], Chat] = llm if llm is not None else _default_llm
    return Consolidator(api, model, policy).run(
        session=session,
        tier=tier,
        older_than=older_than,
        dry_run=dry_run,
        progress=progress,
        should_stop=should_stop,
    )


def reconstruct_session(api: MemoryApi, session: str) -> Reconstruction:
    """The account of ``session`` from its summary, facts and kept turns (every tier)."""
    consolidated = [
        row
        for kind in (SUMMARY_KIND, FACT_KIND)
        for batch in api.iter_scan(list(TIERS), kind=kind, session=session)
        for row in batch.to_pylist()
        if not row["deleted"]
    ]
    for row in consolidated:
        row["metadata"] = metadata_of(row)
    rows = (
        row
        for batch in api.iter_scan(list(TIERS), kind="text", session=session)
        for row in batch.to_pylist()
    )
    turns = [t for group in group_sessions(rows, "").values() for t in group.turns]
    return reconstruct(session, consolidated, turns)


def _default_llm() -> Chat:
    from .llm import open_llm  # only when a session needs a model: loading one takes seconds

    return open_llm()


def _demotion(value: str | Demotion) -> Demotion:
    return value if isinstance(value, Demotion) else Demotion.parse(value)
