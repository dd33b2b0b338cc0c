"""What only the IVF index does: save no vector, take them from the records on open, move a
graph's directory over, probe wider for selective filters (the shared contract is in
test_vector_index.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from conftest import unit_vectors

from aios_memory.flight_server.search.ivf_index import LISTS_FILE, STATE_FILE, IvfIndex
from aios_memory.flight_server.search.vector_index import INDEX_FILE, HnswParams, VectorIndex

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from _vectors import GROUPS, exact_top_k, make_dataset  # noqa: E402

DIM = 64


def ivf(directory, **params) -> IvfIndex:
    return IvfIndex(directory, DIM, HnswParams(**{"persist_min": 500, **params, "kind": "ivf"}))


def filled(index, vectors, labels):
    index.open(np.empty(0, np.uint64), lambda _: np.empty((0, DIM), np.float32))
    index.add(labels, vectors)
    index.build_all()
    return index


def fetcher(vectors, labels):
    by_label = dict(zip(labels.tolist(), vectors, strict=True))
    calls = []

    def fetch(wanted):
        calls.append(len(wanted))
        return np.stack([by_label[int(x)] for x in wanted])

    return fetch, calls


def test_saves_no_copy_of_the_vectors_and_takes_them_from_the_records(tmp_path):
    vectors, labels = unit_vectors(5000, DIM, seed=1), np.arange(10, 5010, dtype=np.uint64)
    first = filled(ivf(tmp_path / "v"), vectors, labels)
    assert first.save()
    files = {p.name: p.stat().st_size for p in (tmp_path / "v").iterdir()}
    assert {STATE_FILE, LISTS_FILE} <= set(files)
    # Under a byte a dimension: float32 would be 4, 8-bit codes 1; labels and lists take 12.
    assert sum(files.values()) < len(labels) * DIM
    fetch, calls = fetcher(vectors, labels)
    second = ivf(tmp_path / "v")
    second.open(labels, fetch)
    assert second.loaded_from_disk and not second.dirty and sum(calls) == len(labels)
    got, distances = second.search(vectors[123], 1)
    assert int(got[0]) == int(labels[123]) and 0.0 <= distances[0] < 0.01  # never below 0


def test_vectors_written_after_the_save_are_found_after_a_restart(tmp_path):
    vectors, labels = unit_vectors(3000, DIM, seed=2), np.arange(1, 3001, dtype=np.uint64)
    first = filled(ivf(tmp_path / "v"), vectors[:2000], labels[:2000])
    assert first.save()
    fetch, _ = fetcher(vectors, labels)  # the records hold 1,000 more, and lost 100
    live = labels[100:]
    second = ivf(tmp_path / "v")
    second.open(live, fetch)
    assert second.loaded_from_disk and second.dirty and len(second) == len(live)
    for row in (150, 2500, 2999):
        got, _ = second.search(vectors[row], 1)
        assert int(got[0]) == int(labels[row])
    got, _ = second.search(vectors[5], 5)
    assert int(labels[5]) not in {int(x) for x in got}


def test_a_graph_directory_becomes_an_ivf_one(tmp_path):
    vectors, labels = unit_vectors(1000, DIM, seed=3), np.arange(1, 1001, dtype=np.uint64)
    graph = filled(VectorIndex(tmp_path / "v", DIM, HnswParams(persist_min=10)), vectors, labels)
    assert graph.save() and (tmp_path / "v" / INDEX_FILE).exists()
    fetch, _ = fetcher(vectors, labels)
    moved = ivf(tmp_path / "v")
    moved.open(labels, fetch)
    assert not moved.loaded_from_disk and moved.dirty  # a graph's files are not read as IVF
    assert moved.save()
    assert not (tmp_path / "v" / INDEX_FILE).exists()  # its float32 copy is gone
    again = ivf(tmp_path / "v")
    again.open(labels, fetch)
    assert again.loaded_from_disk


def test_damaged_lists_are_rebuilt_from_the_records(tmp_path):
    vectors, labels = unit_vectors(1000, DIM, seed=4), np.arange(1, 1001, dtype=np.uint64)
    assert filled(ivf(tmp_path / "v"), vectors, labels).save()
    path = tmp_path / "v" / LISTS_FILE
    data = bytearray(path.read_bytes())
    data[-7] ^= 0x40
    path.write_bytes(bytes(data))
    fetch, _ = fetcher(vectors, labels)
    again = ivf(tmp_path / "v")
    again.open(labels, fetch)
    assert not again.loaded_from_disk and len(again) == 1000
    got, _ = again.search(vectors[42], 1)
    assert int(got[0]) == 42 + 1


def test_a_selective_filter_still_gets_k_rows_when_the_probed_lists_miss_them(tmp_path):
    vectors, labels = unit_vectors(4000, DIM, seed=5), np.arange(1, 4001, dtype=np.uint64)
    index = filled(ivf(tmp_path / "v", nprobe=1), vectors, labels)
    # 308 rows (over the 256 searched exactly) spread over 63 lists; the two lists probed
    # hold about 10 of them, fewer than the 50 asked: every list is probed then.
    allowed = labels[::13]
    query = unit_vectors(1, DIM, seed=9)[0]
    got, distances = index.search(query, 50, allowed=allowed)
    assert len(got) == 50 and set(int(x) for x in got) <= set(int(x) for x in allowed)
    assert list(distances) == sorted(distances)
    rows = np.arange(0, 4000, 13)
    best = {int(labels[r]) for r in rows[np.argsort(-(vectors[rows] @ query))[:50]]}
    assert len(best & {int(x) for x in got}) >= 45  # 8-bit codes: near ties may swap


def test_below_persist_min_it_is_exact_and_saves_nothing(tmp_path):
    vectors, labels = unit_vectors(300, DIM, seed=6), np.arange(1, 301, dtype=np.uint64)
    index = filled(ivf(tmp_path / "v"), vectors, labels)
    query = unit_vectors(1, DIM, seed=7)[0]
    got, _ = index.search(query, 20)
    assert [int(x) for x in got] == [int(labels[i]) for i in np.argsort(-(vectors @ query))[:20]]
    assert not index.save() and not (tmp_path / "v").exists()


def test_a_server_on_the_ivf_index_answers_filters_forgets_and_restarts(server_factory):
    from aios_memory.client import MemoryClient

    vectors = unit_vectors(600, 16, seed=8)
    ivf_settings = {"vector_index": "ivf", "vector_persist_min": 100}

    def answers(running):
        with MemoryClient(running.uri, running.token) as client:
            nearest = [h.id for h in client.recall(embedding=vectors[7], k=5, mode="vector")]
            group = client.recall(embedding=vectors[7], k=20, mode="vector", where={"group": 3})
            return nearest, [h.id for h in group], {h.metadata["group"] for h in group}

    with server_factory(**ivf_settings) as first:
        with MemoryClient(first.uri, first.token) as client:
            ids = client.remember(
                [f"m{i}" for i in range(600)],
                embeddings=vectors,
                metadata=[{"group": i % 5} for i in range(600)],
            )
            client.forget(ids[8])
        nearest, grouped, groups = answers(first)
        data_dir = first.data_dir
    assert nearest[0] == ids[7] and ids[8] not in nearest
    assert len(grouped) == 20 and groups == {3}
    saved = {p.name for p in (data_dir / "index").rglob("*") if p.is_file()}
    assert {STATE_FILE, LISTS_FILE} <= saved and INDEX_FILE not in saved
    with server_factory(**ivf_settings) as second:
        assert answers(second) == (nearest, grouped, groups)
    with server_factory(vector_index="hnsw", vector_persist_min=100) as graph:  # and back
        again = answers(graph)
    assert again[0][0] == ids[7] and again[2] == {3} and ids[8] not in again[0]


def test_an_unknown_vector_index_kind_is_refused(tmp_path):
    import pytest

    from aios_memory.flight_server import ServerSettings
    from aios_memory.schemas import InvalidValueError

    with pytest.raises(InvalidValueError, match="vector_index is one of hnsw, ivf"):
        ServerSettings(data_dir=tmp_path, vector_index="lsh")
    with pytest.raises(InvalidValueError) as info:
        ServerSettings(data_dir=tmp_path, vector_index="ivf", ivf_nprobe=0)
    assert info.value.detail["field"] == "ivf_nprobe"


def test_lists_are_retrained_as_the_index_grows_and_miss_nothing_removed_meanwhile(
    tmp_path, monkeypatch
):
    from aios_memory.flight_server.search import ivf_index

    vectors, labels = unit_vectors(6000, DIM, seed=10), np.arange(1, 6001, dtype=np.uint64)
    index = filled(ivf(tmp_path / "v", persist_min=200), vectors[:1000], labels[:1000])
    assert index._index.nlist == 31 and index._trained_on == 1000  # sqrt(1,000)
    copy = ivf_index.IvfIndex._copy
    forgotten = []

    def copy_then_forget(self, ids):
        out = copy(self, ids)
        if not forgotten:  # a forget between two chunks of the copy
            forgotten.append(int(labels[4321]))
            self.remove([labels[4321], labels[17]])
        return out

    monkeypatch.setattr(ivf_index.IvfIndex, "_copy", copy_then_forget)
    index.add(labels[1000:], vectors[1000:])
    index.build_all()  # 4,096 then the rest: the second step finds the lists 4x as full
    assert forgotten and index._trained_on >= 4000 and index._index.nlist >= 63
    assert index._index.ntotal == 6000 - 2 and index.pending == 0
    for row in (0, 2500, 5999):
        got, _ = index.search(vectors[row], 1)
        assert int(got[0]) == int(labels[row])
    for row in (17, 4321):
        got, _ = index.search(vectors[row], 5)
        assert int(labels[row]) not in {int(x) for x in got}


def test_a_save_does_not_wait_for_a_retrain_that_waits_for_it(tmp_path, monkeypatch):
    import threading

    from aios_memory.flight_server.search import ivf_index

    vectors, labels = unit_vectors(6000, DIM, seed=11), np.arange(1, 6001, dtype=np.uint64)
    index = filled(ivf(tmp_path / "v", persist_min=200), vectors[:1000], labels[:1000])
    index.add(labels[1000:], vectors[1000:])
    index.build_step(4096)  # 5,096 in the lists: the next step retrains
    started, release = threading.Event(), threading.Event()
    copy = ivf_index.IvfIndex._copy

    def slow_copy(self, ids):
        started.set()
        release.wait(10)
        return copy(self, ids)

    monkeypatch.setattr(ivf_index.IvfIndex, "_copy", slow_copy)
    builder = threading.Thread(target=index.build_step, args=(1024,))
    builder.start()
    assert started.wait(5)
    saved: list[bool] = []
    saver = threading.Thread(target=lambda: saved.append(index.save()))
    saver.start()
    saver.join(5)
    done_before_release = not saver.is_alive()
    release.set()
    builder.join(10)
    saver.join(10)
    assert done_before_release and saved == [True]
    index.build_all()
    assert index.pending == 0 and index._trained_on >= 4000
    got, _ = index.search(vectors[5500], 1)
    assert int(got[0]) == int(labels[5500])


def test_a_ten_percent_filter_on_a_small_trained_index_keeps_its_recall(tmp_path):
    # 10,000 vectors (the benchmarks' clustered 384-d set): 100 lists of 100. A filter keeping
    # 10% leaves about 10 rows a list, so the usual 16 probed lists held some 160 allowed rows
    # and missed 13% of the true top 10 (bench/RESULTS.md 15e); now the probe widens until it
    # holds a few hundred.
    data = make_dataset(10_000, 60, seed=0)
    dim = data.vectors.shape[1]
    labels = np.arange(1, 10_001, dtype=np.uint64)
    index = IvfIndex(tmp_path / "v", dim, HnswParams(kind="ivf", persist_min=10_000))
    index.open(np.empty(0, np.uint64), lambda _: np.empty((0, dim), np.float32))
    index.add(labels, data.vectors)
    index.build_all()
    hits = 0
    for number, query in enumerate(data.queries):
        rows = np.flatnonzero(data.groups == number % GROUPS)
        exact = exact_top_k(data.vectors, query[None], 10, rows)[0]
        got, _ = index.search(query, 10, allowed=labels[rows])
        hits += len(set((got - 1).tolist()) & {int(x) for x in exact})
    assert hits / (10 * len(data.queries)) >= 0.93
