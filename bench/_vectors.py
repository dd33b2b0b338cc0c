"""Seeded synthetic memories for the vector benchmarks: clustered unit vectors and short texts.

Real embeddings cluster by topic; uniform random vectors in 384 dimensions are
all nearly orthogonal, which makes a graph search look either trivially easy
or hopeless. So points are drawn around ``centres`` gaussian centres.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_DIM = 384
DEFAULT_CENTRES = 200
DEFAULT_SPREAD = 0.05  # per-dimension noise; the noise norm is about 1, like the centre's
GROUPS = 10  # metadata "group" takes GROUPS values, so one value matches 1/GROUPS of the rows
_VOCABULARY = 5000


@dataclass
class Dataset:
    """Vectors, texts and per-row group numbers to ingest, and queries to ask."""

    vectors: np.ndarray  # (n, dim) float32, unit length
    texts: list[str]
    groups: np.ndarray  # (n,) int, values 0..GROUPS-1
    queries: np.ndarray  # (q, dim) float32, unit length
    query_texts: list[str]


def clustered_unit_vectors(
    rng: np.random.Generator, centres: np.ndarray, n: int, spread: float
) -> np.ndarray:
    """``n`` unit vectors, each a random centre plus gaussian noise."""
    picks = rng.integers(0, len(centres), size=n)
    points = centres[picks] + rng.normal(0.0, spread, size=(n, centres.shape[1]))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points.astype(np.float32)


def random_texts(rng: np.random.Generator, n: int, low: int, high: int) -> list[str]:
    """``n`` texts of ``low``..``high`` words from a Zipf-like vocabulary of made-up words."""
    ranks = np.arange(1, _VOCABULARY + 1)
    weights = 1.0 / ranks
    weights /= weights.sum()
    lengths = rng.integers(low, high + 1, size=n)
    words = rng.choice(_VOCABULARY, size=int(lengths.sum()), p=weights)
    texts, start = [], 0
    for length in lengths:
        texts.append(" ".join(_word(w) for w in words[start : start + length]))
        start += length
    return texts


def _word(number: int) -> str:
    # Pronounceable, distinct, never an English stopword: "kabo", "tenimu", ...
    consonants, vowels = "bdfgklmnprstvz", "aeiou"
    syllables = []
    number += 1
    while number:
        number, rest = divmod(number, len(consonants) * len(vowels))
        syllables.append(consonants[rest // len(vowels)] + vowels[rest % len(vowels)])
    return "".join(syllables) + "x"


def make_dataset(
    n: int,
    queries: int,
    *,
    dim: int = DEFAULT_DIM,
    centres: int = DEFAULT_CENTRES,
    spread: float = DEFAULT_SPREAD,
    seed: int = 0,
) -> Dataset:
    """A seeded dataset; the same arguments always give the same data."""
    rng = np.random.default_rng(seed)
    middle = rng.normal(0.0, 1.0, size=(centres, dim))
    middle /= np.linalg.norm(middle, axis=1, keepdims=True)
    return Dataset(
        vectors=clustered_unit_vectors(rng, middle, n, spread),
        texts=random_texts(rng, n, 6, 16),
        groups=rng.integers(0, GROUPS, size=n),
        queries=clustered_unit_vectors(rng, middle, queries, spread),
        query_texts=random_texts(rng, queries, 2, 4),
    )


def exact_top_k(
    vectors: np.ndarray, queries: np.ndarray, k: int, rows: np.ndarray | None = None
) -> np.ndarray:
    """Row numbers of the exact ``k`` nearest by cosine (inputs are unit vectors)."""
    pool = vectors if rows is None else vectors[rows]
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), 256):
        sims = queries[start : start + 256] @ pool.T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(sims, top, axis=1).argsort(axis=1)[:, ::-1]
        best = np.take_along_axis(top, order, axis=1)
        out[start : start + 256] = best if rows is None else rows[best]
    return out


def int8_roundtrip(vectors: np.ndarray) -> np.ndarray:
    """Vectors as the server stores them: int8 codes scaled by max|v|/127, decoded, unit length."""
    scales = np.abs(vectors).max(axis=1, keepdims=True) / 127.0
    decoded = np.rint(vectors / scales).astype(np.int8).astype(np.float32) * scales
    return (decoded / np.linalg.norm(decoded, axis=1, keepdims=True)).astype(np.float32)


def overlap_at_k(found: list[list[int]], truth: np.ndarray, k: int) -> float:
    """Mean fraction of the true ``k`` nearest that were found (recall@k against exact)."""
    scores = [len(set(f[:k]) & set(t[:k].tolist())) / k for f, t in zip(found, truth, strict=False)]
    return round(float(np.mean(scores)), 4)
