"""How the CLI prints results: stable JSON, or a readable table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from aios_memory.client._results import Hit, Memory
from aios_memory.schemas import canonical_time

from .kit import render_rows

__all__ = ["memory_json", "render_ids", "render_hits", "render_memories", "render_count"]


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
