"""Relative dates ("yesterday", "last year", "two weeks ago") resolved against a session's time.

A small language model turns "I went there yesterday" into a fact with no date, or
with a wrong one: it cannot do calendar arithmetic reliably. So the arithmetic is
done here, twice: the turns shown to the model carry the resolved date beside each
relative phrase (``annotate``), and a phrase still left in a fact is replaced by its
date (``resolve_in``). The fact check (``check``) accepts exactly these dates.

The phrases are the common English ones of conversation; anything else is left as
written (and a fact that states a date the sources do not support is dropped by the
check, so a missed phrase costs a fact, never a wrong date).
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, timedelta

__all__ = [
    "ResolvedDate",
    "find_relative",
    "annotate",
    "resolve_in",
    "strip_hints",
    "day_label",
    "MONTHS",
]

MONTHS = {name.lower(): number for number, name in enumerate(calendar.month_name) if name}
WEEKDAYS = {name.lower(): number for number, name in enumerate(calendar.day_name)}
_NUMBER_WORDS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "a couple of": 2,
}  # fmt: skip
_COUNT = r"(\d{1,2}|a couple of|an?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)"
_UNIT = r"(day|week|month|year)s?"
_WEEKDAY = "(" + "|".join(WEEKDAYS) + ")"
_PATTERNS = [
    ("fixed", re.compile(r"\b(yesterday|today|tonight|tomorrow|last night)\b", re.I)),
    ("ago", re.compile(rf"\b{_COUNT} {_UNIT} ago\b", re.I)),
    ("in", re.compile(rf"\bin {_COUNT} {_UNIT}\b", re.I)),
    ("weekend", re.compile(r"\b(last|this|next) weekend\b", re.I)),
    ("weekday", re.compile(rf"\b(last|this|next) {_WEEKDAY}\b", re.I)),
    ("unit", re.compile(r"\b(last|this|next) (week|month|year)\b", re.I)),
]


@dataclass(frozen=True)
class ResolvedDate:
    """A relative phrase, where it stands in its text, and the date it means.

    ``granularity`` is ``day``, ``week``, ``month`` or ``year``; ``start`` is the first
    day of that span; ``label`` is how facts write it ("7 May 2023", "May 2023", "2022",
    "the week of 1 May 2023").
    """

    phrase: str
    start_at: int
    end_at: int
    start: date
    granularity: str

    @property
    def label(self) -> str:
        if self.granularity == "year":
            return str(self.start.year)
        if self.granularity == "month":
            return f"{calendar.month_name[self.start.month]} {self.start.year}"
        if self.granularity == "week":
            return f"the week of {day_label(self.start)}"
        return day_label(self.start)

    def days(self) -> list[date]:
        """Every day of the span (what a fact may state and still be supported)."""
        if self.granularity == "day":
            return [self.start]
        if self.granularity == "week":
            return [self.start + timedelta(days=i) for i in range(7)]
        if self.granularity == "month":
            last = calendar.monthrange(self.start.year, self.start.month)[1]
            return [self.start.replace(day=d) for d in range(1, last + 1)]
        return []  # a year: its number is what a fact may state


def day_label(day: date) -> str:
    """``7 May 2023``: the form facts use (unambiguous, and what LoCoMo's answers use)."""
    return f"{day.day} {calendar.month_name[day.month]} {day.year}"


def find_relative(text: str, base: date) -> list[ResolvedDate]:
    """The relative phrases of ``text`` resolved against ``base``, in text order, no overlaps."""
    found: list[ResolvedDate] = []
    taken: list[range] = []
    for kind, pattern in _PATTERNS:
        for match in pattern.finditer(text):
            if any(match.start() in span or match.end() - 1 in span for span in taken):
                continue
            resolved = _resolve(kind, match, base)
            if resolved is not None:
                start, granularity = resolved
                found.append(
                    ResolvedDate(match.group(0), match.start(), match.end(), start, granularity)
                )
                taken.append(range(match.start(), match.end()))
    return sorted(found, key=lambda r: r.start_at)


def annotate(text: str, base: date) -> str:
    """``text`` with ``[= date]`` after each relative phrase, for the model to copy."""
    out, last = [], 0
    for resolved in find_relative(text, base):
        out += [text[last : resolved.end_at], f" [= {resolved.label}]"]
        last = resolved.end_at
    return "".join(out) + text[last:]


_HINT = re.compile(r"\s*\[=[^\]]*\]")


def strip_hints(text: str) -> str:
    """``text`` without the ``[= date]`` hints a model may have copied from ``annotate``."""
    return _HINT.sub("", text)


def resolve_in(text: str, base: date) -> str:
    """``text`` with each relative phrase replaced by its absolute date (for facts)."""
    out, last = [], 0
    for resolved in find_relative(text, base):
        preposition = "on " if resolved.granularity == "day" else "in "
        if resolved.granularity == "week":
            preposition = "during "
        before = text[last : resolved.start_at]
        if re.search(r"\b(on|in|during|since|by|from|until)\s*$", before, re.I):
            preposition = ""
        out += [before, preposition + resolved.label]
        last = resolved.end_at
    return "".join(out) + text[last:]


def _resolve(kind: str, match: re.Match[str], base: date) -> tuple[date, str] | None:
    groups = [g.lower() if g else g for g in match.groups()]
    if kind == "fixed":
        offset = {"yesterday": -1, "last night": -1, "today": 0, "tonight": 0, "tomorrow": 1}
        return base + timedelta(days=offset[groups[0]]), "day"
    if kind in ("ago", "in"):
        count = int(groups[0]) if groups[0].isdigit() else _NUMBER_WORDS[groups[0]]
        return _shift(base, groups[1], -count if kind == "ago" else count)
    if kind == "weekend":
        saturday = base + timedelta(days=(5 - base.weekday()) % 7)
        step = {"last": -7, "this": 0, "next": 7}[groups[0]]
        if groups[0] == "last" and base.weekday() >= 5:
            step = -7 if base.weekday() == 5 else 0  # on a Sunday "last weekend" is yesterday's
        return saturday + timedelta(days=step), "day"
    if kind == "weekday":
        return _weekday(base, groups[0], WEEKDAYS[groups[1]]), "day"
    return _unit(base, groups[0], groups[1])


def _shift(base: date, unit: str, count: int) -> tuple[date, str]:
    if unit == "day":
        return base + timedelta(days=count), "day"
    if unit == "week":
        return base + timedelta(weeks=count), "day" if abs(count) <= 1 else "week"
    if unit == "month":
        return _month_start(base, count), "month"
    return date(base.year + count, 1, 1), "year"


def _weekday(base: date, which: str, weekday: int) -> date:
    if which == "last":
        back = (base.weekday() - weekday) % 7 or 7
        return base - timedelta(days=back)
    ahead = (weekday - base.weekday()) % 7
    if which == "next":
        ahead = ahead or 7
    return base + timedelta(days=ahead)


def _unit(base: date, which: str, unit: str) -> tuple[date, str]:
    step = {"last": -1, "this": 0, "next": 1}[which]
    if unit == "week":
        monday = base - timedelta(days=base.weekday())
        return monday + timedelta(weeks=step), "week"
    if unit == "month":
        return _month_start(base, step), "month"
    return date(base.year + step, 1, 1), "year"


def _month_start(base: date, months: int) -> date:
    index = base.year * 12 + base.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)
