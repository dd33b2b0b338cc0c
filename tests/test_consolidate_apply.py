"""What consolidation writes for a model's answer: records, provenance, checks, supersession.

The model's answer is given here (``SessionDigest``), so what is asserted is exactly
what the records must be; the path through a real model is in test_consolidate.py.
Everything else is real: a server, its store, the client's encoder.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from aios_memory.client import MemoryClient
from aios_memory.client.consolidate import ConsolidationPolicy, SessionOutcome, group_sessions
from aios_memory.client.consolidate.apply import Applier
from aios_memory.client.consolidate.prompt import KEY_EXAMPLE, FactDraft, SessionDigest
from aios_memory.client.consolidate.sessions import Consolidated, consolidated_state
from aios_memory.schemas import (
    CONSOLIDATED_SESSION_KEY,
    FACT_KIND,
    OCCURRED_AT_KEY,
    SOURCES_KEY,
    SUMMARY_KIND,
    SUPERSEDED_FACT_KIND,
)

MAY = "2023-05-08T13:56:00Z"
JUNE = "2023-06-10T09:00:00Z"


def write_session(
    client: MemoryClient, session: str, when: str, turns: list[str], **kw: Any
) -> list[str]:
    metadata = [{"conversation": "c1", "turn": i, OCCURRED_AT_KEY: when} for i in range(len(turns))]
    return client.remember(turns, session=session, metadata=metadata, **kw)


def apply(
    client: MemoryClient,
    session: str,
    answer: SessionDigest,
    policy: ConsolidationPolicy | None = None,
) -> SessionOutcome:
    """Consolidate ``session`` of tier working with ``answer`` as the model's."""
    rows = [r for b in client.iter_scan("working", session=session) for r in b.to_pylist()]
    turns = group_sessions(rows, "working")[session]
    target = [
        r
        for kind in (SUMMARY_KIND, FACT_KIND)
        for b in client.iter_scan("long_term", kind=kind)
        for r in b.to_pylist()
    ]
    state = consolidated_state(target)
    policy = policy or ConsolidationPolicy()
    outcome = SessionOutcome(session, "consolidated")
    applier = Applier(client, SimpleNamespace(name="given"), policy)
    done = state.get(session, Consolidated())
    applier.apply(turns, done, state, turns.digest(policy.shaping()), outcome, answer)
    return outcome


def stored(client: MemoryClient, kind: str) -> list[dict[str, Any]]:
    rows = [r for b in client.iter_scan("long_term", kind=kind) for r in b.to_pylist()]
    for row in rows:
        row["metadata"] = json.loads(row["metadata"])
    return rows


TURNS_MAY = [
    "Caroline: I went to a LGBTQ support group yesterday and it was so powerful.",
    "Melanie: That's great! I painted a lake sunrise last year.",
    "Caroline: I live in Boston now, near my mentors.",
]


def test_summary_and_checked_facts_are_written_with_their_provenance(client: MemoryClient) -> None:
    ids = write_session(client, "c1/s1", MAY, TURNS_MAY, privacy=2)
    answer = SessionDigest(
        summary="Caroline and Melanie talk about a support group and painting.",
        facts=[
            FactDraft(
                text="Caroline went to a LGBTQ support group yesterday.",
                sources=[1],
                key="Caroline|group",
            ),
            FactDraft(
                text="Melanie painted a lake sunrise last year.",
                sources=[2],
                key="Melanie|painting",
            ),
            FactDraft(text="Melanie went to the support group.", sources=[1], key="Melanie|group"),
            FactDraft(text="Caroline lives in Paris.", sources=[3], key="Caroline|home"),
            FactDraft(text="Caroline met Jolene.", sources=[9], key="Caroline|friend"),
        ],
    )
    outcome = apply(client, "c1/s1", answer)
    assert outcome.facts == 2
    assert outcome.dropped == {"wrong_subject": 1, "unknown_name": 1, "no_sources": 1}

    (summary,) = stored(client, SUMMARY_KIND)
    assert summary["metadata"][SOURCES_KEY] == ids  # a summary lists all its session's turns
    assert summary["metadata"][CONSOLIDATED_SESSION_KEY] == "c1/s1"
    assert summary["metadata"][OCCURRED_AT_KEY] == MAY
    assert summary["metadata"]["conversation"] == "c1"  # shared by every turn: inherited
    assert "turn" not in summary["metadata"]  # differs between turns: not inherited
    assert (summary["session"], summary["tier"], summary["privacy"]) == ("c1/s1", "long_term", 2)

    facts = {f["text"]: f for f in stored(client, FACT_KIND)}
    assert set(facts) == {
        "Caroline went to a LGBTQ support group on 7 May 2023.",
        "Melanie painted a lake sunrise in 2022.",
    }
    group = facts["Caroline went to a LGBTQ support group on 7 May 2023."]
    assert group["metadata"][SOURCES_KEY] == [ids[0]]
    assert [m.text for m in client.get(group["metadata"][SOURCES_KEY])] == [TURNS_MAY[0]]
    assert group["privacy"] == 2  # the highest privacy of the session's turns

    hits = client.recall("support group", mode="keyword", where={"kind": FACT_KIND})
    assert [h.kind for h in hits] == [FACT_KIND]


