"""The search's hot path under one-at-a-time writes (issue 16, item 1).

Recall after every single put sees every write (vector, keyword, hybrid, filtered), with
the caches brought up to date rather than recomputed, no tantivy commit on the read path,
searches that run together, and indexes opened before the first request.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import unit_vectors
from support.stores import TENANT, memories, search, write
from support.wire import action, batch_of, put, record_columns

from aios_memory.flight_server.search import index_set
from aios_memory.flight_server.search._hit_cache import CACHED_COLUMNS, HitCache
from aios_memory.flight_server.search._rw_lock import ReadWriteLock
from aios_memory.flight_server.search.allowed_rows import AllowedRows
from aios_memory.flight_server.search.keyword_index import KeywordDoc, KeywordIndex
from aios_memory.flight_server.search.vector_index import HnswParams, VectorIndex
from aios_memory.flight_server.store._search_rows import SearchRows
from aios_memory.flight_server.store.duckdb_store import DuckDBStore
from aios_memory.schemas import RECORD_SCHEMA, SearchRequest, View


@pytest.fixture
def store(tmp_path: Path):
    opened = DuckDBStore(tmp_path / "data")
    yield opened
    opened.close()


# -- the hit cache ---------------------------------------------------------------------------
def _rows(seqs: list[int]) -> pa.Table:
    columns = {"seq": pa.array(seqs, pa.int64())}
    for name in CACHED_COLUMNS:
        kind = RECORD_SCHEMA.field(name).type
        if pa.types.is_string(kind):
            columns[name] = pa.array([f"{name}-{s}" for s in seqs], kind)
        elif pa.types.is_boolean(kind):
            columns[name] = pa.array([False] * len(seqs))
        else:
            columns[name] = pa.nulls(len(seqs), kind)
    return pa.table(columns)


def test_hit_cache_keeps_few_chunks_and_finds_every_row():
    cache = HitCache(lambda: _rows(list(range(1, 101))))
    cache.warm()
    for seq in range(101, 2101):
        cache.append(_rows([seq]), 0)
    assert cache.chunks <= 2 * 12  # O(log2 n), not one per write (2,001 before)
    wanted = [2100, 1, 1500, 101, 77, 99999]
    hits = cache.take([(s, float(s)) for s in wanted])
    assert hits.column("id").to_pylist() == [f"id-{s}" for s in wanted[:-1]]
    assert hits.column("score").to_pylist() == [float(s) for s in wanted[:-1]]


# -- the readers-writer lock -----------------------------------------------------------------
def test_rw_lock_lets_readers_share_and_writers_wait():
    lock = ReadWriteLock()
    both_inside = threading.Barrier(2, timeout=5)

    def reader() -> None:
        with lock.read():
            both_inside.wait()  # fails (BrokenBarrierError) unless two readers share

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not both_inside.broken

    order: list[str] = []
    reading = threading.Event()

    def slow_reader() -> None:
        with lock.read():
            reading.set()
            time.sleep(0.2)
            order.append("reader done")

    def writer() -> None:
        with lock.write(), lock.write(), lock.read():  # reentrant, and may read its own state
            order.append("writer")

    first = threading.Thread(target=slow_reader)
    first.start()
    reading.wait(5)
    second = threading.Thread(target=writer)
    second.start()
    first.join()
    second.join()
    assert order == ["reader done", "writer"]


def test_rw_lock_queues_new_readers_behind_a_waiting_writer():
    lock = ReadWriteLock()
    order: list[str] = []
    reading, writer_waiting = threading.Event(), threading.Event()

    def first_reader() -> None:
        with lock.read():
            reading.set()
            writer_waiting.wait(5)
            time.sleep(0.1)
            order.append("first reader")

    def writer() -> None:
        writer_waiting.set()
        with lock.write():
            order.append("writer")

    def late_reader() -> None:
        with lock.read():
            order.append("late reader")

    threads = [threading.Thread(target=first_reader)]
    threads[0].start()
    reading.wait(5)
    threads.append(threading.Thread(target=writer))
    threads[1].start()
    writer_waiting.wait(5)
    while not lock._writers_waiting:  # the writer is queued
        time.sleep(0.001)
    threads.append(threading.Thread(target=late_reader))
    threads[2].start()
    for t in threads:
        t.join()
    assert order == ["first reader", "writer", "late reader"]


# -- the vector index --------------------------------------------------------------------------
def _exact_top(vectors: dict[int, np.ndarray], query: np.ndarray, k: int, allowed=None):
    labels = [s for s in vectors if allowed is None or s in allowed]
    scored = sorted(labels, key=lambda s: (1 - float(vectors[s] @ query), s))
    return scored[:k]


def test_filtered_vector_search_is_exact_through_adds_removes_and_builds(tmp_path):
    index = VectorIndex(tmp_path / "v", 16, HnswParams())
    vectors = unit_vectors(400, seed=3)
    live = {}
    index.open(np.empty(0, np.uint64), lambda labels: np.empty((0, 16), np.float32))
    for start in range(0, 400, 40):
        labels = np.arange(start + 1, start + 41, dtype=np.uint64)
        index.add(labels, vectors[start : start + 40])
        live.update({int(s): vectors[int(s) - 1] for s in labels})
        gone = [start + 3, start + 7]
        index.remove(gone)
        for s in gone:
            live.pop(s)
        if start % 80 == 0:
            index.build_all()  # half the steps leave a pending tail, half do not
        allowed = np.arange(1, start + 41, 3, dtype=np.uint64)  # selective: exact path
        query = vectors[start]
        got, _ = index.search(query, 10, allowed)
        assert got.tolist() == _exact_top(live, query, 10, set(allowed.tolist()))
    assert len(index) == len(live)


def test_concurrent_searches_return_what_serial_ones_do(tmp_path):
    index = VectorIndex(tmp_path / "v", 16, HnswParams())
    vectors = unit_vectors(3000, seed=4)
    index.open(np.empty(0, np.uint64), lambda labels: np.empty((0, 16), np.float32))
    index.add(np.arange(1, 3001, dtype=np.uint64), vectors)
    index.build_all()
    index.add(np.arange(3001, 3011, dtype=np.uint64), unit_vectors(10, seed=5))  # pending
    broad = np.arange(1, 3011, 2, dtype=np.uint64)
    queries = unit_vectors(40, seed=6)
    cases = [(q, k, allowed) for q in queries for k, allowed in ((10, None), (50, broad))]
    serial = [index.search(q, k, a)[0].tolist() for q, k, a in cases]
    results: dict[int, list[int]] = {}

    def run(part: int) -> None:
        for i in range(part, len(cases), 4):
            q, k, a = cases[i]
            results[i] = index.search(q, k, a)[0].tolist()

    threads = [threading.Thread(target=run, args=(p,)) for p in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i] for i in range(len(cases))] == serial


# -- the keyword index -----------------------------------------------------------------------
WORDS = ["apple", "river", "stone", "cloud", "violin", "garden", "tiger", "lamp"]


def _text(i: int) -> str:
    return " ".join(WORDS[(i * j + j) % len(WORDS)] for j in range(1, 2 + i % 5))


def test_keyword_tail_matches_a_committed_index(tmp_path):
    index = KeywordIndex(tmp_path / "k")
    seq_of: dict[str, int] = {}
    seq = 0
    commits_before = index.commits
    for round_ in range(6):
        docs, dead = [], []
        for i in range(12):
            key = f"m{(round_ * 7 + i) % 30}"  # later rounds replace earlier memories
            seq += 1
            text = None if (round_ + i) % 9 == 0 else _text(seq)  # some are deletions
            if key in seq_of:
                dead.append(seq_of[key])
            seq_of[key] = seq
            docs.append(KeywordDoc(key, seq, "core" if i % 2 else "working", i % 3, text))
        index.apply(docs, dead)
        if round_ == 2:
            index.flush()  # a commit in the middle: a tail over a non-empty index
    queries = [
        dict(text="apple river", limit=100),
        dict(text="violin", limit=100, tiers=["core"]),
        dict(text="stone tiger lamp", limit=100, max_privacy=1),
        dict(text="garden cloud", limit=100, allowed=AllowedRows(np.arange(1, seq, 2))),
        dict(text="the of and", limit=100),
    ]
    staged = [index.search(**q) for q in queries]
    staged_len = len(index)
    assert index.commits == commits_before + 1  # searches and len committed nothing
    index.flush()
    committed = [index.search(**q) for q in queries]
    for got, want in zip(staged, committed, strict=True):
        assert sorted(s for s, _ in got) == sorted(s for s, _ in want)
    assert any(committed)
    assert staged_len == len(index)
    index.close()


def test_a_keyword_search_after_a_put_commits_nothing(store, monkeypatch):
    monkeypatch.setattr(index_set, "KEYWORD_COMMIT_DELAY", 3600.0)  # no background commit
    write(store, memories(["the violin lesson is on tuesday"]))
    keyword = store._search._indexes.keyword(TENANT)
    before = keyword.commits
    for i in range(5):
        write(store, memories([f"violin practice number {i}"]))
        hits = search(store, query="violin", mode="keyword", k=20)
        assert hits.num_rows == i + 2
    assert keyword.commits == before


# -- the allowed rows ---------------------------------------------------------------------
def test_allowed_rows_after_puts_replacements_and_forgets_equal_a_fresh_computation(store):
    rows = SearchRows(store._cursor)
    vectors = unit_vectors(200, seed=7)
    requests = [
        (SearchRequest(tenant=TENANT, query="x", where={"group": "a"}), None),
        (SearchRequest(tenant=TENANT, query="x"), View(TENANT, ("long_term",), max_privacy=1)),
    ]

    def check() -> None:
        for request, view in requests:
            tiers = ["long_term"]
            cached = store._search._allowed_rows(request, tiers, view)
            fresh = np.unique(rows.allowed_seqs(request, tiers, view))
            assert cached is not None
            assert cached.seqs.tolist() == fresh.tolist()

    ids = [f"id{i}" for i in range(40)]
    write(
        store,
        memories(
            [f"t{i}" for i in range(40)],
            vectors[:40],
            id=ids,
            metadata=[{"group": "ab"[i % 2]} for i in range(40)],
            privacy=[i % 3 for i in range(40)],
        ),
    )
    check()
    for step in range(30):
        i = step % 40
        group, privacy = "ab"[(i + step) % 2], (i + step) % 3
        write(
            store,
            memories(
                [f"again {step}"],
                vectors[40 + step : 41 + step],
                id=[ids[i]],
                metadata=[{"group": group}],
                privacy=privacy,
            ),
        )  # a replacement
        write(
            store,
            memories(
                [f"new {step}"],
                vectors[100 + step : 101 + step],
                metadata=[{"group": "a"}],
                privacy=step % 3,
            ),
        )
        if step % 4 == 0:
            store.forget(TENANT, [ids[(i + 5) % 40]])
        check()


# -- through a server ------------------------------------------------------------------------
def _search(server, **request) -> pa.Table:
    body = action(server.uri, server.token, "search", SearchRequest(**request).to_bytes())
    return pa.ipc.open_stream(body).read_all()


def test_recall_after_each_single_put_returns_the_new_memory(server):
    vectors = unit_vectors(220, seed=8)
    base = record_columns(
        [f"filler note {i}" for i in range(200)], vectors[:200], metadata=[{"group": "old"}] * 200
    )
    put(server.uri, server.token, [batch_of(base)])
    for i in range(12):
        one = record_columns(
            [f"zebra{i} arrived today"], vectors[200 + i : 201 + i], metadata=[{"group": "new"}]
        )
        put(server.uri, server.token, [batch_of(one)])
        new_id, query = one["id"][0], vectors[200 + i].tolist()
        cases = {
            "vector": dict(embedding=query, mode="vector"),
            "keyword": dict(query=f"zebra{i}", mode="keyword"),
            "hybrid": dict(query=f"zebra{i}", embedding=query, mode="hybrid"),
            "filtered": dict(embedding=query, mode="vector", where={"group": "new"}),
            "filtered hybrid": dict(query=f"zebra{i}", embedding=query, where={"group": "new"}),
        }
        for name, request in cases.items():
            hits = _search(server, k=5, **request)
            assert hits.column("id")[0].as_py() == new_id, (i, name)
        filtered = _search(server, k=50, embedding=query, mode="vector", where={"group": "new"})
        assert filtered.num_rows == i + 1


def test_indexes_are_open_before_the_first_request(tmp_path):
    first = DuckDBStore(tmp_path / "data")
    write(first, memories(["a memory about tigers"], unit_vectors(1, seed=9)))
    write(first, memories(["another tenant's note"], tenant="bo"))
    first.close()
    again = DuckDBStore(tmp_path / "data")
    try:
        indexes = again._search._indexes
        assert set(indexes._keywords) == {TENANT, "bo"}
        assert [key[0] for key in indexes._vectors] == [TENANT]
        assert again._search._hits.chunks == 1  # the hit rows are loaded too
    finally:
        again.close()


def test_a_staged_document_scores_as_its_committed_twin(tmp_path):
    index = KeywordIndex(tmp_path / "k")
    index.apply([KeywordDoc(f"c{i}", i, "core", 1, _text(i)) for i in range(1, 30)])
    index.apply([KeywordDoc("twin", 30, "core", 1, "violin garden tiger")])
    index.apply([KeywordDoc("c5", 31, "core", 1, "a replaced stone")], dead=[5])
    index.flush()
    index.apply([KeywordDoc("staged", 32, "core", 1, "violin garden tiger")])
    staged = dict(index.search("violin garden tiger", 100, ["core"], None, 2))
    assert staged[32] == staged[30]  # same text, same statistics: the same float32 score
    ranks = [seq for seq, _ in index.search("violin tiger", 100)]
    index.flush()
    assert [seq for seq, _ in index.search("violin tiger", 100)] == ranks
    index.close()


def test_another_tenants_write_keeps_a_filters_rows_and_their_memos(store):
    write(store, memories(["mine"], metadata=[{"group": "a"}]))
    request = SearchRequest(tenant=TENANT, query="x", where={"group": "a"})
    first = store._search._allowed_rows(request, ["long_term"], None)
    assert first is not None and len(first) == 1
    write(store, memories(["theirs"], metadata=[{"group": "a"}], tenant="bo"))
    assert store._search._allowed_rows(request, ["long_term"], None) is first  # no SQL
    write(store, memories(["mine too"], metadata=[{"group": "a"}]))
    again = store._search._allowed_rows(request, ["long_term"], None)
    assert again is not None and len(again) == 2


@pytest.mark.parametrize("share", [0.5, 0.1, 0.03])
def test_a_broad_keyword_filter_answers_from_unfiltered_hits_exactly_as_the_term_set(
    tmp_path, monkeypatch, share
):
    from aios_memory.flight_server.search import keyword_index

    rng = np.random.default_rng(4)
    words = ["lighthouse", "harbour", "storm", "keeper", "lamp", "tide", "rock", "gull"]
    index = KeywordIndex(tmp_path / "kw")
    docs = [
        KeywordDoc(f"m{i}", i + 1, "core", 0, " ".join(rng.choice(words, rng.integers(2, 9))))
        for i in range(3000)
    ]
    index.apply(docs)
    index.flush()
    index.apply([], dead=[5, 17, 40])  # killed in the tail: never returned
    allowed = AllowedRows(np.flatnonzero(rng.random(3000) < share).astype(np.uint64) + 1)
    answers, answered = {}, []
    overfetched = KeywordIndex._overfetched

    def spy(self, *args):
        found = overfetched(self, *args)
        answered.append(found is not None)
        return found

    monkeypatch.setattr(KeywordIndex, "_overfetched", spy)
    for path, min_share in (("overfetch", 0.02), ("term set", 2.0)):
        monkeypatch.setattr(keyword_index, "OVERFETCH_MIN_SHARE", min_share)
        answers[path] = [
            index.search(query, 10, allowed=AllowedRows(allowed.seqs, is_sorted=True))
            for query in ("lighthouse keeper", "storm tide", "gull", "rock lamp harbour")
        ]
    assert answers["overfetch"] == answers["term set"]
    assert answered == [True] * 4 + [False] * 4  # the unfiltered hits sufficed, then not tried
    for hits in answers["overfetch"]:
        assert len(hits) == 10 and {s for s, _ in hits} <= set(allowed.seqs.tolist())
        assert not {5, 17, 40} & {s for s, _ in hits}
