"""The item set a store keeps between rounds equals the one it would build from scratch."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from support.wire import batch_of, record_columns

from aios_memory.flight_server import DuckDBStore
from aios_memory.flight_server.ingest import prepare_write
from aios_memory.flight_server.sync._item_cache import ItemCache
from aios_memory.flight_server.sync._state import item_arrays
from aios_memory.schemas import DEFAULT_LIMITS
from aios_memory.sync.protocol.reconcile import ItemSet, item_id

TIERS = ("long_term", "shared")


def _write(
    store: DuckDBStore,
    texts: list[str],
    ids: list[str],
    tier: str,
    version: tuple[int, str] | None = None,
    tenant: str = "default",
) -> None:
    columns = record_columns(texts, tier=tier)
    columns["id"], columns["tenant"] = ids, [tenant] * len(ids)
    if version is not None:  # a replica's version, as a sync brings it
        columns["hlc"], columns["origin"] = [version[0]] * len(ids), [version[1]] * len(ids)
    store.put(prepare_write([batch_of(columns)], None, DEFAULT_LIMITS))


def _fresh(store: DuckDBStore, horizon: int) -> tuple[ItemSet, np.ndarray]:
    built = ItemCache.build("default", TIERS, *item_arrays(store._cursor(), "default", TIERS))
    return built.view(horizon)


def _same(a: tuple[ItemSet, np.ndarray], b: tuple[ItemSet, np.ndarray]) -> bool:
    return (
        np.array_equal(a[0].ts, b[0].ts)
        and np.array_equal(a[0].ids, b[0].ids)
        and np.array_equal(a[1], b[1])
        and a[0].fingerprint(0, len(a[0])) == b[0].fingerprint(0, len(b[0]))
    )


@pytest.mark.parametrize("seed", range(4))
def test_the_kept_item_set_follows_every_kind_of_write(tmp_path: Path, seed: int):
    rng = random.Random(seed)
    store = DuckDBStore(tmp_path / "data")
    try:
        known: list[str] = []
        horizon = 0
        store.sync_items("default", TIERS, horizon)  # start keeping it
        for step in range(120):
            action = rng.choice(["new", "new", "edit", "forget", "replica", "other", "purge"])
            if action == "new":
                ids = [f"m{step}-{k}" for k in range(rng.randint(1, 5))]
                _write(store, [f"text {i}" for i in ids], ids, rng.choice(TIERS + ("core",)))
                known += ids
            elif action == "edit" and known:
                memory_id = rng.choice(known)
                _write(store, [f"edit {step}"], [memory_id], rng.choice(TIERS))
            elif action == "forget" and known:
                store.forget("default", rng.sample(known, min(3, len(known))))
            elif action == "replica" and known:
                hlc = rng.choice([1, store.clock.last + 10_000])  # an old and a new version
                _write(store, [f"from afar {step}"], [rng.choice(known)], "shared", (hlc, "rpeer"))
            elif action == "other":
                _write(store, ["another tenant"], [f"o{step}"], "shared", tenant="bob")
            elif action == "purge":
                horizon = store.clock.last
                store.sync_finish("default", TIERS, "rhub", f"round{step}", horizon)
            if rng.random() < 0.3:  # several writes between rounds, as a device makes them
                kept = store.sync_items("default", TIERS, horizon)
                assert _same(kept, _fresh(store, horizon)), f"step {step}: {action}"
        assert _same(store.sync_items("default", TIERS, horizon), _fresh(store, horizon))
    finally:
        store.close()


def test_a_large_backlog_is_rebuilt_not_merged(tmp_path: Path, monkeypatch):
    from aios_memory.flight_server.sync import _item_cache

    monkeypatch.setattr(_item_cache, "REBUILD_AFTER", 10)
    store = DuckDBStore(tmp_path / "data")
    try:
        first, _ = store.sync_items("default", TIERS, 0)
        ids = [f"bulk{k}" for k in range(30)]
        _write(store, ids, ids, "long_term")
        assert store._sync._caches[("default", TIERS)].stale
        items, seqs = store.sync_items("default", TIERS, 0)
        assert len(items) == len(first) + 30 and _same((items, seqs), _fresh(store, 0))
        assert items.ts.tolist() == sorted(items.ts.tolist())
    finally:
        store.close()


def test_item_ids_match_the_sql_that_builds_them(tmp_path: Path):
    store = DuckDBStore(tmp_path / "data")
    try:
        _write(store, ["one", "two"], ["a", "b"], "long_term")
        seqs, hlcs, ids, _ = item_arrays(store._cursor(), "default", TIERS)
        rows = {r["id"]: r for r in store.get("default", ["a", "b"]).to_pylist()}
        by_seq = dict(zip(seqs.tolist(), ids, strict=True))
        for row_id, row in rows.items():
            [seq] = [s for s in seqs.tolist() if hlcs[seqs.tolist().index(s)] == row["hlc"]]
            assert bytes(by_seq[seq]) == item_id(row_id, row["origin"], row["hlc"])
    finally:
        store.close()
