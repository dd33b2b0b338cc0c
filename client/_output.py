"""How the CLI prints results: stable JSON, or a readable table."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from typing import Any, Callable, Sequence

from ._models import Hit, Memory

__all__ = ["to_json", "memory_json", "render_ids", "render_hits", "render_memories",
           "render_rows", "render_mapping", "render_count"]

_TEXT_WIDTH = 60


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def to_json(value: Any) -> str:
    """``value`` as indented JSON with keys in a stable order."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=_default)


def memory_json(item: Memory | Hit) -> dict[str, Any]:
    """A JSON-ready dict of a ``Memory`` or ``Hit`` (``created_at`` as ISO 8601)."""
    out = asdict(item)
    out["created_at"] = item.created_at.isoformat()
    return out


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False, default=_default) if value else ""
    text = " ".join(str(value).split())
    return text if len(text) <= _TEXT_WIDTH else text[:_TEXT_WIDTH - 3] + "..."


def render_rows(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A plain text table of ``columns`` with a header and a dashed rule."""
    if not rows:
        return "(none)"
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def render_ids(value: dict[str, Any]) -> str:
    """One id per line."""
    return "\n".join(value["ids"])


def render_hits(value: list[dict[str, Any]]) -> str:
    """Hits as a table, best first."""
    return render_rows(value, ("score", "id", "tier", "text", "metadata"))


def render_memories(value: list[dict[str, Any]]) -> str:
    """Memories as a table."""
    return render_rows(value, ("id", "tier", "created_at", "text", "metadata"))


def render_mapping(value: dict[str, Any]) -> str:
    """``key: value`` lines; nested objects as compact JSON."""
    width = max((len(k) for k in value), default=0)
    lines = []
    for key, item in value.items():
        nested = isinstance(item, (dict, list))
        shown = json.dumps(item, default=_default) if nested else _cell(item)
        lines.append(f"{key.ljust(width)}  {shown}")
    return "\n".join(lines)


def render_count(key: str, verb: str) -> Callable[[dict[str, Any]], str]:
    """A renderer printing ``<verb> <n> memories`` from ``value[key]``."""
    def render(value: dict[str, Any]) -> str:
        count = value[key]
        return f"{verb} {count} {'memory' if count == 1 else 'memories'}"
    return render
