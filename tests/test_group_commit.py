"""Group commit in the embedded store: concurrent puts share one commit, each keeps its fate.

Real DuckDB files and real threads. To gather puts into one group on purpose, a test
holds the store's write lock while they arrive: the first put leads (and waits on the
lock), the others queue behind it and are committed together once it is released.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import unit_vectors
from support.stores import TENANT, hlcs, ids, memories, scan, search, texts, write

from aios_memory.flight_server.store.duckdb_store import DuckDBStore
from aios_memory.schemas import InvalidVectorError


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBStore]:
    opened = DuckDBStore(tmp_path / "data")
    try:
        yield opened
    finally:
        opened.close()


def _wait(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def in_one_group(store: DuckDBStore, puts: list[Callable[[], Any]]) -> list[Any]:
    """Run ``puts`` so that, after a leading put of their own, they form one group, in order."""
    results: list[Any] = [None] * len(puts)

    def run(i: int, put: Callable[[], Any]) -> None:
        try:
            results[i] = put()
        except Exception as exc:  # each put's own fate is what the tests look at
            results[i] = exc

    commits = store._commits
    threads = []
    with store._write_lock:
        lead = threading.Thread(
            target=write, args=(store, memories(["lead"], unit_vectors(1), id="lead"))
        )
        lead.start()
        _wait(lambda: commits._leading and not commits._pending, "the leading put")
        for i, put in enumerate(puts):
            threads.append(threading.Thread(target=run, args=(i, put)))
            threads[-1].start()
            _wait(lambda i=i: len(commits._pending) == i + 1, "the puts to queue")
        groups_before = commits.groups
    for thread in [lead, *threads]:
        thread.join(30)
    assert commits.groups - groups_before == 2, "the queued puts were not one group"
    return results


def one_memory(memory_id: str, text: str, vector: np.ndarray) -> Callable[[], Any]:
    return lambda: write(store_of[0], memories([text], vector[None, :], id=memory_id))


store_of: list[DuckDBStore] = []


@pytest.fixture(autouse=True)
def _remember_store(store: DuckDBStore) -> Iterator[None]:
    store_of[:] = [store]
    yield
    store_of.clear()


def test_queued_puts_share_one_commit_and_each_is_acknowledged(store: DuckDBStore) -> None:
    vectors = unit_vectors(8, seed=1)
    puts = [one_memory(f"m{i}", f"memory {i}", vectors[i]) for i in range(8)]
    results = in_one_group(store, puts)
    assert [list(hlcs(r)) for r in results] == [[f"m{i}"] for i in range(8)]
    assert sorted(texts(scan(store))) == sorted(["lead", *(f"m{i}" for i in range(8))])


def test_a_refused_put_fails_alone_and_a_new_model_takes_the_groups_first_dimension(
    store: DuckDBStore,
) -> None:
    wide = unit_vectors(2, dim=16, seed=2)
    narrow = unit_vectors(1, dim=8, seed=3)

    def model_put(memory_id: str, vector: np.ndarray) -> Callable[[], Any]:
        columns = memories([memory_id], vector[None, :], id=memory_id, embed_model="fresh")
        return lambda: write(store, columns)

    results = in_one_group(
        store,
        [
            model_put("a", wide[0]),
            model_put("b", narrow[0]),  # the model is 16-dimensional since "a", same group
            one_memory("c", "plain", unit_vectors(1, seed=4)[0]),
        ],
    )
    assert list(hlcs(results[0])) == ["a"]
    assert isinstance(results[1], InvalidVectorError)
    assert list(hlcs(results[2])) == ["c"]
    assert sorted(texts(scan(store))) == ["a", "c", "lead"]


def test_two_puts_of_one_memory_in_a_group_apply_one_after_the_other(
    store: DuckDBStore,
) -> None:
    vector = unit_vectors(1, seed=5)[0]
    results = in_one_group(
        store,
        [
            one_memory("x", "first text", vector),
            one_memory("x", "first text", vector),  # a retry: acknowledged with the same hlc
            one_memory("x", "second text", vector),  # an edit: a newer version
        ],
    )
    first, retry, edit = (hlcs(r)["x"] for r in results)
    assert retry == first
    assert edit > first
    stored = scan(store)
    assert sorted(ids(stored)) == ["lead", "x"]  # one current version of x, not two
    assert texts(stored) == {"lead": "lead", "x": "second text"}
    assert hlcs([(ids(stored), stored.column("hlc").to_pylist())])["x"] == edit


def test_every_acknowledged_write_is_found_by_search_at_once(store: DuckDBStore) -> None:
    vectors = unit_vectors(40, seed=6)
    missed: list[str] = []

    def writer(w: int) -> None:
        for i in range(w, 40, 4):
            memory_id = f"w{i}"
            write(store, memories([f"word{i} here"], vectors[i : i + 1], id=memory_id))
            found = search(store, query=f"word{i}", k=1, mode="keyword")
            if found.column("id").to_pylist() != [memory_id]:
                missed.append(memory_id)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not missed
    assert store._commits.items == 40


def test_forget_of_many_ids_is_one_transaction_and_names_exactly_the_forgotten(
    store: DuckDBStore,
) -> None:
    n = 12_000
    live = [f"f{i}" for i in range(n)]
    write(store, memories(["t"] * n, id=live, tier="working"))
    write(store, memories(["gone"], id="already-gone", tier="working"))
    store.forget(TENANT, ["already-gone"])
    groups, items = store._commits.groups, store._commits.items
    done = store.forget(TENANT, [*live, "already-gone", "never-was"])
    assert (store._commits.groups - groups, store._commits.items - items) == (1, 1)
    assert sorted(i for i, _ in done) == sorted(live)
    assert len({h for _, h in done}) == n
    assert texts(scan(store)) == {}
