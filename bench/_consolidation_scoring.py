"""How ``consolidation.py`` scores what a store returns: pure functions, no I/O, no model.

* **Content words** (``content_words``): the text lowercased, every character that is not a
  letter or a digit turned into a space, split on spaces, minus ``STOPWORDS`` (a short fixed list
  of English function words below, kept here so the score never moves with a library's list).
  "Caroline's 7 May 2023 trip!" -> ``["caroline", "s", "7", "may", "2023", "trip"]``; the
  stray ``s`` of a possessive is a stopword too, so it goes.
* **Answer recall@k** (``answer_found``): a question counts as answered when at least half of its
  gold answer's distinct content words are among the content words of the top-k texts joined. A
  gold answer with no content word at all (``"no"``) falls back to its plain words; with none of
  those either it can never count.
* **Evidence recall@k through provenance** (``evidence_found``): the dia_ids a hit stands for are
  its own for a raw turn, its sources' for a fact (metadata ``aimem:sources``, 1-3 turns), none for
  a summary (it lists all its session's turns, which would make any hit find everything). Scored
  like ``bench/locomo_recall.py``: the share of the question's evidence ids among those of the
  top-k, averaged over questions.
* **Token F1** (``token_f1``): SQuAD's: both texts lowercased, punctuation and the articles
  a/an/the removed, tokens compared as multisets (stopwords are kept: a short answer is often one).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "STOPWORDS",
    "answer_found",
    "by_category",
    "content_words",
    "evidence_found",
    "hit_dia_ids",
    "plain_words",
    "token_f1",
]

STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself yourselves
    s t d ll m re ve""".split()  # noqa: SIM905 (a word list reads better as text)
)
_NOT_WORD = re.compile(r"[^0-9a-z]+")
_ARTICLES = frozenset({"a", "an", "the"})
SOURCES_KEY = "aimem:sources"


def plain_words(text: Any) -> list[str]:
    """Lowercased words: runs of ASCII letters and digits (accents and punctuation split words)."""
    return [w for w in _NOT_WORD.split(str(text).lower()) if w]


def content_words(text: Any) -> list[str]:
    """``plain_words`` without ``STOPWORDS``."""
    return [w for w in plain_words(text) if w not in STOPWORDS]


def answer_found(answer: Any, texts: Iterable[str]) -> bool:
    """Whether at least half of the answer's distinct content words are in ``texts``."""
    wanted = set(content_words(answer)) or set(plain_words(answer))
    if not wanted:
        return False
    have = set(plain_words(" ".join(texts)))  # a superset of its content words
    return 2 * len(wanted & have) >= len(wanted)


def hit_dia_ids(kind: str, metadata: Mapping[str, Any], dia_of: Mapping[str, str]) -> set[str]:
    """The dia_ids one hit stands for: a raw turn its own, a fact its sources', a summary none.

    ``dia_of`` maps the id of every raw turn to its dia_id (a source no longer known, or
    not a turn, adds nothing).
    """
    if kind == "summary":
        return set()
    if kind == "fact":
        return {dia_of[s] for s in metadata.get(SOURCES_KEY) or [] if s in dia_of}
    own = metadata.get("dia_id")
    return {own} if own else set()


def evidence_found(evidence: Iterable[str], found: Iterable[set[str]]) -> float:
    """The share of ``evidence`` among the union of ``found`` (each hit's dia_ids)."""
    wanted = set(evidence)
    if not wanted:
        return 0.0
    have: set[str] = set().union(*found)
    return len(wanted & have) / len(wanted)


def token_f1(prediction: Any, gold: Any) -> float:
    """SQuAD token F1 between a predicted and a gold answer (0.0 when either has no token)."""
    pred = [w for w in plain_words(prediction) if w not in _ARTICLES]
    true = [w for w in plain_words(gold) if w not in _ARTICLES]
    common = sum((Counter(pred) & Counter(true)).values())
    if not pred or not true or not common:
        return 0.0
    precision, recall = common / len(pred), common / len(true)
    return 2 * precision * recall / (precision + recall)


def by_category(categories: Sequence[int], values: Sequence[float], name: str) -> dict[str, Any]:
    """``{name, "questions", "by_category": {c: {name, "questions"}}}``: means rounded to 4."""
    out: dict[str, Any] = {name: _mean(values), "questions": len(values), "by_category": {}}
    for category in sorted(set(categories)):
        subset = [v for c, v in zip(categories, values, strict=True) if c == category]
        out["by_category"][str(category)] = {name: _mean(subset), "questions": len(subset)}
    return out


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None
