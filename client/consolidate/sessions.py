"""The sessions a tier holds, read once, and what consolidation already wrote for them.

A session is every live ``text`` memory sharing a ``session`` value in the tier
being consolidated (memories without a session are not consolidated: nothing
groups them). Its digest names exactly its turns (ids and content hashes) and the
settings that shape the result, so an unchanged session is recognised without a
model call, and a session that gained or lost a turn is consolidated again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

from aios_memory.schemas import (
    CODEC_SEALED,
    CONSOLIDATED_SESSION_KEY,
    DEFAULT_KIND,
    FACT_KIND,
    OCCURRED_AT_KEY,
    SUMMARY_KIND,
)

__all__ = [
    "SessionTurns",
    "Consolidated",
    "group_sessions",
    "unopened",
    "consolidated_state",
    "parse_time",
    "metadata_of",
]

DIGEST_KEY = "aimem:digest"


@dataclass
class StoredTurn:
    """One raw memory of a session, decoded."""

    id: str
    text: str
    speaker: str | None
    privacy: int
    created_at: datetime
    occurred_at: datetime | None
    content_hash: bytes
    metadata: dict[str, Any]
    hlc: int = 0


@dataclass
class SessionTurns:
    """A session's live raw memories, oldest first."""

    session: str
    tier: str
    turns: list[StoredTurn] = field(default_factory=list)

    @property
    def privacy(self) -> int:
        """The highest privacy of its turns: what everything made from them inherits."""
        return max(t.privacy for t in self.turns)

    @property
    def last_write(self) -> datetime:
        return max(t.created_at for t in self.turns)

    @property
    def happened(self) -> datetime:
        """When the session happened: its turns' latest ``occurred_at``, else when stored."""
        times = [t.occurred_at for t in self.turns if t.occurred_at is not None]
        return max(times) if times else self.last_write

    @property
    def base_date(self) -> date:
        return self.happened.date()

    def shared_metadata(self) -> dict[str, Any]:
        """User metadata every turn carries alike (``conversation``...): the results inherit it."""
        first = self.turns[0].metadata
        return {
            key: value
            for key, value in first.items()
            if not key.startswith("aimem:")
            and all(t.metadata.get(key) == value for t in self.turns)
        }

    def digest(self, settings: Iterable[Any]) -> str:
        parts = sorted(f"{t.id}:{t.content_hash.hex()}" for t in self.turns)
        parts += [json.dumps(list(settings))]
        return hashlib.blake2b("\n".join(parts).encode(), digest_size=16).hexdigest()


@dataclass
class Consolidated:
    """What consolidation wrote for one session: its summary and its live facts, as rows."""

    summary: dict[str, Any] | None = None
    facts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def digest(self) -> str | None:
        return None if self.summary is None else self.summary["metadata"].get(DIGEST_KEY)


def unopened(rows: Iterable[dict[str, Any]]) -> int:
    """Live sealed rows this device cannot open: their session, like their text, is sealed."""
    return sum(
        1 for r in rows if r["codec"] == CODEC_SEALED and r["text"] is None and not r["deleted"]
    )


def group_sessions(rows: Iterable[dict[str, Any]], tier: str) -> dict[str, SessionTurns]:
    """Live ``text`` rows (``iter_scan`` rows as dicts) grouped by session, oldest first."""
    sessions: dict[str, SessionTurns] = {}
    for row in rows:
        # A sealed row this device cannot open has no text and shows no session (see unopened).
        if row["deleted"] or row["kind"] != DEFAULT_KIND or not row["session"]:
            continue
        group = sessions.setdefault(row["session"], SessionTurns(row["session"], tier))
        metadata = metadata_of(row)
        turn = StoredTurn(
            id=row["id"],
            text=row["text"] or "",
            speaker=row["agent"] or metadata.get("speaker"),
            privacy=row["privacy"],
            created_at=row["created_at"],
            occurred_at=_occurred_at(row, metadata),
            content_hash=row["content_hash"],
            metadata=metadata,
            hlc=row["hlc"],
        )
        group.turns.append(turn)
    for group in sessions.values():
        # Turns written in one put share their times; their clock keeps the order they were sent.
        group.turns.sort(key=lambda t: (t.occurred_at or t.created_at, t.hlc))
    return sessions


def consolidated_state(rows: Iterable[dict[str, Any]]) -> dict[str, Consolidated]:
    """Summaries and live facts in the target tier, by the session they consolidate."""
    state: dict[str, Consolidated] = {}
    for row in _live(rows):
        metadata = row["metadata"] = metadata_of(row)
        session = metadata.get(CONSOLIDATED_SESSION_KEY)
        if not isinstance(session, str):
            continue
        entry = state.setdefault(session, Consolidated())
        if row["kind"] == SUMMARY_KIND:
            entry.summary = row
        elif row["kind"] == FACT_KIND:
            entry.facts.append(row)
    return state


def _occurred_at(row: dict[str, Any], metadata: dict[str, Any]) -> datetime | None:
    # A scan decodes it into its own column already; a row from elsewhere has only the key.
    if isinstance(row.get("occurred_at"), datetime):
        return row["occurred_at"]
    return parse_time(metadata.get(OCCURRED_AT_KEY))


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time (``...Z`` or with an offset) as an aware datetime, else None."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _live(rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    return (r for r in rows if not r["deleted"])


def metadata_of(row: dict[str, Any]) -> dict[str, Any]:
    """A row's metadata as a dict (a scan gives JSON text; a row read before may hold a dict)."""
    value = row.get("metadata")
    if isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value) if value else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}