def test_a_summary_is_stored_within_its_budget_and_what_was_cut_can_be_a_fact(
    client: MemoryClient,
) -> None:
    write_session(client, "c1/s1", MAY, TURNS_MAY)
    first = "Caroline and Melanie talk about a support group and about painting."
    answer = SessionDigest(
        summary=f"{first} Caroline now lives in Boston near her mentors, she says.",
        facts=[FactDraft(text="Caroline lives in Boston.", sources=[3], key="Caroline|home")],
    )
    # 20 tokens at about 4 characters a token (a model without a tokenizer): the first sentence.
    outcome = apply(client, "c1/s1", answer, ConsolidationPolicy(summary_tokens=20))
    (summary,) = stored(client, SUMMARY_KIND)
    assert summary["text"] == first
    assert outcome.summary_cut > 0
    # Its words were only in the sentence cut off, so the fact is the diff, not a repeat.
    assert [f["text"] for f in stored(client, FACT_KIND)] == ["Caroline lives in Boston."]
    assert outcome.dropped == {}


def test_a_later_fact_supersedes_an_earlier_one_with_the_same_key(client: MemoryClient) -> None:
    write_session(client, "c1/s1", MAY, TURNS_MAY)
    write_session(client, "c1/s2", JUNE, ["Caroline: I moved to Denver last week!"])
    home = "Caroline|home city"
    apply(
        client,
        "c1/s1",
        SessionDigest(
            summary="Talk.",
            facts=[FactDraft(text="Caroline lives in Boston.", sources=[3], key=home)],
        ),
    )
    outcome = apply(
        client,
        "c1/s2",
        SessionDigest(
            summary="Moving news.",
            facts=[FactDraft(text="Caroline moved to Denver.", sources=[1], key=home)],
        ),
    )
    assert outcome.superseded == 1

    (live,) = stored(client, FACT_KIND)
    (old,) = stored(client, SUPERSEDED_FACT_KIND)
    assert live["text"] == "Caroline moved to Denver."
    assert old["text"] == "Caroline lives in Boston."  # kept, readable
    assert old["metadata"]["aimem:superseded_by"] == live["id"]
    assert [m.kind for m in client.get(old["id"])] == [SUPERSEDED_FACT_KIND]


def test_two_new_facts_with_one_key_supersede_nothing(client: MemoryClient) -> None:
    """One answer giving one key to two different facts says the key is not single-valued
    (a small model writes "Nate|passion" on everything Nate enjoys): nothing is hidden."""
    write_session(client, "c1/s1", MAY, TURNS_MAY)
    write_session(client, "c1/s2", JUNE, ["Caroline: I moved to Denver, then to Austin!"])
    home = "Caroline|home city"
    old = FactDraft(text="Caroline lives in Boston.", sources=[3], key=home)
    apply(client, "c1/s1", SessionDigest(summary="Talk.", facts=[old]))
    twice = [
        FactDraft(text="Caroline moved to Denver.", sources=[1], key=home),
        FactDraft(text="Caroline moved to Austin.", sources=[1], key=home),
    ]
    outcome = apply(client, "c1/s2", SessionDigest(summary="Moving news.", facts=twice))
    assert (outcome.superseded, outcome.facts) == (0, 2)
    assert stored(client, SUPERSEDED_FACT_KIND) == []
    assert len(stored(client, FACT_KIND)) == 3
    later = FactDraft(text="Caroline moved to Austin.", sources=[1], key=home)
    assert apply(client, "c1/s2", SessionDigest(summary="Moving.", facts=[later])).facts == 1


