"""Fusing vector and keyword candidates, and shaping hits.

Reciprocal rank fusion (Cormack et al. 2009) needs no score calibration
between cosine distances and BM25, which live on unrelated scales; k=60 is
the paper's constant. bench/locomo_recall.py measures it against each arm.
"""

from __future__ import annotations

import pyarrow as pa

from aios_memory.schemas import HIT_SCHEMA, RECORD_SCHEMA

__all__ = ["fuse", "hit_table", "RRF_K"]

RRF_K = 60


def fuse(vector_hits: list[tuple[int, float]] | None,
         keyword_hits: list[tuple[int, float]] | None, k: int) -> list[tuple[int, float]]:
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


def hit_table(rows: pa.Table, ranked: list[tuple[int, float]]) -> pa.Table:
    """Rows (with a ``seq`` column) ordered as ``ranked``, with a ``score`` column."""
    position = {seq: i for i, seq in enumerate(rows.column("seq").to_pylist())}
    order = [position[seq] for seq, _ in ranked if seq in position]
    scores = [score for seq, score in ranked if seq in position]
    picked = rows.take(pa.array(order, pa.int64())) if order else rows.slice(0, 0)
    columns = [picked.column(f.name).cast(f.type) for f in RECORD_SCHEMA]
    columns.append(pa.array(scores, pa.float64()))
    return pa.Table.from_arrays(columns, schema=HIT_SCHEMA)
