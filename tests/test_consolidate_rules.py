"""Consolidation's deterministic rules: relative dates, the fact check, the policy's parsing."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from aios_memory.client.consolidate import (
    ConsolidationPolicy,
    Demotion,
    annotate,
    check_fact,
    find_relative,
    parse_duration,
    resolve_in,
)
from aios_memory.client.consolidate.budget import ELLIPSIS, fit_summary
from aios_memory.client.consolidate.dates import strip_hints
from aios_memory.schemas import InvalidValueError, UnknownTierError

MONDAY = date(2023, 5, 8)  # LoCoMo's first session: "1:56 pm on 8 May, 2023", a Monday


@pytest.mark.parametrize(
    ("phrase", "label"),
    [
        ("yesterday", "7 May 2023"),
        ("last night", "7 May 2023"),
        ("today", "8 May 2023"),
        ("tomorrow", "9 May 2023"),
        ("last year", "2022"),
        ("next year", "2024"),
        ("last month", "April 2023"),
        ("next month", "June 2023"),
        ("last week", "the week of 1 May 2023"),
        ("last weekend", "6 May 2023"),
        ("last Friday", "5 May 2023"),
        ("next Friday", "12 May 2023"),
        ("3 days ago", "5 May 2023"),
        ("two weeks ago", "the week of 24 April 2023"),
        ("a month ago", "April 2023"),
        ("two years ago", "2021"),
        ("in 2 months", "July 2023"),
    ],
)
def test_relative_phrases_resolve_against_the_session_date(phrase: str, label: str) -> None:
    (resolved,) = find_relative(f"We did it {phrase}, really.", MONDAY)
    assert resolved.phrase.lower() == phrase.lower()
    assert resolved.label == label


def test_year_boundaries_and_month_lengths() -> None:
    (jan,) = find_relative("last month", date(2023, 1, 31))
    assert jan.label == "December 2022"
    assert len(jan.days()) == 31
    (feb,) = find_relative("next month", date(2024, 1, 15))
    assert len(feb.days()) == 29  # 2024 is a leap year


def test_annotate_and_resolve_write_the_date_where_the_phrase_is() -> None:
    text = "I went to a support group yesterday and painted last year."
    assert annotate(text, MONDAY) == (
        "I went to a support group yesterday [= 7 May 2023] and painted last year [= 2022]."
    )
    assert resolve_in(text, MONDAY) == (
        "I went to a support group on 7 May 2023 and painted in 2022."
    )
    assert resolve_in("Caroline moved there since last year", MONDAY).endswith("since 2022")
    assert strip_hints(annotate(text, MONDAY)) == text


def test_text_without_relative_dates_is_left_alone() -> None:
    assert find_relative("The yearly report lies next to the weekly one.", MONDAY) == []
    assert resolve_in("no dates here", MONDAY) == "no dates here"
    assert "[=" not in annotate("The yearly report.", MONDAY)


SOURCES = ["Caroline: I went to a LGBTQ support group yesterday and it was so powerful."]
SPEAKERS = ["Caroline", "Melanie"]


@pytest.mark.parametrize(
    ("fact", "reason"),
    [
        ("Caroline went to a LGBTQ support group on 7 May 2023.", None),
        ("On 7 May 2023 Caroline went to a LGBTQ support group.", None),
        ("Caroline's support group was powerful.", None),
        ("Caroline told Melanie about the support group.", None),  # a listener may be named
        ("Melanie went to a LGBTQ support group.", "wrong_subject"),
        ("She went to the support group.", "unnamed_subject"),
        ("Caroline said I went to a group.", "first_person"),
        ("Caroline went to the group with Jolene.", "unknown_name"),
        ("Caroline went to a support group on 9 June 2023.", "unsupported_date"),
        ("Caroline went to a support group on Tuesday.", "unsupported_date"),
        ("Caroline went to 3 support groups.", "unknown_number"),
        ("Caroline went to a support group in 2021.", "unknown_number"),
        ("Caroline|support group", "not_a_sentence"),  # the key written as the text
        ("Caroline.", "not_a_sentence"),
        ("", "not_a_sentence"),
    ],
)
def test_a_fact_must_follow_from_its_sources(fact: str, reason: str | None) -> None:
    verdict = check_fact(fact, SOURCES, base=MONDAY, speakers=SPEAKERS)
    assert verdict.ok is (reason is None), verdict
    assert verdict.reason == reason


def test_a_fact_without_sources_is_dropped() -> None:
    verdict = check_fact("Caroline went.", [], base=MONDAY, speakers=SPEAKERS)
    assert (verdict.ok, verdict.reason) == (False, "no_sources")


def test_dates_written_in_the_sources_support_a_fact() -> None:
    sources = ["Melanie: We moved here on 3 March 2019, a Sunday."]
    fact = "Melanie moved there on Sunday, 3 March 2019."
    assert check_fact(fact, sources, base=MONDAY, speakers=SPEAKERS).ok


def test_demotions_and_durations_parse_or_say_what_is_wrong() -> None:
    assert Demotion.parse("keep") == Demotion("keep")
    assert Demotion.parse("recompress") == Demotion("recompress")
    assert Demotion.parse("forget-after=30d") == Demotion("forget", timedelta(days=30))
    assert Demotion.parse("forget-after:12h").after == timedelta(hours=12)
    assert Demotion.parse("forget-after=30d").describe() == "forget-after=30d"
    assert parse_duration("2w") == timedelta(weeks=2)
    assert parse_duration("5") == timedelta(days=5)
    for bad in ("forget", "recompress=1d", "drop", "forget-after=soon"):
        with pytest.raises(InvalidValueError):
            Demotion.parse(bad)


def test_policy_refuses_unknown_tiers_and_budgets() -> None:
    with pytest.raises(UnknownTierError):
        ConsolidationPolicy(target_tier="attic")
    with pytest.raises(UnknownTierError):
        ConsolidationPolicy(demote={"attic": Demotion()})
    with pytest.raises(InvalidValueError):
        ConsolidationPolicy(summary_tokens=5)
    assert ConsolidationPolicy(summary_tokens=100).summary_words == 75
    assert ConsolidationPolicy().demotion("working") == Demotion("keep")


def test_the_prompt_numbers_turns_carries_date_hints_and_counts_what_did_not_fit() -> None:
    from aios_memory.client.consolidate.prompt import Turn, messages

    turns = [
        Turn(i + 1, "Caroline", f"Caroline: I went there yesterday. {'x' * 400}") for i in range(10)
    ]
    chat, shown = messages(turns, base=MONDAY, summary_words=50, max_facts=4, budget_chars=2000)
    user = chat[1]["content"]
    assert user.startswith("Session on 8 May 2023 between Caroline:")
    assert "[1] Caroline: I went there yesterday [= 7 May 2023]." in user
    assert shown == user.count("\n[") == 4  # the rest did not fit: the caller reports them
    assert "at most 50 words" in chat[0]["content"] and "up to 4" in chat[0]["content"]


def words(text: str) -> int:
    """A stand-in tokenizer with countable tokens: one a word, one the ellipsis."""
    return len(text.replace(ELLIPSIS, " x").split())


def test_a_summary_within_its_budget_is_kept_whole() -> None:
    text = "Caroline met Melanie.  They  talked about painting."
    assert fit_summary(text, 7, words) == ("Caroline met Melanie. They talked about painting.", 0)


def test_a_summary_over_its_budget_keeps_the_whole_sentences_that_fit() -> None:
    text = 'Caroline said "I moved to Boston." Melanie paints lakes! Then they talked for hours.'
    kept, cut = fit_summary(text, 9, words)
    assert kept == 'Caroline said "I moved to Boston." Melanie paints lakes!'
    assert cut == 5
    assert fit_summary(text, 6, words) == ('Caroline said "I moved to Boston."', 8)


def test_a_first_sentence_longer_than_the_budget_is_cut_at_a_word_and_marked() -> None:
    text = "Caroline, who moved to Boston in May, paints, runs and reads every day. Short."
    kept, cut = fit_summary(text, 5, words)
    assert kept == f"Caroline, who moved to{ELLIPSIS}"
    assert words(kept) <= 5
    assert cut == words(" ".join(text.split())) - words(kept)
