"""How the CLI prints results: stable JSON, or a readable table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from aios_memory.client._results import Hit, Memory
from aios_memory.schemas import canonical_time

from .kit import render_rows

__all__ = [
    "memory_json",
    "render_ids",
    "render_hits",
    "render_memories",
    "render_count",
    "render_compaction",
]


def memory_json(item: Memory | Hit) -> dict[str, Any]:
    """A JSON-ready dict of a ``Memory`` or ``Hit`` (``created_at`` and ``occurred_at`` as
    ISO 8601; ``occurred_at`` null when the memory does not say)."""
    out = asdict(item)
    out["created_at"] = item.created_at.isoformat()
    out["occurred_at"] = None if item.occurred_at is None else canonical_time(item.occurred_at)
    return out


def render_ids(value: dict[str, Any]) -> str:
    """One id per line."""
    return "\n".join(value["ids"])


def render_hits(value: list[dict[str, Any]]) -> str:
    """Hits as a table, best first."""
    return render_rows(value, ("score", "id", "tier", "text", "metadata"))


def render_memories(value: list[dict[str, Any]]) -> str:
    """Memories as a table."""
    return render_rows(value, ("id", "tier", "created_at", "text", "metadata"))


def render_count(key: str, verb: str) -> Callable[[dict[str, Any]], str]:
    """A renderer printing ``<verb> <n> memories`` from ``value[key]``."""

    def render(value: dict[str, Any]) -> str:
        count = value[key]
        return f"{verb} {count} {'memory' if count == 1 else 'memories'}"

    return render


def render_compaction(report: dict[str, Any]) -> str:
    """``aimem compact``: before and after, or why nothing was rewritten."""
    if not report.get("compacted"):
        waste = report.get("waste") or {}
        line = f"not compacted: {report.get('reason', 'nothing to do')}"
        if waste:
            line += (
                f"\nthe database is {_mb(waste['file_bytes'] + waste['wal_bytes'])}, "
                f"about {waste['fraction']:.0%} of it dead space"
            )
        return line
    before, after = report["before_bytes"], report["after_bytes"]
    saved = 1 - after / before if before else 0.0
    return (
        f"compacted {_mb(before)} to {_mb(after)} ({saved:.0%} given back) in "
        f"{report['seconds']:.1f} s; writes paused {report['writes_paused_seconds']:.2f} s"
    )


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
