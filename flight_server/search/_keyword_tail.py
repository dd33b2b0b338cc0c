"""Keyword changes staged but not yet committed to tantivy, searchable at once.

A tantivy commit fsyncs several files (17-55 ms measured here). Committing on
the read path made every hybrid read after a put pay one; committing on every
put would make writes pay it. Instead the staged documents are kept here, by
id, with their analyzed terms: a search scores them itself with BM25 and the
index's own statistics, and drops the committed hits that a staged change
replaced or deleted (``dead``: their seqs, which the store knows). The scores
are an approximation of tantivy's (the length norm uses a running mean, not
tantivy's quantized field norms), which fusion tolerates since it uses ranks;
which documents match is exactly what a committed index would match.

A ``Tail`` is immutable: ``KeywordIndex`` swaps in a new one per change, so a
search holds a consistent snapshot without a lock.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

__all__ = ["StagedDoc", "Tail", "bm25"]

# tantivy's BM25 constants.
K1, B = 1.2, 0.75


@dataclass(frozen=True)
class StagedDoc:
    """One staged version: ``terms`` None is a removal."""

    seq: int
    tier: str
    privacy: int
    terms: Counter[str] | None
    length: int


@dataclass(frozen=True)
class Tail:
    """The staged documents by id and the seqs of the committed ones they kill."""

    docs: dict[str, StagedDoc] = field(default_factory=dict)
    dead: frozenset[int] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.docs) or bool(self.dead)

    def with_changes(self, staged: dict[str, StagedDoc], dead: Iterable[int]) -> Tail:
        """A new tail: ``staged`` replace the versions of their ids, ``dead`` are added."""
        return Tail({**self.docs, **staged}, self.dead | frozenset(dead))

    def texts(self) -> list[StagedDoc]:
        """The staged documents that have a text (not removals)."""
        return [doc for doc in self.docs.values() if doc.terms is not None]

    def matching(
        self,
        terms: list[str],
        tiers: list[str] | None,
        allowed: np.ndarray | None,
        max_privacy: int | None,
    ) -> list[StagedDoc]:
        """The staged documents with a query term that the filters admit."""
        found = []
        for doc in self.texts():
            assert doc.terms is not None
            if not any(term in doc.terms for term in terms):
                continue
            if tiers is not None and doc.tier not in tiers:
                continue
            if max_privacy is not None and doc.privacy > max_privacy:
                continue
            if allowed is not None and not _contains(allowed, doc.seq):
                continue
            found.append(doc)
        return found


def bm25(
    doc: StagedDoc, terms: list[str], doc_freq: dict[str, int], num_docs: int, avg_len: float
) -> float:
    """The BM25 score of ``doc`` for ``terms`` (tantivy's formula and constants)."""
    assert doc.terms is not None
    norm = K1 * (1 - B + B * doc.length / max(avg_len, 1.0))
    score = 0.0
    for term in terms:
        tf = doc.terms.get(term, 0)
        if tf:
            df = doc_freq.get(term, 0)
            idf = math.log(1 + (num_docs - df + 0.5) / (df + 0.5))
            score += idf * tf * (K1 + 1) / (tf + norm)
    return score


def _contains(sorted_seqs: np.ndarray, seq: int) -> bool:
    at = int(np.searchsorted(sorted_seqs, seq))
    return at < len(sorted_seqs) and int(sorted_seqs[at]) == seq
