"""A readable account of a session, written back from what consolidation kept.

The account is assembled, not generated: the summary, then the facts (each with the
turns it cites), then the raw turns where they are still kept. Nothing in it is
new, so it can be trusted as far as the summary and facts can; it says so in its
first line, which marks it as reconstructed and counts what it was made from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aios_memory.schemas import FACT_KIND, SUMMARY_KIND, NotFoundError

from .sessions import StoredTurn, parse_time

__all__ = ["Reconstruction", "reconstruct"]


@dataclass
class Reconstruction:
    """A session's account: ``text``, and the ids it was made from."""

    session: str
    text: str
    summary_id: str | None
    fact_ids: list[str] = field(default_factory=list)
    turn_ids: list[str] = field(default_factory=list)
    reconstructed: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "reconstructed": self.reconstructed,
            "summary_id": self.summary_id,
            "facts": len(self.fact_ids),
            "turns": len(self.turn_ids),
            "text": self.text,
        }


def reconstruct(
    session: str,
    consolidated: list[dict[str, Any]],
    turns: list[StoredTurn],
) -> Reconstruction:
    """The account of ``session`` from its summary and fact rows and its remaining turns."""
    summary = next((r for r in consolidated if r["kind"] == SUMMARY_KIND), None)
    facts = [r for r in consolidated if r["kind"] == FACT_KIND]
    if summary is None and not turns:
        raise NotFoundError(
            f"session {session!r} has no summary and no turns here", session=session
        )
    numbers = {t.id: i for i, t in enumerate(turns, 1)}
    when = parse_time(summary["metadata"].get("aimem:occurred_at")) if summary else None
    lines = [
        f"[reconstructed] Session {session}"
        + (f" ({when.date().isoformat()})" if when else "")
        + f" from {'a summary, ' if summary else ''}{len(facts)} facts and {len(turns)} kept turns."
    ]
    if summary is not None:
        lines += ["", str(summary["text"])]
    if facts:
        lines += ["", "Facts:"]
        for fact in sorted(facts, key=lambda f: str(f["text"])):
            cited = [
                numbers[i] for i in fact["metadata"].get("aimem:sources") or [] if i in numbers
            ]
            mark = f" (turns {', '.join(map(str, cited))})" if cited else ""
            lines.append(f"- {fact['text']}{mark}")
    if turns:
        lines += ["", "Turns:"] + [f"[{numbers[t.id]}] {t.text}" for t in turns]
    return Reconstruction(
        session,
        "\n".join(lines),
        summary["id"] if summary else None,
        [f["id"] for f in facts],
        [t.id for t in turns],
    )
