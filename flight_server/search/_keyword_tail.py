"""Keyword changes staged but not yet committed to tantivy, searchable at once.

A tantivy commit fsyncs several files (17-55 ms measured here). Committing on
the read path made every hybrid read after a put pay one; committing on every
put would make writes pay it. Instead the staged documents are kept here, by
id, with their analyzed terms: a search scores them itself with BM25 and the
index's own statistics, and drops the committed hits that a staged change
replaced or deleted (``dead``: their seqs, which the store knows). Which
documents match is exactly what a committed index would match. Scores follow
tantivy's BM25 to the bit where they can (float32, its quantized field norms,
the document count and mean length that its own explanation of a committed hit
reports), so a staged document ranks where it will rank once committed; with
no committed hit to ask, the mean length is estimated (fusion uses ranks only).

A ``Tail`` is immutable: ``KeywordIndex`` swaps in a new one per change, so a
search holds a consistent snapshot without a lock.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import tantivy

__all__ = ["StagedDoc", "Tail", "bm25", "fieldnorm", "explained_stats"]

# tantivy's BM25 constants, in its float32.
K1, B = np.float32(1.2), np.float32(0.75)


def _fieldnorm_table() -> np.ndarray:
    """tantivy's 256 field-norm values: lengths exact to 40, then 8 steps of each power of 2."""
    values, step = list(range(41)), 2
    while len(values) < 256:
        values.extend(values[-1] + step * (i + 1) for i in range(8))
        step *= 2
    return np.asarray(values[:256], np.int64)


_FIELDNORMS = _fieldnorm_table()


def fieldnorm(length: int) -> np.float32:
    """The length tantivy stores for a field of ``length`` tokens (one byte, so rounded down)."""
    at = int(np.searchsorted(_FIELDNORMS, length, side="right")) - 1
    return np.float32(_FIELDNORMS[max(at, 0)])


@dataclass(frozen=True)
class StagedDoc:
    """One staged version: ``text`` None is a removal.

    Its terms are analyzed on first use: a bulk put is committed long before most of
    its documents meet a search, and analyzing costs about 30-150 us a text here.
    """

    seq: int
    tier: str
    privacy: int
    text: str | None
    analyze: Callable[[str], list[str]] = field(repr=False, compare=False)

    @cached_property
    def terms(self) -> Counter[str] | None:
        """Term frequencies of the analyzed text (None for a removal)."""
        return None if self.text is None else Counter(self.analyze(self.text))

    @property
    def length(self) -> int:
        """Tokens in the analyzed text."""
        return sum(self.terms.values()) if self.terms is not None else 0


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
        return [doc for doc in self.docs.values() if doc.text is not None]

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
    """The BM25 score of ``doc`` for ``terms``, computed as tantivy computes it (float32)."""
    assert doc.terms is not None
    f32 = np.float32
    norm = K1 * (f32(1) - B + B * fieldnorm(doc.length) / f32(max(avg_len, 1e-6)))
    score = f32(0)
    for term in terms:
        tf = doc.terms.get(term, 0)
        if tf:
            df = f32(doc_freq.get(term, 0))
            x = (f32(num_docs) - df + f32(0.5)) / (df + f32(0.5))
            # A correctly rounded float32 log, as Rust's f32::ln gives (numpy's is not).
            weight = f32(math.log(float(f32(1) + x))) * (f32(1) + K1)
            score = f32(score + weight * (f32(tf) / (f32(tf) + norm)))
    return float(score)


def _contains(sorted_seqs: np.ndarray, seq: int) -> bool:
    at = int(np.searchsorted(sorted_seqs, seq))
    return at < len(sorted_seqs) and int(sorted_seqs[at]) == seq


def explained_stats(
    query: tantivy.Query, searcher: tantivy.Searcher, address: tantivy.DocAddress
) -> tuple[int, float] | None:
    """``(N, avgdl)`` as tantivy scored ``address`` for ``query`` (deleted documents that
    are not merged away yet count in both, which tantivy-py reports nowhere else)."""
    found: dict[str, float] = {}

    def walk(node: dict) -> None:
        description = str(node.get("description", ""))
        for key, prefix in (("n", "N, total number"), ("avgdl", "avgdl, average")):
            if description.startswith(prefix):
                found.setdefault(key, float(node["value"]))
        for child in node.get("details", []):
            walk(child)

    walk(json.loads(query.explain(searcher, address).to_json()))
    if "n" not in found or "avgdl" not in found:
        return None
    return int(found["n"]), found["avgdl"]
