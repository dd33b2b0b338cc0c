"""Fusing vector and keyword candidates.

Reciprocal rank fusion (Cormack et al. 2009) needs no score calibration
between cosine distances and BM25, which live on unrelated scales. The paper's
constant is 60; on the LoCoMo dev conversations 10 weighs the top of each
list more and gave recall@10 0.65 against 0.62 (bench/locomo_recall.py; it
was better under every stopword list tried, but it was chosen on that data).
"""

from __future__ import annotations

__all__ = ["fuse", "RRF_K"]

RRF_K = 10


def fuse(
    vector_hits: list[tuple[int, float]] | None,
    keyword_hits: list[tuple[int, float]] | None,
    k: int,
) -> list[tuple[int, float]]:
    """Top ``k`` ``(seq, score)``; one arm alone keeps its own score (cosine similarity or BM25)."""
    if vector_hits is not None and keyword_hits is None:
        return [(seq, 1.0 - distance) for seq, distance in vector_hits[:k]]
    if keyword_hits is not None and vector_hits is None:
        return keyword_hits[:k]
    scores: dict[int, float] = {}
    for hits in (vector_hits or [], keyword_hits or []):
        for rank, (seq, _) in enumerate(hits):
            scores[seq] = scores.get(seq, 0.0) + 1.0 / (RRF_K + rank + 1)
    return sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))[:k]
