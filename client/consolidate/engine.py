"""One consolidation run: read a tier's sessions, ask the model about each, write the results.

Per session (see ``records``, ``check``, ``prompt``): unchanged sessions cost no model
call; a failed session (endpoint down, timeout, invalid JSON, a private session and a
remote model) fails alone, with its error in the report, and is tried again next run;
demotion of raw turns follows only a committed, current consolidation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from aios_memory.schemas import (
    FACT_KIND,
    SUMMARY_KIND,
    AiosMemoryError,
    KeyMissingError,
    PermissionDeniedError,
)

from .apply import Applier
from .policy import ConsolidationPolicy
from .report import ConsolidationReport, SessionOutcome
from .sessions import (
    Consolidated,
    SessionTurns,
    consolidated_state,
    group_sessions,
    parse_time,
    unopened,
)

__all__ = ["Consolidator", "MemoryApi", "Chat", "PRIVATE"]

PRIVATE = 2  # privacy at which a session's text may reach only a local model


class Chat(Protocol):
    """What consolidation needs of a language model (``aios_memory.client.llm.ChatModel``)."""

    name: str
    local: bool

    def chat_json(self, messages: list[dict[str, str]], schema: Any, *, max_tokens: int) -> Any: ...


class MemoryApi(Protocol):
    """What consolidation needs of a client (``MemoryClient`` is one)."""

    def iter_scan(
        self, tier: Any = None, *, strict: bool = True, **filters: Any
    ) -> Iterator[Any]: ...

    def encode_records(self, items: Any, *, tier: str = "working") -> list[dict[str, Any]]: ...

    def write_records(self, rows: Sequence[dict[str, Any]]) -> list[str]: ...

    def forget(self, ids: str | Sequence[str]) -> int: ...

    def recompress(self, tier: str, codec: str, *, session: str | None = None) -> Any: ...


class Consolidator:
    """Consolidates sessions of one client's tenant under one policy.

    ``llm`` may be a model or a function that opens one: it is only called when some
    session needs a model, so a dry run or a run with nothing new opens none.
    """

    def __init__(
        self,
        api: MemoryApi,
        llm: Chat | Callable[[], Chat],
        policy: ConsolidationPolicy | None = None,
    ) -> None:
        self.api = api
        self._llm = llm
        self.policy = policy or ConsolidationPolicy()

    @property
    def llm(self) -> Chat:
        if callable(self._llm) and not hasattr(self._llm, "chat_json"):
            self._llm = self._llm()
        return self._llm  # type: ignore[return-value]

    def run(
        self,
        *,
        session: str | None = None,
        tier: str = "working",
        older_than: timedelta | None = None,
        dry_run: bool = False,
        progress: Callable[[SessionOutcome, int, int], Any] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> ConsolidationReport:
        """Consolidate ``tier``'s sessions (or one), return what happened to each.

        ``should_stop`` is asked before each session: True ends the run there (a session
        under way finishes first), and the report says ``stopped``.
        """
        started = time.monotonic()
        report = ConsolidationReport(tier, self.policy.target_tier, dry_run)
        rows = list(self._rows(tier, session, "text"))
        sessions = group_sessions(rows, tier)
        report.unopened = unopened(rows)
        if report.unopened:
            report.outcomes.append(_unopened_outcome(report.unopened))
        state = self._state()
        now = datetime.now(timezone.utc)
        # Oldest first: a later session's facts supersede an earlier one's.
        ordered = sorted(sessions.values(), key=lambda s: (s.happened, s.session))
        for number, turns in enumerate(ordered, 1):
            if should_stop is not None and should_stop():
                report.stopped = True
                break
            if older_than is not None and turns.turns and now - turns.last_write < older_than:
                outcome = SessionOutcome(turns.session, "recent", turns=len(turns.turns))
            else:
                outcome = self._one(turns, state, dry_run)
            report.outcomes.append(outcome)
            if progress is not None:
                progress(outcome, number, len(ordered))
        report.model = getattr(self._llm, "name", None)
        report.seconds = time.monotonic() - started
        return report

    def _one(
        self, turns: SessionTurns, state: dict[str, Consolidated], dry_run: bool
    ) -> SessionOutcome:
        outcome = SessionOutcome(turns.session, "unchanged", turns=len(turns.turns))
        done = state.get(turns.session, Consolidated())
        digest = turns.digest(self.policy.shaping())
        started = time.monotonic()
        try:
            if turns.turns and done.digest != digest:
                if dry_run:
                    outcome.status = "pending"
                    return outcome
                self._check_allowed(turns)
                applier = Applier(self.api, self.llm, self.policy)
                done = applier.consolidate(turns, done, state, digest, outcome)
                outcome.status = "consolidated"
            if not dry_run and done.digest == digest:
                outcome.demoted = self._demote(turns, done)
        except AiosMemoryError as error:
            outcome.status, outcome.error, outcome.code = "failed", str(error), error.code
        outcome.seconds = round(time.monotonic() - started, 3)
        return outcome

    def _check_allowed(self, turns: SessionTurns) -> None:
        tier = turns.tier
        remote_allowed = tier in self.policy.remote_private_tiers
        if turns.privacy >= PRIVATE and not self.llm.local and not remote_allowed:
            raise PermissionDeniedError(
                f"session {turns.session!r} is private and the model {self.llm.name!r} is not "
                f"on this machine: use a local model, or allow it for tier {tier!r} "
                "(--allow-remote-private)",
                session=turns.session,
            )

    def _demote(self, turns: SessionTurns, done: Consolidated) -> str | None:
        demotion = self.policy.demotion(turns.tier)
        if demotion.action == "keep" or done.summary is None:
            return None
        if demotion.action == "recompress":
            report = self.api.recompress(turns.tier, "lm", session=turns.session)
            return "recompressed" if getattr(report, "reencoded", 0) else None
        written = _consolidated_at(done.summary)
        if written is None or datetime.now(timezone.utc) - written < demotion.after:
            return None
        self.api.forget([t.id for t in turns.turns])
        return "forgotten"

    def _state(self) -> dict[str, Consolidated]:
        # Every session's facts, not only the one asked for: a new fact may supersede any.
        target = self.policy.target_tier
        rows = [*self._rows(target, None, SUMMARY_KIND), *self._rows(target, None, FACT_KIND)]
        return consolidated_state(rows)

    def _rows(self, tier: str, session: str | None, kind: str) -> Iterator[dict[str, Any]]:
        filters: dict[str, Any] = {"kind": kind}
        if session is not None:
            filters["session"] = session
        # Not strict: a session sealed with a key this device lacks must come back (its text
        # null) to fail with KEY_MISSING, instead of ending the whole run.
        for batch in self.api.iter_scan(tier, strict=False, **filters):
            yield from batch.to_pylist()


def _unopened_outcome(count: int) -> SessionOutcome:
    # Their sessions are sealed with their text, so the failure cannot name one.
    error = KeyMissingError(
        f"{count} sealed memories cannot be opened on this device (the tenant's key is "
        "missing), so their sessions are unknown here and not consolidated: bring the key "
        "with `aimem keys import` (or consolidate on a device that has it)",
        memories=count,
    )
    return SessionOutcome(None, "failed", turns=count, error=str(error), code=error.code)


def _consolidated_at(summary: dict[str, Any]) -> datetime | None:
    return parse_time(summary["metadata"].get("aimem:consolidated_at"))
