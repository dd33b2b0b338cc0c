"""The vector index against brute force: pending tail, graph, removals, filters, save/load."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import unit_vectors

from aios_memory.flight_server.search.vector_index import HnswParams, VectorIndex


def brute(vectors: np.ndarray, labels: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    distances = 1.0 - vectors @ query
    return [int(labels[i]) for i in np.argsort(distances, kind="stable")[:k]]


@pytest.mark.parametrize("built", [False, True])
def test_search_matches_brute_force_with_removals_and_filters(tmp_path, built):
    vectors = unit_vectors(600, dim=12, seed=4)
    labels = np.arange(1, 601, dtype=np.uint64)
    index = VectorIndex(tmp_path / "v", 12, HnswParams(ef_search=200))
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
    assert [int(x) for x in got] == brute(vectors[alive], labels[alive], query, 10)
    allowed = labels[(labels % 3 == 0)]
    mask = alive & np.isin(labels, allowed)
    got, _ = index.search(query, 25, allowed=allowed)
    assert [int(x) for x in got] == brute(vectors[mask], labels[mask], query, 25)
    assert len(index) == int(alive.sum())


def test_saved_index_reloads_and_reconciles(tmp_path):
    vectors = unit_vectors(200, dim=8, seed=5)
    labels = np.arange(1, 201, dtype=np.uint64)
    params = HnswParams(persist_min=10)
    first = VectorIndex(tmp_path / "v", 8, params)
    first.open(np.empty(0, np.uint64), lambda _: np.empty((0, 8), np.float32))
    first.add(labels, vectors)
    assert first.save()
    by_label = dict(zip(labels.tolist(), vectors, strict=True))
    live = labels[labels % 2 == 0]  # the records say half were deleted since the save
    second = VectorIndex(tmp_path / "v", 8, params)
    second.open(live, lambda wanted: np.stack([by_label[int(x)] for x in wanted]))
    assert second.loaded_from_disk
    assert len(second) == len(live)
    query = vectors[10]
    got, _ = second.search(query, 5)
    assert [int(x) for x in got] == brute(vectors[labels % 2 == 0], live, query, 5)


@pytest.mark.parametrize("overfetch", [True, False])
def test_broad_filters_match_brute_force(tmp_path, monkeypatch, overfetch):
    """Over 4,096 allowed rows: over-fetch and filter, or hnswlib's own filter as fallback."""
    from aios_memory.flight_server.search import vector_index

    if not overfetch:
        monkeypatch.setattr(vector_index, "OVERFETCH_MIN_FRACTION", 1.1)
    vectors = unit_vectors(6000, dim=8, seed=6)
    labels = np.arange(1, 6001, dtype=np.uint64)
    index = VectorIndex(tmp_path / "v", 8, HnswParams(ef_search=400))
    index.open(np.empty(0, np.uint64), lambda _: np.empty((0, 8), np.float32))
    index.add(labels, vectors)
    index.build_all()
    allowed = labels[labels % 5 != 0]  # 4,800 rows
    mask = labels % 5 != 0
    for seed in range(5):
        query = unit_vectors(1, dim=8, seed=100 + seed)[0]
        got, _ = index.search(query, 10, allowed=allowed)
        assert [int(x) for x in got] == brute(vectors[mask], labels[mask], query, 10)
