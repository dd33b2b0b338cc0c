"""``MemoryClient`` end to end against a real server (conftest: embedder off, port 0)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from conftest import unit_vectors

from aios_memory.client import (
    AuthenticationError,
    EmbedderError,
    Hit,
    InvalidVectorError,
    Memory,
    MemoryClient,
    MemoryInput,
    UnknownTierError,
    _records,
)
from aios_memory.client.codec.batches import rows_to_batch
from aios_memory.schemas import DEFAULT_LIMITS, RECORD_SCHEMA, TIERS


def _vectors(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, dim))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _ids(batches: Any) -> list[str]:
    return [i for b in batches for i in b.column("id").to_pylist()]


@pytest.mark.parametrize("tier", TIERS)
def test_round_trip_in_every_tier(client: MemoryClient, tier: str) -> None:
    vector = _vectors(1, seed=TIERS.index(tier))
    [memory_id] = client.remember(
        f"Ada keeps a {tier} note about tea",
        tier=tier,
        metadata={"topic": "food"},
        session="s1",
        agent="ada",
        privacy=2,
        embeddings=vector,
    )
    [memory] = client.get(memory_id)
    assert isinstance(memory, Memory) and memory.id == memory_id
    assert (memory.text, memory.tier, memory.metadata) == (
        f"Ada keeps a {tier} note about tea",
        tier,
        {"topic": "food"},
    )
    assert (memory.session, memory.agent, memory.privacy, memory.kind) == ("s1", "ada", 2, "text")
    assert memory.hlc > 0 and abs(memory.created_at - datetime.now(timezone.utc)) < timedelta(60)
    [hit] = client.recall(embedding=vector[0], tier=tier, k=1)
    assert isinstance(hit, Hit) and hit.id == memory_id and hit.text == memory.text
    [hit] = client.recall("tea", tier=tier, mode="keyword")
    assert hit.id == memory_id and hit.score > 0 and hit.metadata == {"topic": "food"}
    assert client.scan(tier).column("text").to_pylist() == [memory.text]
    counts = {t["tier"]: t["memories"] for t in client.tiers()}
    assert counts == {t: int(t == tier) for t in TIERS}


def test_vector_recall_ranks_the_nearest_first(client: MemoryClient) -> None:
    vectors = _vectors(20)
    ids = client.remember([f"note {i}" for i in range(20)], embeddings=vectors)
    for i in (0, 7, 19):
        hits = client.recall(embedding=vectors[i] + 0.01, k=3, mode="vector")
        assert hits[0].id == ids[i] and hits[0].text == f"note {i}"
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_get_keeps_the_asked_order_and_skips_unknown_ids(client: MemoryClient) -> None:
    ids = client.remember(["one", "two", "three"], metadata=[{"n": 1}, {"n": 2}, {"n": 3}])
    got = client.get([ids[2], "0190f5a2-0000-7000-8000-000000000000", ids[0]])
    assert [(m.text, m.metadata) for m in got] == [("three", {"n": 3}), ("one", {"n": 1})]


def test_filters_on_metadata_fields_and_tiers(client: MemoryClient) -> None:
    client.remember(
        "tea with milk", tier="core", metadata={"topic": "food"}, session="a", privacy=0
    )
    client.remember(
        "tea ceremony history",
        tier="long_term",
        metadata={"topic": "culture"},
        session="b",
        privacy=3,
    )
    client.remember("green tea prices", tier="working", metadata={"topic": "food"}, session="b")

    def texts(**kwargs: Any) -> set[str]:
        return {h.text for h in client.recall("tea", mode="keyword", **kwargs)}

    assert texts(where={"topic": "food"}) == {"tea with milk", "green tea prices"}
    assert texts(where={"metadata.topic": "culture"}) == {"tea ceremony history"}
    assert texts(where={"session": "b", "privacy": {"$lte": 1}}) == {"green tea prices"}
    assert texts(where={"topic": {"$in": ["culture", "x"]}}) == {"tea ceremony history"}
    assert texts(tier="core") == {"tea with milk"}
    assert texts(tier=["core", "long_term"]) == {"tea with milk", "tea ceremony history"}
    assert texts(where={"topic": "none"}) == set()


def test_forget_hides_from_get_recall_and_scan(client: MemoryClient) -> None:
    vectors = _vectors(2)
    keep, drop = client.remember(["tea stays", "tea goes"], embeddings=vectors)
    assert client.forget(drop) == 1
    assert client.get([keep, drop]) == client.get(keep)
    assert [h.id for h in client.recall("tea", mode="keyword")] == [keep]
    assert drop not in [h.id for h in client.recall(embedding=vectors[1], k=5)]
    assert _ids(client.iter_scan()) == [keep]
    dead = client.scan(ids=[drop], include_deleted=True).to_pylist()
    assert [(r["id"], r["deleted"], r["text"]) for r in dead] == [(drop, True, None)]
    assert client.forget([drop, "0190f5a2-0000-7000-8000-000000000000"]) == 0


def test_scan_filters(client: MemoryClient) -> None:
    first = client.remember(["a1", "a2"], session="a", kind="note")
    [hlc] = {m.hlc for m in client.get(first[1])}
    later = client.remember("b1", session="b")
    table = client.scan()
    assert table.schema == RECORD_SCHEMA.append(pa.field("text", pa.string())).append(
        pa.field("occurred_at", pa.timestamp("us", tz="UTC"))
    )
    assert sorted(table.column("text").to_pylist()) == ["a1", "a2", "b1"]
    assert sorted(client.scan(session="a").column("text").to_pylist()) == ["a1", "a2"]
    assert client.scan(kind="note").num_rows == 2
    assert _ids(client.iter_scan(since_hlc=hlc)) == later
    assert client.scan(ids=first[0]).column("text").to_pylist() == ["a1"]
    assert client.scan(where={"session": "b"}).column("id").to_pylist() == later
    past = datetime.now(timezone.utc) - timedelta(hours=1)
    assert client.scan(created_after=past).num_rows == 3
    assert client.scan(created_before=past).num_rows == 0
    assert client.scan("core").num_rows == 0


def test_large_write_is_split_and_fully_stored(client: MemoryClient) -> None:
    texts = [f"memory number {i} " + "x" * (i % 300) for i in range(6000)]
    ids = client.remember(texts, embeddings=_vectors(6000, dim=8))
    assert len(ids) == len(set(ids)) == 6000
    scanned = client.scan()
    assert scanned.num_rows == 6000 and set(scanned.column("id").to_pylist()) == set(ids)
    assert {t["tier"]: t["memories"] for t in client.tiers()}["working"] == 6000


def test_retried_put_is_idempotent(client: MemoryClient) -> None:
    items = [MemoryInput(text="retry me")]
    defaults = _records.Defaults(tenant="default", embed_model="external")
    batch = rows_to_batch(list(_records.encode_rows(items, [None], defaults)))
    first = client._transport.put([batch])
    second = client._transport.put([batch])
    assert first[0].ids == second[0].ids
    assert client.scan().num_rows == 1


def test_remember_many_with_progress(client: MemoryClient) -> None:
    items = [
        MemoryInput(text=f"item {i}", tier="long_term" if i % 2 else None, metadata={"i": i})
        for i in range(25)
    ]
    seen: list[int] = []
    ids = client.remember_many(iter(items), tier="core", batch_size=10, progress=seen.append)
    assert seen == [10, 10, 5] and len(ids) == 25
    assert {m.tier for m in client.get(ids[:2])} == {"core", "long_term"}
    assert [m.metadata["i"] for m in client.get(ids)] == list(range(25))


def test_tenants_are_isolated(server: Any, client: MemoryClient) -> None:
    client.remember("default tenant tea")
    with MemoryClient(server.uri, server.token, tenant="other") as other:
        other.remember("other tenant tea")
        assert [h.text for h in other.recall("tea", mode="keyword")] == ["other tenant tea"]
        assert sum(t["memories"] for t in other.tiers()) == 1
        assert other.stats()["memories"] == 1
    assert client.stats()["memories"] == 1


def test_health_and_stats(client: MemoryClient) -> None:
    client.remember(["x", "y"], tier="core")
    assert client.health()["status"] == "ok"
    stats = client.stats()
    assert stats["memories"] == 2 and stats["tiers"]["core"]["memories"] == 2


def test_wrong_or_missing_token(server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIMEM_TOKEN", raising=False)
    for token in ("wrong", None):
        with (
            MemoryClient(server.uri, token) as mem,
            pytest.raises(AuthenticationError, match="AIMEM_TOKEN"),
        ):
            mem.health()
    monkeypatch.setenv("AIMEM_TOKEN", server.token)
    with MemoryClient(server.uri) as mem:
        assert mem.health()["status"] == "ok"


def test_server_side_errors_arrive_as_their_class(client: MemoryClient) -> None:
    client.remember("sixteen", embeddings=_vectors(1, dim=16))
    with pytest.raises(InvalidVectorError):  # one dimension per (tenant, model)
        client.remember("eight", embeddings=_vectors(1, dim=8))
    with pytest.raises(EmbedderError):  # the test server has no embedder
        client.recall("tea", mode="vector")
    row = rows_to_batch(
        list(
            _records.encode_rows(
                [MemoryInput(text="t")], [None], _records.Defaults("default", "external")
            )
        )
    ).to_pylist()
    row[0]["tier"] = "attic"  # skip local checks: the server must refuse it too
    batch = pa.RecordBatch.from_pylist(row, schema=RECORD_SCHEMA)
    with pytest.raises(UnknownTierError):
        client._transport.put([batch])
    assert client.health()["status"] == "ok"


@pytest.mark.slow
def test_write_over_the_put_row_limit_uses_several_puts(client: MemoryClient) -> None:
    count = DEFAULT_LIMITS.max_rows_per_put + 4_464  # 70,000: two puts of 17 batches
    ids = client.remember([f"m {i}" for i in range(count)])
    assert len(ids) == len(set(ids)) == count
    assert client.scan().num_rows == count


def test_remember_many_carries_embeddings(client: MemoryClient) -> None:
    vectors = unit_vectors(12, seed=7)
    items = [MemoryInput(text=f"vec {i}", embedding=vectors[i].tolist()) for i in range(10)]
    items += [MemoryInput(text="as array", embedding=vectors[10] * 5.0)]  # normalized on the way
    ids = client.remember_many(items, batch_size=4)
    for row in (0, 7, 10):
        [hit] = client.recall(embedding=vectors[row], k=1, mode="vector")
        assert hit.id == ids[row] and hit.score > 0.99


def test_remember_many_refuses_mixed_dimensions_before_sending(client: MemoryClient) -> None:
    items = [
        MemoryInput(text="sixteen", embedding=unit_vectors(1, 16)[0]),
        MemoryInput(text="eight", embedding=unit_vectors(1, 8)[0]),
    ]
    with pytest.raises(InvalidVectorError) as info:
        client.remember_many(items)
    assert info.value.detail["row"] == 1 and "8 dimensions" in info.value.message
    with pytest.raises(InvalidVectorError, match="NaN"):
        client.remember_many([MemoryInput(text="bad", embedding=[0.1, float("nan")])])
    assert client.stats()["memories"] == 0
