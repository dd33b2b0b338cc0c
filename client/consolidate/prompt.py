"""What the model is asked for one session, and the shape its answer must have.

One call a session writes both the summary and the facts: on 2 cores a 1.5B model
reads about 40 tokens a second, so reading the session twice would double the cost.
The turns are numbered so a fact can cite them, and every relative date carries
its resolved date (``dates.annotate``) for the model to copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from pydantic import BaseModel, Field

from .dates import annotate, day_label

__all__ = [
    "KEY_EXAMPLE",
    "PROMPT_VERSION",
    "FactDraft",
    "SessionDigest",
    "Turn",
    "messages",
    "answer_budget",
]

# Part of every summary's digest: a new prompt re-consolidates what the old one wrote.
PROMPT_VERSION = 1
# Characters of one turn shown to the model; LoCoMo's turns are under 500.
MAX_TURN_CHARS = 1200
# About 4 characters a token for English; the session is cut to what the context holds.
CHARS_PER_TOKEN = 4
# The key the prompt shows as an example. A 1.5B model copies it onto unrelated facts (8 of
# the first 100 facts on LoCoMo), so a copy is trusted only where the fact speaks of it.
KEY_EXAMPLE = "Caroline|career plan"


class FactDraft(BaseModel):
    """One fact as the model writes it (checked before anything is stored)."""

    text: str = Field(description="one sentence starting with the person's name")
    # maxItems in the schema only: a grammar stops a runaway list (a 1.5B model listed 28
    # turns), and an endpoint that ignores it is not failed for it (the check keeps 3).
    sources: list[int] = Field(
        description="numbers of the 1-3 turns it comes from", json_schema_extra={"maxItems": 3}
    )
    key: str = Field(description=f'the person and the attribute, like "{KEY_EXAMPLE}"')


class SessionDigest(BaseModel):
    """The model's answer for one session."""

    summary: str
    facts: list[FactDraft]


@dataclass(frozen=True)
class Turn:
    """One raw memory of the session, as shown to the model."""

    number: int
    speaker: str | None
    text: str

    def line(self, base: date) -> str:
        text = annotate(self.text[:MAX_TURN_CHARS], base)
        return f"[{self.number}] {text}"


def messages(
    turns: Sequence[Turn],
    *,
    base: date,
    summary_words: int,
    max_facts: int,
    budget_chars: int,
    earlier: str | None = None,
) -> tuple[list[dict[str, str]], int]:
    """The chat for one session and how many turns it shows: turns past ``budget_chars`` (the
    last ones) are left out, and the caller reports them."""
    system = (
        "You consolidate one conversation session into long-term memory. Reply with JSON only.\n"
        f"- summary: at most {summary_words} words, third person, naming the people, with "
        "absolute dates.\n"
        f"- facts: up to {max_facts} specific details the summary leaves out: names, numbers, "
        "dates, places, plans, preferences, possessions, relationships. One short sentence each, "
        "starting with the person's name (never he, she, I or you). Write absolute dates: copy "
        "the [= date] after a relative date. Only what the turns say.\n"
        "- sources: the numbers of the 1-3 turns a fact comes from.\n"
        f'- key: the person and the attribute, like "{KEY_EXAMPLE}".'
    )
    speakers = sorted({t.speaker for t in turns if t.speaker})
    header = f"Session on {day_label(base)}"
    if speakers:
        header += " between " + " and ".join(speakers)
    lines, used = [header + ":"], len(header)
    if earlier:
        lines.insert(0, f"Earlier in this session (summary): {earlier}")
    shown = 0
    for turn in turns:
        line = turn.line(base)
        if used + len(line) > budget_chars:
            break
        lines.append(line)
        used += len(line) + 1
        shown += 1
    chat = [{"role": "system", "content": system}, {"role": "user", "content": "\n".join(lines)}]
    return chat, shown


def answer_budget(summary_tokens: int, max_facts: int) -> int:
    """Tokens the answer may take: the summary's, about 45 a fact, and the JSON around them."""
    return int(summary_tokens * 1.5) + 45 * max_facts + 40
