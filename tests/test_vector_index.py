"""The vector index against brute force: pending tail, graph, removals, filters, save/load."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import unit_vectors

from aios_memory.flight_server.search.ivf_index import IvfIndex
from aios_memory.flight_server.search.vector_index import HnswParams, VectorIndex

# Both kinds answer alike (the contract); an IVF trains at persist_min, so these tests set it
# low enough for their rows to reach the IVF lists, and probe every list so that the IVF
# answers exactly as brute force over its codes (8-bit: the order of near ties may differ).
KINDS = {
    "hnsw": lambda directory, dim, **p: VectorIndex(directory, dim, HnswParams(**p)),
    "ivf": lambda directory, dim, **p: IvfIndex(
        directory, dim, HnswParams(**{"persist_min": 100, "nprobe": 1_000, **p, "kind": "ivf"})
    ),
}


def brute(vectors: np.ndarray, labels: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    distances = 1.0 - vectors @ query
    return [int(labels[i]) for i in np.argsort(distances, kind="stable")[:k]]


def same_hits(kind: str, got: np.ndarray, expected: list[int]) -> bool:
    """hnswlib holds float32: the exact order. IVF codes are 8-bit: the same rows, and near
    ties may swap (a code is off by at most half a step, 1/255 of a dimension's range)."""
    found = [int(x) for x in got]
    if kind == "hnsw":
        return found == expected
    return len(found) == len(expected) and len(set(found) & set(expected)) >= 0.9 * len(expected)


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("built", [False, True])
def test_search_matches_brute_force_with_removals_and_filters(tmp_path, built, kind):
    vectors = unit_vectors(600, dim=12, seed=4)
    labels = np.arange(1, 601, dtype=np.uint64)
    index = KINDS[kind](tmp_path / "v", 12, ef_search=200)
    index.open(np.empty(0, np.uint64), lambda _: np.empty((0, 12), np.float32))
    index.add(labels[:300], vectors[:300])
    index.build_all()
    index.add(labels[300:], vectors[300:])  # half in the graph, half pending
    if built:
        index.build_all()
    assert index.pending == (0 if built else 300)
    removed = labels[::7]
    index.remove(removed)
    alive = ~np.isin(labels, removed)
    query = unit_vectors(1, dim=12, seed=99)[0]
    got, _ = index.search(query, 10)
    assert same_hits(kind, got, brute(vectors[alive], labels[alive], query, 10))
    allowed = labels[(labels % 3 == 0)]
    mask = alive & np.isin(labels, allowed)
    got, _ = index.search(query, 25, allowed=allowed)
    assert same_hits(kind, got, brute(vectors[mask], labels[mask], query, 25))
    assert set(int(x) for x in got) <= set(int(x) for x in labels[mask])
    assert len(index) == int(alive.sum())


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_saved_index_reloads_and_reconciles(tmp_path, kind):
    vectors = unit_vectors(200, dim=8, seed=5)
    labels = np.arange(1, 201, dtype=np.uint64)
    first = KINDS[kind](tmp_path / "v", 8, persist_min=10)
    first.open(np.empty(0, np.uint64), lambda _: np.empty((0, 8), np.float32))
    first.add(labels, vectors)
    assert first.save()
    by_label = dict(zip(labels.tolist(), vectors, strict=True))
    live = labels[labels % 2 == 0]  # the records say half were deleted since the save
    second = KINDS[kind](tmp_path / "v", 8, persist_min=10)
    second.open(live, lambda wanted: np.stack([by_label[int(x)] for x in wanted]))
    assert second.loaded_from_disk
    assert len(second) == len(live)
    query = vectors[10]
    got, _ = second.search(query, 5)
    assert same_hits(kind, got, brute(vectors[labels % 2 == 0], live, query, 5))


@pytest.mark.parametrize(("kind", "overfetch"), [("hnsw", True), ("hnsw", False), ("ivf", False)])
def test_broad_filters_match_brute_force(tmp_path, monkeypatch, kind, overfetch):
    """Over 4,096 allowed rows: over-fetch and filter, or the index's own filter."""
    from aios_memory.flight_server.search import vector_index

    if not overfetch:
        monkeypatch.setattr(vector_index, "OVERFETCH_MIN_FRACTION", 1.1)
    vectors = unit_vectors(6000, dim=8, seed=6)
    labels = np.arange(1, 6001, dtype=np.uint64)
    index = KINDS[kind](tmp_path / "v", 8, ef_search=400)
    index.open(np.empty(0, np.uint64), lambda _: np.empty((0, 8), np.float32))
    index.add(labels, vectors)
    index.build_all()
    allowed = labels[labels % 5 != 0]  # 4,800 rows
    mask = labels % 5 != 0
    for seed in range(5):
        query = unit_vectors(1, dim=8, seed=100 + seed)[0]
        got, _ = index.search(query, 10, allowed=allowed)
        assert same_hits(kind, got, brute(vectors[mask], labels[mask], query, 10))


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("persist_min", [10_000, 50])  # exact, and in the lists / the graph
def test_adding_a_live_label_again_adds_no_second_hit(tmp_path, kind, persist_min):
    # An index opened from the records right after a commit already holds the commit's
    # vectors when the write path adds them (a device's sealed vectors): one hit each.
    vectors = unit_vectors(80, dim=12, seed=2)
    labels = np.arange(1, 81, dtype=np.uint64)
    index = KINDS[kind](tmp_path / "v", 12, persist_min=persist_min)
    index.open(labels[:60], lambda wanted: vectors[wanted.astype(np.int64) - 1])
    index.add(labels[40:], vectors[40:])  # 40..59 live already; 60..79 new
    index.add(labels[70:], vectors[70:])  # and again, before the build
    index.add(np.array([5, 5], np.uint64), vectors[[4, 4]])
    for _ in range(2):
        got, _ = index.search(vectors[50], 80)
        assert sorted(int(x) for x in got) == list(range(1, 81)), kind
        index.build_all()
    assert len(index) == 80
