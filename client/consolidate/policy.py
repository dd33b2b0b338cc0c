"""Where consolidated memories go, how much they may say, and what happens to the raw turns.

Demotion of the raw turns is per tier (the tier the turns are in):

- ``keep`` (the default): nothing changes; recall sees turns, summaries and facts;
- ``recompress``: the turns are re-encoded with the ``lm`` codec (lossless, about 7x);
- ``forget-after=N`` (days; ``30d``, ``12h`` and ``0`` also read): the turns are
  forgotten once their session's consolidation is N days old.

Nothing is demoted unless its session's consolidation is committed and current (its
digest names exactly the turns there now).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from aios_memory.schemas import TIERS, InvalidValueError, UnknownTierError

__all__ = ["Demotion", "ConsolidationPolicy", "parse_duration", "DEMOTIONS"]

DEMOTIONS = ("keep", "recompress", "forget-after")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str, *, default_unit: str = "d") -> timedelta:
    """``90s``, ``15m``, ``12h``, ``30d``, ``2w`` or a bare number of ``default_unit``."""
    match = _DURATION.match(text)
    if match is None:
        raise InvalidValueError(
            f"duration {text!r} is not a number with an optional unit (s, m, h, d, w)"
        )
    unit = match.group(2) or default_unit
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[unit])


@dataclass(frozen=True)
class Demotion:
    """What happens to a consolidated session's raw turns (see the module docstring)."""

    action: str = "keep"
    after: timedelta = timedelta(0)

    @classmethod
    def parse(cls, text: str) -> Demotion:
        """``keep``, ``recompress`` or ``forget-after=30d`` (``forget-after:30d`` too)."""
        name, _, value = text.strip().replace(":", "=").partition("=")
        if name in ("keep", "recompress") and not value:
            return cls(name)
        if name == "forget-after" and value:
            return cls("forget", parse_duration(value))
        raise InvalidValueError(
            f"demotion {text!r} is not keep, recompress or forget-after=DURATION (e.g. 30d)"
        )

    def describe(self) -> str:
        if self.action == "forget":
            return f"forget-after={self.after.total_seconds() / 86400:g}d"
        return self.action


@dataclass(frozen=True)
class ConsolidationPolicy:
    """How a run consolidates.

    Attributes
    ----------
    target_tier : str
        Where summaries and facts land (default ``long_term``).
    summary_tokens : int
        The summary's budget, in tokens (asked as about 0.75 words a token).
    max_facts : int
        Facts asked for a session at most.
    demote : mapping of tier -> Demotion
        What happens to a tier's raw turns once consolidated (default: keep).
    remote_private_tiers : frozenset of str
        Tiers whose private sessions (privacy 2 or more) may be sent to a model that is
        not on this machine. By default none: a private session needs a local model.
    """

    target_tier: str = "long_term"
    summary_tokens: int = 100
    max_facts: int = 8
    demote: Mapping[str, Demotion] = field(default_factory=dict)
    remote_private_tiers: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for tier in (self.target_tier, *self.demote, *self.remote_private_tiers):
            if tier not in TIERS:
                raise UnknownTierError(f"unknown tier {tier!r}; tiers are {', '.join(TIERS)}")
        if not 10 <= self.summary_tokens <= 2000:
            raise InvalidValueError("summary_tokens must be 10..2000")
        if not 0 <= self.max_facts <= 40:
            raise InvalidValueError("max_facts must be 0..40")

    def demotion(self, tier: str) -> Demotion:
        return self.demote.get(tier, Demotion())

    @property
    def summary_words(self) -> int:
        return max(5, round(self.summary_tokens * 0.75))

    def shaping(self) -> tuple[object, ...]:
        """The settings that shape what is written: part of each session's digest."""
        return (self.target_tier, self.summary_tokens, self.max_facts)
