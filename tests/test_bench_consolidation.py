"""The scoring of ``bench/consolidation.py`` on small hand-made inputs (values derived by hand).

The scoring is pure (no server, no model); the store views run against a real server with the
real CLI import, with a summary and a fact written by hand in place of consolidation's (the
bench end to end needs the local model: minutes a session on 2 cores, too slow for a test).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import _consolidation_report as report  # noqa: E402
import _consolidation_store as store  # noqa: E402
import consolidation as bench  # noqa: E402
from _consolidation_scoring import (  # noqa: E402
    answer_found,
    by_category,
    content_words,
    evidence_found,
    hit_dia_ids,
    token_f1,
)

DIA_OF = {"m1": "D1:1", "m2": "D1:2", "m3": "D2:5"}


def test_content_words_drop_case_punctuation_and_stopwords() -> None:
    assert content_words("Caroline's trip to the LGBTQ support group, on 7 May 2023!") == [
        "caroline", "trip", "lgbtq", "support", "group", "7", "may", "2023",
    ]  # fmt: skip


def test_answer_found_needs_half_of_the_distinct_content_words() -> None:
    gold = "7 May 2023"  # three content words: 7, may, 2023
    assert answer_found(gold, ["It was May 2023.", "unrelated"])  # 2 of 3
    assert not answer_found(gold, ["In May, I think"])  # 1 of 3
    assert answer_found("adoption agencies", ["she looked at agencies"])  # 1 of 2 is half
    assert not answer_found("adoption agencies", ["an agency"])  # no stemming: 0 of 2


def test_answer_found_matches_whole_words_across_joined_texts() -> None:
    assert not answer_found("art", ["she started painting"])  # "art" inside "started" is no word
    assert answer_found("pottery painting", ["pottery class", "then painting"])


def test_an_answer_of_stopwords_only_falls_back_to_its_words() -> None:
    assert answer_found("No", ["no, she did not"])
    assert not answer_found("No", ["yes"])
    assert not answer_found("?!", ["anything at all"])  # no word at all: never found


def test_hit_dia_ids_count_turns_and_fact_sources_never_summaries() -> None:
    assert hit_dia_ids("text", {"dia_id": "D1:1"}, DIA_OF) == {"D1:1"}
    assert hit_dia_ids("fact", {"aimem:sources": ["m1", "m3", "gone"]}, DIA_OF) == {
        "D1:1",
        "D2:5",
    }
    assert hit_dia_ids("summary", {"aimem:sources": ["m1", "m2", "m3"]}, DIA_OF) == set()
    assert hit_dia_ids("fact", {}, DIA_OF) == set()


def test_evidence_found_is_the_share_of_evidence_under_the_hits() -> None:
    hits = [
        hit_dia_ids("summary", {"aimem:sources": ["m1", "m2", "m3"]}, DIA_OF),
        hit_dia_ids("fact", {"aimem:sources": ["m2"]}, DIA_OF),
        hit_dia_ids("text", {"dia_id": "D9:9"}, DIA_OF),
    ]
    assert evidence_found({"D1:1", "D1:2"}, hits) == 0.5  # D1:2 by the fact; D1:1 only by summary
    assert evidence_found({"D9:9", "D1:2"}, hits) == 1.0
    assert evidence_found({"D3:3"}, hits) == 0.0
    assert evidence_found(set(), hits) == 0.0


def test_token_f1_by_hand() -> None:
    # pred tokens [went, to, paris], gold [paris, in, may]: 1 common, P=1/3, R=1/3 -> 1/3
    assert token_f1("Went to Paris.", "Paris in May") == pytest.approx(1 / 3)
    assert token_f1("The painting", "painting") == 1.0  # articles removed
    # pred [red, red, car], gold [red, car]: common 2 (multiset), P=2/3, R=1 -> 0.8
    assert token_f1("red red car", "red car") == pytest.approx(0.8)
    assert token_f1("", "anything") == 0.0
    assert token_f1("blue", "red") == 0.0


def test_by_category_means() -> None:
    out = by_category([1, 2, 1, 4], [1.0, 0.0, 0.0, 1.0], "answer_recall@10")
    assert out["answer_recall@10"] == 0.5 and out["questions"] == 4
    assert out["by_category"] == {
        "1": {"answer_recall@10": 0.5, "questions": 2},
        "2": {"answer_recall@10": 0.0, "questions": 1},
        "4": {"answer_recall@10": 1.0, "questions": 1},
    }


# --- the store views, through a real server and the real CLI import --------------------------


def locomo_file(folder: Path, name: str, sessions: int) -> Path:
    """A tiny LoCoMo conversation (the dev split's flat layout): 2 turns a session."""
    conversation: dict[str, Any] = {"speaker_a": "Ada", "speaker_b": "Bo", "qa": []}
    for n in range(1, sessions + 1):
        conversation[f"session_{n}_date_time"] = f"1:00 pm on {n} May, 2023"
        conversation[f"session_{n}"] = [
            {"speaker": "Ada", "dia_id": f"D{n}:1", "text": f"{name} kayak trip number {n}"},
            {"speaker": "Bo", "dia_id": f"D{n}:2", "text": f"{name} pottery class number {n}"},
        ]
    conversation["qa"] = [
        {"question": "Where?", "answer": "kayak", "evidence": ["D1:1"], "category": 1},
        {"question": "Lost?", "answer": "x", "evidence": ["D9:9"], "category": 2},  # no such turn
        {"question": "Adv?", "adversarial_answer": "y", "evidence": ["D1:2"], "category": 5},
    ]
    path = folder / f"{name}.json"
    path.write_text(json.dumps(conversation), encoding="utf-8")
    return path


def test_trimmed_copy_keeps_the_first_sessions(tmp_path: Path) -> None:
    original = locomo_file(tmp_path, "conv-a", 3)
    (tmp_path / "out").mkdir()
    copy = store.trimmed_copy(original, 2, tmp_path / "out")
    kept = json.loads(copy.read_text(encoding="utf-8"))
    assert copy.name == original.name and "session_3" not in kept
    assert "session_3_date_time" not in kept and "session_2" in kept and kept["qa"]
    assert store.trimmed_copy(original, None, tmp_path / "out") == original


def test_stores_and_provenance_through_a_real_server(server: Any, tmp_path: Path) -> None:
    from aios_memory.client import MemoryClient

    for name in ("conv-a", "conv-b"):
        done = store.aimem(
            server, "import", str(locomo_file(tmp_path, name, 2)), "--tier", "working"
        )
        assert done["imported"] == 4
    with MemoryClient(server.uri, server.token, timeout=30) as client:
        turns = store.read_turns(client)
        assert sorted(turns.dia_of.values()) == sorted(["D1:1", "D1:2", "D2:1", "D2:2"] * 2)
        assert turns.sessions["conv-a"] == ["conv-a/session_1", "conv-a/session_2"]
        by_dia = {(t, d): i for i, d in turns.dia_of.items() for t in [_conv(client, i)]}
        source = by_dia[("conv-a", "D2:1")]
        every = {"aimem:sources": list(turns.dia_of)}  # a summary's sources count for nothing
        consolidated = {"tier": "long_term", "session": "conv-a/session_2"}
        client.remember("conv-a kayak summary", kind="summary", metadata=every, **consolidated)
        client.remember(
            "conv-a fact: Ada took a kayak trip",
            kind="fact",
            metadata={"aimem:sources": [source]},
            **consolidated,
        )
        sessions = turns.sessions["conv-a"]
        found = {
            s: store.ask(client, s, "kayak", sessions, 10, mode="keyword") for s in store.STORES
        }
        sizes = store.compression(client, turns, store.consolidated_rows(client))
        codecs = {r["codec"] for k in ("summary", "fact") for r in _stored(client, k)}
    session_2 = ["Ada: conv-a kayak trip number 2", "Bo: conv-a pottery class number 2"]
    assert turns.bytes_by_session["conv-a/session_2"] == sum(len(t) for t in session_2)
    # Only the session with a summary counts as compressed: conv-a/session_2, not all 8 turns.
    assert sizes["sessions_covered"] == 1
    assert sizes["raw_text_bytes_covered"] == turns.bytes_by_session["conv-a/session_2"]
    assert sizes["memories"] == 2 and codecs == {"lm"}
    lm = sizes["lm"]
    assert lm["x_vs_raw_text"] == round(sizes["raw_text_bytes_covered"] / lm["payload_bytes"], 2)
    assert {r.kind for r in found["raw"]} == {"text"}
    assert {r.kind for r in found["consolidated"]} == {"summary", "fact"}
    assert {r.kind for r in found["both"]} == {"text", "summary", "fact"}
    assert all("conv-b" not in r.text for hits in found.values() for r in hits)
    question = SimpleNamespace(
        answer="kayak trip", category=1, evidence=frozenset({"D2:1", "D1:2"})
    )
    scores = report.recall_scores([question], [found["consolidated"]], turns.dia_of)
    assert scores["evidence"]["evidence_recall@10"] == 0.5  # the fact's source; not the summary's
    assert scores["answer"]["answer_recall@10"] == 1.0


def test_bytes_are_measured_on_a_copy_so_a_resumed_run_finds_its_store_as_written(
    tmp_path: Path,
) -> None:
    from aios_memory.client import MemoryClient

    folder = tmp_path / "budget-100"
    with bench.running_server(folder, embedder="local", checkpoint_seconds=0) as running:
        store.aimem(running, "import", str(locomo_file(tmp_path, "conv-a", 1)), "--tier", "working")
        with MemoryClient(running.uri, running.token, timeout=60) as client:
            turns = store.read_turns(client)
            where = {"tier": "long_term", "session": "conv-a/session_1"}
            client.remember("Ada and Bo talked of a kayak trip.", kind="summary", **where)
            client.remember("Ada took a kayak trip in May 2023.", kind="fact", **where)
            rows = store.consolidated_rows(client)
            written = {r["codec"] for k in ("summary", "fact") for r in _stored(client, k)}
    first = bench.measure_bytes(folder, turns, rows)
    second = bench.measure_bytes(folder, turns, rows)  # as a resumed run would
    assert first["lm"]["payload_bytes"] < first["as_written_payload_bytes"]
    assert second["as_written_payload_bytes"] == first["as_written_payload_bytes"]
    assert second["lm"] == {**first["lm"], "recompress_s": second["lm"]["recompress_s"]}
    with (
        bench.running_server(folder, embedder="local", checkpoint_seconds=0) as running,
        MemoryClient(running.uri, running.token, timeout=60) as client,
    ):
        assert {r["codec"] for k in ("summary", "fact") for r in _stored(client, k)} == written
    assert "lm" not in written and sorted(p.name for p in tmp_path.iterdir()) == [
        "budget-100", "conv-a.json",
    ]  # fmt: skip


def _stored(client: Any, kind: str) -> list[dict[str, Any]]:
    return [r for b in client.iter_records("long_term", kind=kind) for r in b.to_pylist()]


def _conv(client: Any, memory_id: str) -> str:
    return client.get(memory_id)[0].metadata["conversation"]


def test_load_qa_keeps_categories_1_to_4_with_known_evidence(tmp_path: Path) -> None:
    path = locomo_file(tmp_path, "conv-a", 1)
    questions = bench.load_qa(path, {"D1:1", "D1:2"})
    assert [(q.key, q.answer, q.evidence) for q in questions] == [
        ("conv-a#0", "kayak", frozenset({"D1:1"}))
    ]


def _outcome(session: str, status: str, seconds: float, facts: int = 0, **kw: Any) -> dict:
    counts = {"prompt_tokens": 900, "completion_tokens": 300, "dropped": {}}
    return {
        "session": session,
        "status": status,
        "seconds": seconds,
        "facts": facts,
        **counts,
        **kw,
    }


def test_a_resumed_run_reports_every_session_once() -> None:
    earlier: dict[str, dict] = {}
    first = {
        "tier": "working",
        "per_session": [
            _outcome("s1", "consolidated", 60.0, 3, dropped={"in_summary": 1}),
            _outcome("s2", "failed", 5.0, error="cut", code="LLM_INVALID_OUTPUT"),
        ],
    }
    assert report.merged(earlier, first)["failed"] == [
        {"session": "s2", "error": "cut", "code": "LLM_INVALID_OUTPUT"}
    ]
    second = {  # s1 is unchanged now, s2 retried, s3 new
        "tier": "working",
        "per_session": [
            _outcome("s1", "unchanged", 0.01),
            _outcome("s2", "consolidated", 70.0, 2, dropped={"in_summary": 2}),
            _outcome("s3", "consolidated", 50.0, 1),
        ],
    }
    whole = report.merged(earlier, second)
    assert (whole["sessions"], whole["consolidated"], whole["failed"]) == (3, 3, [])
    assert whole["facts"] == 6
    assert whole["dropped_by_reason"] == {"in_summary": 3}
    assert whole["tier"] == "working"
    assert report.cost(whole)["seconds_per_session"] == {"mean": 60.0, "p50": 60.0, "max": 70.0}


def test_a_replayed_session_keeps_the_cost_of_the_run_that_paid_for_it() -> None:
    paid = _outcome("s1", "consolidated", 60.0, 2)
    replayed = {
        **_outcome("s1", "consolidated", 0.4, 1, dropped={"not_a_sentence": 1}),
        "cached": 1,
    }
    only_replayed = {**_outcome("s2", "consolidated", 0.3, 1), "cached": 1}
    whole = report.merged({}, {"per_session": [paid, replayed, only_replayed]})
    assert [r["seconds"] for r in whole["per_session"]] == [60.0, 0.3]
    assert whole["facts"] == 2  # the replay's own count: its check may be newer
    assert whole["dropped_by_reason"] == {"not_a_sentence": 1}
    spent = report.cost(whole)
    assert (spent["sessions"], spent["replayed_without_cost"]) == (1, 1)
    assert spent["seconds_per_session"] == {"mean": 60.0, "p50": 60.0, "max": 60.0}
    repaid = _outcome("s1", "consolidated", 55.0, 3)  # a new prompt: asked and paid again
    assert report.merged({}, {"per_session": [paid, repaid]})["per_session"][0]["seconds"] == 55.0
