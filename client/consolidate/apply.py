"""One session consolidated: the model's answer checked, planned as records, written in one put.

Facts the check refuses are counted by reason and not stored. A fact is the diff of
its session, so one that repeats its session's summary word for word adds nothing
and is dropped too (``in_summary``).

Contradictions are found by key (``"Caroline|home city"``, lowercased): a new fact
whose key matches a live fact of another session, with other words, supersedes it
when its session happened later, and is itself written superseded when it happened
earlier (an old session consolidated late must not overrule a newer one). A key is
trusted to name one value only when its answer gives it to one fact (a small model
writes "Nate|passion" on four different things Nate enjoys) and it is not the prompt's
example copied onto a fact that does not speak of it; an untrusted key is replaced by
the fact's own text, so the fact supersedes nothing and nothing supersedes it. A session
consolidated again supersedes its own earlier facts that it no longer states, as
long as their turns are still there to speak for themselves.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from aios_memory.schemas import FACT_KIND, SUMMARY_KIND, SUPERSEDED_FACT_KIND

from .budget import fit_summary
from .check import check_fact, content_words
from .dates import resolve_in, strip_hints
from .policy import ConsolidationPolicy
from .prompt import (
    CHARS_PER_TOKEN,
    KEY_EXAMPLE,
    FactDraft,
    SessionDigest,
    Turn,
    answer_budget,
    messages,
)
from .records import (
    FACT_KEY,
    Draft,
    Plan,
    fact_metadata,
    normalized,
    summary_metadata,
)
from .report import SessionOutcome
from .sessions import Consolidated, SessionTurns, parse_time

__all__ = ["Applier", "CONTEXT_TOKENS"]

# The context a session must fit in (the embedded model's default); what does not fit (the last
# turns of a very long session) is left out of the prompt and counted as ``unread``.
CONTEXT_TOKENS = 4096


class Applier:
    """Consolidates one session at a time (see the module docstring)."""

    def __init__(self, api: Any, llm: Any, policy: ConsolidationPolicy) -> None:
        self.api, self.llm, self.policy = api, llm, policy

    def consolidate(
        self,
        turns: SessionTurns,
        done: Consolidated,
        state: dict[str, Consolidated],
        digest: str,
        outcome: SessionOutcome,
    ) -> Consolidated:
        """Ask the model about ``turns``, then ``apply`` its answer."""
        answer = self._ask(turns, done, outcome)
        return self.apply(turns, done, state, digest, outcome, answer)

    def apply(
        self,
        turns: SessionTurns,
        done: Consolidated,
        state: dict[str, Consolidated],
        digest: str,
        outcome: SessionOutcome,
        answer: SessionDigest,
    ) -> Consolidated:
        """Check ``answer``'s facts, plan the records and write them in one put."""
        summary_text, outcome.summary_cut = fit_summary(
            strip_hints(answer.summary), self.policy.summary_tokens, self._count
        )
        # Checked against the summary as stored: a detail only in the part cut off is a fact.
        drafts = self._checked(turns, answer.facts, summary_text, outcome)
        plan = Plan(
            turns.session,
            self.policy.target_tier,
            turns.privacy,
            turns.happened,
            turns.shared_metadata(),
        )
        model = str(self.llm.name)
        stated = self._plan_facts(plan, drafts, done, state, turns, model)
        sources = [t.id for t in turns.turns]
        summary_text = summary_text or f"Session {turns.session}."
        summary_id = plan.add(
            self.api,
            summary_text,
            SUMMARY_KIND,
            summary_metadata(plan, model, sources, digest),
            keep=done.summary,
        )
        self._supersede_stale(plan, done, turns, stated, summary_id)
        self.api.write_records(plan.rows)
        outcome.facts, outcome.superseded, outcome.summary_id = (
            len(drafts),
            plan.superseded,
            summary_id,
        )
        return _updated(state, turns.session, plan, summary_id)

    def _count(self, text: str) -> int:
        count = getattr(self.llm, "count_tokens", None)
        return int(count(text)) if count is not None else -(-len(text) // CHARS_PER_TOKEN)

    def _ask(self, turns: SessionTurns, done: Consolidated, outcome: SessionOutcome) -> Any:
        policy = self.policy
        shown = [
            Turn(i + 1, t.speaker, _spoken(t.speaker, t.text)) for i, t in enumerate(turns.turns)
        ]
        budget = answer_budget(policy.summary_tokens, policy.max_facts)
        chat, shown_count = messages(
            shown,
            base=turns.base_date,
            summary_words=policy.summary_words,
            max_facts=policy.max_facts,
            budget_chars=max(2000, (CONTEXT_TOKENS - budget - 300) * CHARS_PER_TOKEN),
            earlier=_earlier(turns, done),
        )
        outcome.unread = len(shown) - shown_count
        usage = getattr(self.llm, "usage", None)
        before = (usage.prompt_tokens, usage.completion_tokens, usage.cached) if usage else (0,) * 3
        answer = self.llm.chat_json(chat, SessionDigest, max_tokens=budget)
        if usage is not None:
            outcome.prompt_tokens = usage.prompt_tokens - before[0]
            outcome.completion_tokens = usage.completion_tokens - before[1]
            outcome.cached = usage.cached - before[2]
        return answer

    def _checked(
        self,
        turns: SessionTurns,
        facts: list[FactDraft],
        summary: str,
        outcome: SessionOutcome,
    ) -> list[Draft]:
        speakers = sorted({t.speaker for t in turns.turns if t.speaker})
        summary_words = content_words(summary)
        kept: dict[str, Draft] = {}
        for draft in facts[: self.policy.max_facts]:
            numbers = [n for n in dict.fromkeys(draft.sources) if 1 <= n <= len(turns.turns)]
            cited = [turns.turns[n - 1] for n in numbers[:3]]
            text = resolve_in(" ".join(strip_hints(draft.text).split()), turns.base_date)
            verdict = check_fact(
                text,
                [_spoken(t.speaker, t.text) for t in cited],
                base=turns.base_date,
                speakers=speakers,
            )
            reason = verdict.reason
            if verdict.ok and content_words(text) <= summary_words:
                reason = "in_summary"
            if reason is not None:
                outcome.dropped[reason] = outcome.dropped.get(reason, 0) + 1
                continue
            key = " ".join(draft.key.lower().split()) or normalized(text)
            kept.setdefault(normalized(text), Draft(text, [t.id for t in cited], key))
        return _trusted_keys(list(kept.values()))

    def _plan_facts(
        self,
        plan: Plan,
        drafts: list[Draft],
        done: Consolidated,
        state: dict[str, Consolidated],
        turns: SessionTurns,
        model: str,
    ) -> set[str]:
        """Plan the facts (and what they supersede); return their normalized texts."""
        mine = {normalized(f["text"]): f for f in done.facts}
        others = _facts_by_key(state, turns.session)
        for draft in drafts:
            old = mine.get(normalized(draft.text))
            rivals = [
                f
                for f in others.get(draft.key, [])
                if normalized(f["text"]) != normalized(draft.text)
            ]
            newer = [f for f in rivals if _happened(f) > turns.happened]
            kind = SUPERSEDED_FACT_KIND if newer else FACT_KIND
            metadata = fact_metadata(plan, model, draft)
            if newer:
                metadata["aimem:superseded_by"] = newer[0]["id"]
            fact_id = plan.add(self.api, draft.text, kind, metadata, keep=old)
            for rival in rivals:
                if not newer and _happened(rival) <= turns.happened:
                    plan.supersede(self.api, rival, fact_id)
        return {normalized(d.text) for d in drafts}

    def _supersede_stale(
        self,
        plan: Plan,
        done: Consolidated,
        turns: SessionTurns,
        stated: set[str],
        summary_id: str,
    ) -> None:
        present = {t.id for t in turns.turns}
        for fact in done.facts:
            sources = fact["metadata"].get("aimem:sources") or []
            if normalized(fact["text"]) in stated or not set(sources) <= present:
                continue
            plan.supersede(self.api, fact, summary_id)


def _updated(
    state: dict[str, Consolidated], session: str, plan: Plan, summary_id: str
) -> Consolidated:
    """The run's view of the target tier after this put: later sessions compare against it."""
    rewritten = {i for i, v in plan.views.items() if v["kind"] != FACT_KIND}
    for entry in state.values():
        entry.facts = [f for f in entry.facts if f["id"] not in rewritten]
    facts = [v for v in plan.views.values() if v["kind"] == FACT_KIND]
    state[session] = Consolidated(plan.views[summary_id], facts)
    return state[session]


def _facts_by_key(state: dict[str, Consolidated], session: str) -> dict[str, list[dict[str, Any]]]:
    by_key: dict[str, list[dict[str, Any]]] = {}
    for other, entry in state.items():
        if other == session:
            continue
        for fact in entry.facts:
            key = fact["metadata"].get(FACT_KEY)
            if isinstance(key, str):
                by_key.setdefault(key, []).append(fact)
    return by_key


def _happened(fact: dict[str, Any]) -> Any:
    moment = parse_time(fact["metadata"].get("aimem:occurred_at"))
    return moment or fact["created_at"]


def _spoken(speaker: str | None, text: str) -> str:
    # LoCoMo's importer already writes "Speaker: words"; other turns get their speaker shown.
    if not speaker or text.startswith(f"{speaker}:"):
        return text
    return f"{speaker}: {text}"


def _earlier(turns: SessionTurns, done: Consolidated) -> str | None:
    # Turns already forgotten (demoted) speak only through the previous summary.
    if done.summary is None:
        return None
    sources = set(done.summary["metadata"].get("aimem:sources") or [])
    if sources <= {t.id for t in turns.turns}:
        return None
    return str(done.summary["text"])


def _trusted_keys(drafts: list[Draft]) -> list[Draft]:
    """``drafts`` with every key that cannot be trusted to name one value replaced by the
    fact's own text (see the module's docstring)."""
    own = [Draft(d.text, d.sources, normalized(d.text)) for d in drafts]
    drafts = [o if _copied_example(d.key, d.text) else d for d, o in zip(drafts, own, strict=True)]
    uses = Counter(d.key for d in drafts)
    return [o if uses[d.key] > 1 else d for d, o in zip(drafts, own, strict=True)]


def _copied_example(key: str, text: str) -> bool:
    attribute = key.rpartition("|")[2]
    example = KEY_EXAMPLE.lower().rpartition("|")[2]
    return attribute.strip() == example and not set(example.split()) & content_words(text)