def test_the_prompts_example_key_holds_only_where_the_fact_speaks_of_it(
    client: MemoryClient,
) -> None:
    write_session(client, "c1/s1", MAY, TURNS_MAY)
    write_session(client, "c1/s2", JUNE, ["Caroline: my career plan is teaching now."])
    copied = KEY_EXAMPLE  # what a small model writes on any fact
    first = [
        FactDraft(text="Caroline lives in Boston.", sources=[3], key=copied),  # copied: untrusted
        FactDraft(text="Caroline's career plan is counseling.", sources=[1], key=copied),
    ]
    assert apply(client, "c1/s1", SessionDigest(summary="Talk.", facts=first)).facts == 2
    later = FactDraft(text="Caroline's career plan is teaching.", sources=[1], key=copied)
    outcome = apply(client, "c1/s2", SessionDigest(summary="Plans.", facts=[later]))
    assert outcome.superseded == 1
    (superseded,) = stored(client, SUPERSEDED_FACT_KIND)
    assert superseded["text"] == "Caroline's career plan is counseling."
    assert {f["text"] for f in stored(client, FACT_KIND)} == {
        "Caroline lives in Boston.",
        "Caroline's career plan is teaching.",
    }


def test_an_older_session_consolidated_late_does_not_overrule_a_newer_fact(
    client: MemoryClient,
) -> None:
    write_session(client, "c1/s1", MAY, TURNS_MAY)
    write_session(client, "c1/s2", JUNE, ["Caroline: I moved to Denver last week!"])
    home = "caroline|home city"
    apply(
        client,
        "c1/s2",
        SessionDigest(
            summary="Moving news.",
            facts=[FactDraft(text="Caroline moved to Denver.", sources=[1], key=home)],
        ),
    )
    apply(
        client,
        "c1/s1",
        SessionDigest(
            summary="Talk.",
            facts=[FactDraft(text="Caroline lives in Boston.", sources=[3], key=home)],
        ),
    )
    (live,) = stored(client, FACT_KIND)
    (late,) = stored(client, SUPERSEDED_FACT_KIND)
    assert live["text"] == "Caroline moved to Denver."
    assert late["text"] == "Caroline lives in Boston."
    assert late["metadata"]["aimem:superseded_by"] == live["id"]


def test_consolidating_again_keeps_ids_and_supersedes_facts_no_longer_stated(
    client: MemoryClient,
) -> None:
    write_session(client, "c1/s1", MAY, TURNS_MAY)
    first = SessionDigest(
        summary="First.",
        facts=[
            FactDraft(text="Caroline lives in Boston.", sources=[3], key="Caroline|home"),
            FactDraft(text="Melanie painted a lake sunrise.", sources=[2], key="Melanie|art"),
        ],
    )
    apply(client, "c1/s1", first)
    (summary_before,) = stored(client, SUMMARY_KIND)
    boston = next(f for f in stored(client, FACT_KIND) if "Boston" in f["text"])

    client.remember(
        "Melanie: I also love hiking.", session="c1/s1", metadata={OCCURRED_AT_KEY: MAY}
    )
    second = SessionDigest(
        summary="Second.",
        facts=[FactDraft(text="Caroline lives in Boston.", sources=[3], key="Caroline|home")],
    )
    apply(client, "c1/s1", second)

    (summary_after,) = stored(client, SUMMARY_KIND)
    assert summary_after["id"] == summary_before["id"]  # a new version of the same memory
    assert summary_after["hlc"] > summary_before["hlc"]
    assert len(summary_after["metadata"][SOURCES_KEY]) == 4
    (live,) = stored(client, FACT_KIND)
    assert live["id"] == boston["id"]
    (stale,) = stored(client, SUPERSEDED_FACT_KIND)
    assert stale["text"] == "Melanie painted a lake sunrise."
    assert stale["metadata"]["aimem:superseded_by"] == summary_after["id"]


def test_reconstruct_assembles_the_session_and_says_so(client: MemoryClient) -> None:
    ids = write_session(client, "c1/s1", MAY, TURNS_MAY)
    apply(
        client,
        "c1/s1",
        SessionDigest(
            summary="Caroline and Melanie catch up.",
            facts=[FactDraft(text="Caroline lives in Boston.", sources=[3], key="Caroline|home")],
        ),
    )
    account = client.reconstruct("c1/s1")
    assert account.reconstructed
    assert account.text.startswith("[reconstructed] Session c1/s1 (2023-05-08)")
    assert "Caroline and Melanie catch up." in account.text
    assert "- Caroline lives in Boston. (turns 3)" in account.text
    assert TURNS_MAY[1] in account.text
    assert account.turn_ids == ids

    client.forget(ids)
    after = client.reconstruct("c1/s1")
    assert "Turns:" not in after.text and "- Caroline lives in Boston." in after.text
    assert after.turn_ids == []


def test_reconstruct_of_an_unknown_session_is_not_found(client: MemoryClient) -> None:
    from aios_memory.schemas import NotFoundError

    with pytest.raises(NotFoundError):
        client.reconstruct("nobody/never")
