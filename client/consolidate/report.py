"""What a consolidation run did, session by session, in a form the CLI prints as JSON."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["SessionOutcome", "ConsolidationReport", "STATUSES"]

# consolidated: written now; unchanged: its digest matched; pending: dry run, would be written;
# recent: written to within ``older_than``; failed: the error says why (retried next run).
STATUSES = ("consolidated", "unchanged", "pending", "recent", "failed")


@dataclass
class SessionOutcome:
    """One session's result."""

    session: str | None  # None: the sealed memories whose session this device cannot read
    status: str
    turns: int = 0
    unread: int = 0  # turns left out of the prompt: the session did not fit the context
    seconds: float = 0.0
    facts: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    superseded: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: int = 0  # model answers replayed from an answer cache (they cost no tokens here)
    summary_cut: int = 0  # tokens of the model's summary past the budget, cut off
    summary_id: str | None = None
    demoted: str | None = None
    error: str | None = None
    code: str | None = None


@dataclass
class ConsolidationReport:
    """A run's outcomes and their totals (``to_dict`` for ``--json``)."""

    tier: str
    target_tier: str
    dry_run: bool = False
    model: str | None = None
    outcomes: list[SessionOutcome] = field(default_factory=list)
    seconds: float = 0.0
    unopened: int = 0  # sealed memories of the tier this device cannot open
    stopped: bool = False  # ended early by ``should_stop``: the sessions after were not tried

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def failed(self) -> list[SessionOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def facts(self) -> int:
        return sum(o.facts for o in self.outcomes)

    @property
    def dropped(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for outcome in self.outcomes:
            total.update(outcome.dropped)
        return total

    def to_dict(self) -> dict[str, Any]:
        done = [o for o in self.outcomes if o.status == "consolidated"]
        return {
            "tier": self.tier,
            "target_tier": self.target_tier,
            "dry_run": self.dry_run,
            "model": self.model,
            "sessions": sum(1 for o in self.outcomes if o.session is not None),
            "unopened": self.unopened,
            "stopped": self.stopped,
            **{status: self.count(status) for status in STATUSES if status != "failed"},
            "failed": [
                {"session": o.session, "error": o.error, "code": o.code} for o in self.failed
            ],
            "summaries": len(done),
            "facts": self.facts,
            "facts_dropped": sum(self.dropped.values()),
            "dropped_by_reason": dict(self.dropped),
            "superseded": sum(o.superseded for o in self.outcomes),
            "demoted": sum(1 for o in self.outcomes if o.demoted),
            "seconds": round(self.seconds, 3),
            "prompt_tokens": sum(o.prompt_tokens for o in self.outcomes),
            "completion_tokens": sum(o.completion_tokens for o in self.outcomes),
            "cached_answers": sum(o.cached for o in self.outcomes),
            "summary_tokens_cut": sum(o.summary_cut for o in self.outcomes),
            "per_session": [asdict(o) for o in self.outcomes],
        }
