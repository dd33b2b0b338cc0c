"""The scoring of ``bench/consolidation.py`` on small hand-made inputs (values derived by hand).

Pure functions: no server, no model. The bench end to end needs the consolidation and the
local model; see the bench's docstring for its command line.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
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
