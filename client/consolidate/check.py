"""The check that keeps invented memories out: a fact must follow from the turns it cites.

A small model writes fluent facts with a wrong speaker, a number from another turn
or a date it made up. Judging entailment would take a second model call per fact
(seconds each on 2 cores); what an invented detail almost always shows is cheaper
to test, so a fact is kept only if:

- it is a sentence, not a label: two words or more, and no "|" (a 1.5B model sometimes
  writes a fact's key, "Nate|cooking skills", as its text);
- its subject is named (it does not start with a pronoun) and it speaks in the third
  person (no "I", "me", "my", "we", "you": a copied turn is not a fact);
- its first name (the subject) appears in its sources: a turn's speaker counts, so
  "Melanie went to the group" citing only Caroline's turn is dropped (the wrong
  speaker is the commonest slip); every other name (a capitalized word that is not
  a sentence word, month or weekday) appears there too or is one of the session's
  speakers (a turn's listener is often named without being quoted);
- every number appears in its sources or is part of a date they support;
- every month and weekday belongs to a date its sources support: one written in
  them, the session's own date, or a relative phrase of theirs resolved
  against it (``dates``).

Which sources count is the fact's own citations (1-3 turns); a fact citing no turn,
or a turn that does not exist, is dropped. What is dropped is counted by reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from .dates import MONTHS, WEEKDAYS, find_relative

__all__ = ["FactCheck", "check_fact", "content_words", "REASONS"]

REASONS = (
    "not_a_sentence",
    "unnamed_subject",
    "first_person",
    "wrong_subject",
    "unknown_name",
    "unknown_number",
    "unsupported_date",
    "no_sources",
)
_PRONOUNS = {
    "i", "he", "she", "they", "we", "you", "it", "his", "her", "my", "our", "their", "your",
    "him", "them", "us", "me", "this", "that", "these", "those", "someone", "both",
}  # fmt: skip
_FIRST_PERSON = {
    "i",
    "me",
    "my",
    "mine",
    "myself",
    "we",
    "us",
    "our",
    "ours",
    "you",
    "your",
    "yours",
}
# Capitalized words that start sentences or clauses without naming anyone.
_SENTENCE_WORDS = {
    "a", "an", "the", "and", "but", "or", "on", "in", "at", "as", "for", "with", "from", "to",
    "of", "by", "after", "before", "during", "since", "when", "while", "there", "here", "also",
    "then", "not", "no", "yes", "all", "some", "one", "two", "three", "last", "next", "every",
    "each", "its", "is", "was", "has", "had", "have", "will", "would", "can", "could", "may",
    "might", "should", "ok", "okay", "hey", "hi", "mr", "mrs", "ms", "dr", "st",
}  # fmt: skip
_WORD = re.compile(r"[A-Za-z][A-Za-z'’\-]*")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_STOPWORDS = _PRONOUNS | _SENTENCE_WORDS | {
    "be", "been", "being", "are", "were", "do", "does", "did", "so", "if", "about", "into",
    "what", "which", "who", "whom", "how", "why", "very", "just", "really", "like",
}  # fmt: skip


@dataclass(frozen=True)
class FactCheck:
    """The verdict on one fact: ``ok``, or the reason it was dropped and the offending word."""

    ok: bool
    reason: str | None = None
    word: str | None = None


def check_fact(
    fact: str, sources: Sequence[str], *, base: date, speakers: Iterable[str] = ()
) -> FactCheck:
    """Whether ``fact`` follows from ``sources`` (turn texts) said on ``base`` (see module)."""
    if not sources:
        return FactCheck(False, "no_sources")
    words = _WORD.findall(fact)
    if "|" in fact or len(words) < 2:
        return FactCheck(False, "not_a_sentence", fact.strip()[:40] or None)
    if words[0].lower() in _PRONOUNS:
        return FactCheck(False, "unnamed_subject", words[0] if words else None)
    if any(w.lower() in _FIRST_PERSON for w in words):
        return FactCheck(
            False, "first_person", next(w for w in words if w.lower() in _FIRST_PERSON)
        )
    support = _Support(sources, base, speakers)
    subject = next((w for w in words if support.is_name(w)), None)
    if subject is not None and _stem(subject) not in support.cited:
        return FactCheck(False, "wrong_subject", subject)
    for word in words:
        verdict = support.word(word)
        if not verdict.ok:
            return verdict
    for number in _NUMBER.findall(fact):
        if not support.number(number):
            return FactCheck(False, "unknown_number", number)
    return FactCheck(True)


def content_words(text: str) -> set[str]:
    """Lowercase words and numbers of ``text`` that carry content (no pronouns, articles,
    auxiliaries): a fact whose content words the summary all holds adds nothing to it."""
    words = {w.lower().strip("'’") for w in _WORD.findall(text)} - _STOPWORDS
    return words | {n.replace(",", "") for n in _NUMBER.findall(text)}


class _Support:
    """What a fact's sources support: their words, numbers and dates."""

    def __init__(self, sources: Sequence[str], base: date, speakers: Iterable[str]) -> None:
        text = " ".join(sources)
        self.cited = {_stem(w) for w in _WORD.findall(text)}
        self.words = self.cited | {_stem(s) for s in speakers}
        self.numbers = {n.replace(",", "") for n in _NUMBER.findall(text)}
        days = [base]
        for resolved in find_relative(text, base):
            days += resolved.days() or [resolved.start]
            self.numbers.add(str(resolved.start.year))
        self.numbers |= {str(d.day) for d in days} | {str(d.year) for d in days}
        self.months = {d.month for d in days} | {
            MONTHS[w.lower()] for w in _WORD.findall(text) if w.lower() in MONTHS
        }
        self.weekdays = {d.weekday() for d in days}

    def word(self, word: str) -> FactCheck:
        lower = word.lower()
        if lower in MONTHS:
            ok = MONTHS[lower] in self.months
            return FactCheck(ok, None if ok else "unsupported_date", word)
        if lower in WEEKDAYS:
            ok = WEEKDAYS[lower] in self.weekdays or _stem(word) in self.words
            return FactCheck(ok, None if ok else "unsupported_date", word)
        if not self.is_name(word):
            return FactCheck(True)
        ok = _stem(word) in self.words
        return FactCheck(ok, None if ok else "unknown_name", word)

    @staticmethod
    def is_name(word: str) -> bool:
        lower = word.lower()
        return (
            word[0].isupper()
            and lower not in _SENTENCE_WORDS
            and lower not in _PRONOUNS
            and lower not in MONTHS
            and lower not in WEEKDAYS
        )

    def number(self, number: str) -> bool:
        plain = number.replace(",", "")
        return plain in self.numbers or plain.lstrip("0") in self.numbers


def _stem(word: str) -> str:
    # "Caroline's" and "Caroline" are one name; case does not matter.
    lower = word.lower().replace("’", "'")
    return lower[:-2] if lower.endswith("'s") else lower.rstrip("'")
