"""The ``Store`` contract: one suite, run against every backend (Litestream's way).

Each test runs once per backend: ``DuckDBStore`` in a temp folder, and ``LakeStore``
on a fresh prefix of a real S3 bucket (SeaweedFS on 127.0.0.1, started once for the
module). Tests speak only the interface: ``put`` (of what ``prepare_write`` makes of
a client's batches), ``get``, ``scan``, ``search``, ``forget``, ``stats``,
``tier_counts`` and ``close``, with vectors the test supplies (no embedder). Where
the backends legitimately differ, a test checks the common part and says so.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from conftest import unit_vectors
from support.access_model import Token, may_read
from support.s3_server import credentials_env, s3_server
from support.stores import (
    BACKENDS,
    TENANT,
    Backend,
    dictionary_record,
    hlcs,
    ids,
    memories,
    metadata_of,
    scan,
    search,
    texts,
    write,
)

from aios_memory.flight_server.store.base import Store
from aios_memory.schemas import (
    CODEC_NONE,
    CODEC_ZSTD,
    CODEC_ZSTD_DICT,
    OCCURRED_AT_KEY,
    READERS_KEY,
    RECORD_SCHEMA,
    TIERS,
    Grant,
    InvalidValueError,
    ScanRequest,
    TierPolicyError,
    View,
    hlc_pack,
    new_id,
)

MODES = ("vector", "keyword", "hybrid")


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with pytest.MonkeyPatch.context() as patch:
        for key, value in credentials_env().items():
            patch.setenv(key, value)
        with s3_server(tmp_path_factory.mktemp("weed")) as url:
            yield url


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Backend]:
    """Opens stores of one kind; every store it opened is closed at teardown."""
    # Only the lake runs start SeaweedFS (``-k duckdb`` needs none).
    endpoint = request.getfixturevalue("s3_endpoint") if request.param == "lake" else None
    stores = Backend(request.param, tmp_path / "stores", endpoint)
    try:
        yield stores
    finally:
        stores.close_all()


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.open()


def rows(columns: dict[str, list[Any]], *picked: int) -> dict[str, list[Any]]:
    """Rows ``picked`` of client columns, as a new batch."""
    return {name: [values[i] for i in picked] for name, values in columns.items()}


# -- put and get --------------------------------------------------------------------------------
def test_put_then_get_round_trips_every_field(store: Store) -> None:
    vectors = unit_vectors(5)
    first = memories(
        [f"the heron stood in pool number {n}, waiting for fish" for n in range(3)],
        vectors[:3],
        metadata=[{"n": n, "colour": "grey"} for n in range(3)],
        tier=["core", "working", "long_term"],
        privacy=[0, 2, 3],
        agent="scout",
        session=["s1", "s1", "s2"],
    )
    second = memories(
        ["short", "kept plain on purpose"], vectors[3:], codec=CODEC_NONE, kind="note"
    )
    acks = write(store, first, second)
    assert [batch_ids for batch_ids, _ in acks] == [first["id"], second["id"]]  # per batch
    stamps = [h for _, batch_hlcs in acks for h in batch_hlcs]
    assert stamps[0] > 0 and stamps == sorted(set(stamps))  # one clock, in write order
    got = store.get(TENANT, [*first["id"], new_id(), *second["id"]])
    assert got.schema.equals(RECORD_SCHEMA)
    sent = [row for batch in (first, second) for row in _row_dicts(batch)]
    for row, stamp in zip(sent, stamps, strict=True):
        row.update(hlc=stamp, origin=store.replica_id)  # what the store assigns
    assert got.to_pylist() == sent


def _row_dicts(columns: dict[str, list[Any]]) -> list[dict[str, Any]]:
    return [
        dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)
    ]


def test_an_identical_retry_is_idempotent(store: Store) -> None:
    batch = memories(["remember the milk", "and the eggs, the big ones"], unit_vectors(2))
    first = write(store, batch)
    before = scan(store, include_deleted=True)
    assert write(store, batch) == first  # same ids, same hlcs
    assert write(store, rows(batch, 1), rows(batch, 0)) == [
        ([batch["id"][1]], [first[0][1][1]]),
        ([batch["id"][0]], [first[0][1][0]]),
    ]
    assert scan(store, include_deleted=True).equals(before)  # no second version
    assert store.stats(TENANT)["memories"] == 2


def test_a_newer_edit_replaces_the_current_version(store: Store) -> None:
    vectors = unit_vectors(3, seed=1)
    batch = memories(["the boat is painted blue", "an unrelated note about tea"], vectors[:2])
    first = hlcs(write(store, batch))
    boat = batch["id"][0]
    edit = memories(["the boat is painted green"], vectors[2:], id=[boat])
    edited = hlcs(write(store, edit))
    assert edited[boat] > first[boat]
    assert texts(store.get(TENANT, [boat])) == {boat: "the boat is painted green"}
    assert ids(scan(store, include_deleted=True)) == [batch["id"][1], boat]  # one version, last
    assert ids(search(store, query="blue", mode="keyword")) == []
    assert ids(search(store, query="green", mode="keyword")) == [boat]
    assert ids(search(store, vectors[2], mode="vector", k=1)) == [boat]
    assert ids(search(store, vectors[0], mode="vector", k=10)).count(boat) == 1
    # Metadata alone makes a new version too.
    relabelled = memories(
        ["the boat is painted green"], vectors[2:], id=[boat], metadata=[{"a": 1}]
    )
    assert hlcs(write(store, relabelled))[boat] > edited[boat]
    (row,) = store.get(TENANT, [boat]).to_pylist()
    assert metadata_of(row) == {"a": 1}
    assert store.stats(TENANT)["memories"] == 2
    # Both stores sync long_term (as a server's do): a memory may not leave it for a tier
    # that never syncs; a local one moves freely.
    with pytest.raises(TierPolicyError):
        write(store, memories(["the boat is painted green"], id=[boat], tier="working"))
    local = memories(["a local note"], tier="core")
    write(store, local)
    write(store, {**local, "tier": ["working"]})
    assert ids(scan(store, tier="working")) == local["id"]


def test_replica_versions_win_only_with_a_higher_hlc_and_origin(store: Store) -> None:
    # A minute ahead of the wall clock: a later local write must order after what it saw.
    base = hlc_pack(int(time.time() * 1000) + 60_000, 0)
    versions = [
        (base + 1, "ra", "one by ra"),
        (base + 2, "ra", "two by ra"),
        (base + 2, "rb", "two by rb"),
    ]
    orders = list(itertools.permutations(range(len(versions))))  # every arrival order
    memory_ids = [new_id() for _ in orders]
    for step in range(len(versions)):
        arriving = [versions[order[step]] for order in orders]
        acks = hlcs(
            write(
                store,
                memories(
                    [v[2] for v in arriving],
                    id=memory_ids,
                    hlc=[v[0] for v in arriving],
                    origin=[v[1] for v in arriving],
                ),
            )
        )
        for memory_id, order in zip(memory_ids, orders, strict=True):
            best = max(versions[i] for i in order[: step + 1])
            assert acks[memory_id] == best[0], (order, step)  # the ack names the winner's hlc
    got = store.get(TENANT, memory_ids)
    assert {(r["hlc"], r["origin"]) for r in got.to_pylist()} == {(base + 2, "rb")}
    assert set(texts(got).values()) == {"two by rb"}
    before = scan(store, include_deleted=True)
    replay = memories(["two by rb"], id=memory_ids[:1], hlc=base + 2, origin="rb")
    assert hlcs(write(store, replay)) == {memory_ids[0]: base + 2}  # the same version again
    assert scan(store, include_deleted=True).equals(before)
    local = hlcs(write(store, memories(["edited here"], id=memory_ids[:1])))
    assert local[memory_ids[0]] > base + 2


def test_reencode_writes_only_where_content_is_unchanged(store: Store) -> None:
    said = [f"note {n}: " + "worth compressing, " * 4 for n in range(4)]
    batch = memories(said)
    assert set(batch["codec"]) == {CODEC_ZSTD}
    first = hlcs(write(store, batch))
    kept, edited, forgotten, also = batch["id"]
    write(store, memories(["edited meanwhile, so this re-encoding is stale"], id=[edited]))
    store.forget(TENANT, [forgotten])
    unknown = new_id()
    plain = memories([*said, "never stored"], codec=CODEC_NONE, id=[*batch["id"], unknown])
    acks = hlcs(write(store, plain, reencode=True))
    assert acks[kept] > first[kept] and acks[also] > first[also]
    assert acks[edited] == acks[forgotten] == acks[unknown] == 0  # not written
    got = {r["id"]: r for r in scan(store, include_deleted=True).to_pylist()}
    assert set(got) == set(batch["id"])
    assert {got[i]["codec"] for i in (kept, also)} == {CODEC_NONE}
    assert texts(store.get(TENANT, [kept, edited])) == {
        kept: said[0],
        edited: "edited meanwhile, so this re-encoding is stale",
    }
    assert got[forgotten]["deleted"]
    before = scan(store, include_deleted=True)
    again = hlcs(write(store, plain, reencode=True))  # a retry of a done re-encoding
    assert again == acks
    assert scan(store, include_deleted=True).equals(before)


# -- forget -------------------------------------------------------------------------------------
def test_forget_leaves_a_tombstone_that_no_read_returns(store: Store) -> None:
    vectors = unit_vectors(3, seed=2)
    batch = memories(["the kingfisher flew low", "the otter swam", "the heron waited"], vectors)
    written = hlcs(write(store, batch))
    gone, *alive = batch["id"]
    [(forgotten, stamp)] = store.forget(TENANT, [gone, new_id()])  # an unknown id: nothing
    assert forgotten == gone and stamp > written[gone]
    assert ids(store.get(TENANT, batch["id"])) == alive
    assert ids(scan(store)) == alive
    (dead,) = scan(store, include_deleted=True, ids=[gone]).to_pylist()
    assert dead["deleted"] and dead["hlc"] == stamp and dead["payload"] == b""
    assert dead["embedding"] is None and dead["tier"] == "long_term"
    assert ids(search(store, query="kingfisher", mode="keyword")) == []
    assert gone not in ids(search(store, vectors[0], mode="vector", k=10))
    assert gone not in ids(search(store, vectors[0], query="kingfisher", k=10))
    before = scan(store, include_deleted=True)
    assert store.forget(TENANT, [gone]) == []  # forgetting twice
    assert store.forget(TENANT, [new_id()]) == []
    assert store.forget(TENANT, alive, view=View(TENANT, ("core",))) == []  # outside the view
    assert scan(store, include_deleted=True).equals(before)
    tier = store.stats(TENANT)["tiers"]["long_term"]
    assert (tier["memories"], tier["deleted"]) == (2, 1)


def test_a_dictionary_refuses_to_be_forgotten(store: Store) -> None:
    data = b"the garden path winds past the pond and under the old oak tree; " * 30
    dictionary_columns, dictionary = dictionary_record(data)
    write(store, dictionary_columns)
    said = "the garden path winds past the pond today"
    coded = memories([said], codec=CODEC_ZSTD_DICT, dictionary=dictionary)
    assert coded["codec"] == [CODEC_ZSTD_DICT]
    write(store, coded)  # decoded with the stored dictionary, to be indexed
    assert ids(search(store, query="pond", mode="keyword")) == coded["id"]
    both = [*dictionary_columns["id"], *coded["id"]]
    for asked in (dictionary_columns["id"], both):
        with pytest.raises(InvalidValueError, match="never forgotten"):
            store.forget(TENANT, asked)
    assert ids(store.get(TENANT, both)) == both  # neither was forgotten
    assert texts(store.get(TENANT, both), dictionary) == {coded["id"][0]: said}


# -- search -------------------------------------------------------------------------------------
def test_vector_search_ranks_by_cosine_similarity(store: Store) -> None:
    vectors = unit_vectors(40, seed=3)
    batch = memories([f"memory {n}" for n in range(40)], vectors)
    write(store, batch)
    for probe in (7, 21):
        hits = search(store, vectors[probe], mode="vector", k=5)
        nearest = np.argsort(-(vectors @ vectors[probe]))[:5]
        assert ids(hits) == [batch["id"][i] for i in nearest]
        scores = hits.column("score").to_pylist()
        assert scores == sorted(scores, reverse=True) and scores[0] == pytest.approx(1, abs=0.01)


def test_keyword_search_finds_words_and_returns_stored_records(store: Store) -> None:
    said = ["the otter slid down the bank", "a heron over the marsh", "otters and herons"]
    batch = memories(said, unit_vectors(3, seed=4))
    write(store, batch)
    hits = search(store, query="heron marsh", mode="keyword", k=5)
    assert ids(hits)[0] == batch["id"][1]
    stored = {r["id"]: r for r in store.get(TENANT, batch["id"]).to_pylist()}
    for hit in hits.to_pylist():
        # Hits leave the vector out (``get`` returns it); the rest is the stored record.
        assert hit.pop("score") > 0
        assert (hit.pop("embedding"), hit.pop("embedding_scale")) == (None, None)
        assert hit == {k: v for k, v in stored[hit["id"]].items() if not k.startswith("embedding")}
    assert ids(search(store, query="kestrel", mode="keyword")) == []


def test_hybrid_search_fuses_both_arms(store: Store) -> None:
    vectors = unit_vectors(20, seed=4)
    said = [f"plain note number {n}" for n in range(20)]
    said[3] = "the otter slid down the muddy bank"
    batch = memories(said, vectors)
    write(store, batch)
    by_word, by_vector = batch["id"][3], batch["id"][11]
    assert ids(search(store, query="otter", mode="keyword", k=1)) == [by_word]
    assert ids(search(store, vectors[11], mode="vector", k=1)) == [by_vector]
    # The word's record is also somewhere in the vector list, so it ranks first.
    assert ids(search(store, vectors[11], query="otter", k=2)) == [by_word, by_vector]


def test_filters_apply_before_the_top_k(store: Store) -> None:
    n = 300
    vectors = unit_vectors(n, seed=5)
    batch = memories(
        [f"lantern note {i}" for i in range(n)],
        vectors,
        metadata=[{"n": i % 50} for i in range(n)],
        privacy=[i % 4 for i in range(n)],
    )
    write(store, batch)
    cases = [
        ({"n": 7}, 10),  # six match: all six, never fewer
        ({"n": {"$in": [3, 7]}, "privacy": {"$gte": 2}}, 4),  # more match than k: k
    ]
    for where, k in cases:
        matching = {
            batch["id"][i] for i in range(n) if _matches(where, {"n": i % 50, "privacy": i % 4})
        }
        for mode in MODES:
            # The query is near record 0, which matches neither filter.
            found = ids(search(store, vectors[0], query="lantern", mode=mode, k=k, where=where))
            assert len(found) == min(k, len(matching)) and set(found) <= matching, (where, mode)


def _matches(where: dict[str, Any], fields: dict[str, int]) -> bool:
    ops = {"$in": lambda a, b: a in b, "$gte": lambda a, b: a >= b}
    return all(
        all(ops[op](fields[key], v) for op, v in cond.items())
        if isinstance(cond, dict)
        else fields[key] == cond
        for key, cond in where.items()
    )


def test_search_selects_tiers(store: Store) -> None:
    vectors = unit_vectors(12, seed=6)
    tiers = [TIERS[i % 4] for i in range(12)]
    batch = memories([f"compass bearing {i}" for i in range(12)], vectors, tier=tiers)
    write(store, batch)
    for asked in (None, "core", ["working", "shared"]):
        chosen = TIERS if asked is None else [asked] if isinstance(asked, str) else asked
        expected = {i for i, t in zip(batch["id"], tiers, strict=True) if t in chosen}
        for mode in MODES:
            found = search(store, vectors[0], query="compass", mode=mode, k=50, tier=asked)
            assert set(ids(found)) == expected, (asked, mode)


# -- scan ---------------------------------------------------------------------------------------
def test_scan_returns_current_versions_in_write_order_with_filters(store: Store) -> None:
    first = memories(
        ["a one", "a two", "a three"],
        kind=["text", "text", "note"],
        session=["s1", "s2", "s1"],
        metadata=[{"n": 1}, {"n": 2}, {"n": 3}],
        tier=["core", "long_term", "long_term"],
    )
    a1, a2, a3 = first["id"]
    stamps = hlcs(write(store, first))
    second = memories(["b one", "b two"], metadata=[{"n": 4}, {"n": 5}])
    b1, b2 = second["id"]
    write(store, second)
    edit = memories(["a one, edited"], id=[a1], tier="core", session="s1", metadata=[{"n": 1}])
    write(store, edit)  # its new version is written last
    store.forget(TENANT, [b1])
    assert ids(scan(store)) == [a2, a3, b2, a1]
    assert ids(scan(store, include_deleted=True)) == [a2, a3, b2, a1, b1]
    assert ids(scan(store, ids=[b1, a3, new_id()])) == [a3]
    assert ids(scan(store, ids=[b1, a3], include_deleted=True)) == [a3, b1]
    assert ids(scan(store, kind="note")) == [a3]
    assert ids(scan(store, session="s1")) == [a3, a1]
    assert ids(scan(store, tier="core")) == [a1]
    assert ids(scan(store, tier=["core", "long_term"])) == [a2, a3, b2, a1]
    assert ids(scan(store, since_hlc=max(stamps.values()))) == [b2, a1]
    assert ids(scan(store, since_hlc=max(stamps.values()), include_deleted=True)) == [b2, a1, b1]
    assert ids(scan(store, where={"n": {"$gte": 2}})) == [a2, a3, b2]
    assert ids(scan(store, where={"n": {"$gte": 2}}, session="s1")) == [a3]
    whole = scan(store, include_deleted=True)
    batches = list(store.scan(ScanRequest(tenant=TENANT, include_deleted=True), 2))
    assert [b.num_rows for b in batches] == [2, 2, 1]
    assert all(b.schema.equals(RECORD_SCHEMA) for b in batches)
    assert scan(store, include_deleted=True, batch_rows=2).equals(whole)
    assert scan(store, tenant="nobody").num_rows == 0


# -- views --------------------------------------------------------------------------------------
WORD = "matrixword"
# Whose views: the tenant's own (whole, a lower clearance, fewer tiers) and other tenants'
# (named on some shared records, with a low clearance, named on none).
VIEWERS = [
    Token(TENANT, "all", TIERS, TIERS, 3),
    Token(TENANT, "c1", TIERS, TIERS, 1),
    Token(TENANT, "working", ("working", "long_term"), ("working",), 2),
    Token("bo", "phone", TIERS, TIERS, 3),
    Token("bo", "low", ("shared", "core"), ("core",), 1),
    Token("cy", "app", TIERS, TIERS, 3),
    Token(TENANT, "writer", (), ("working",), 3),  # reads no tier at all
]


def view_of(token: Token) -> View:
    grant = Grant(token.tenant, token.principal, token.tiers, token.write_tiers, token.clearance)
    return grant.read_view(TENANT)


def world() -> tuple[dict[str, list[Any]], np.ndarray]:
    """One record per tier and privacy (shared ones naming no reader, "bo", or ana and
    "bo/phone"); each a different length, so keyword ranks are never ties."""
    cells = [
        (tier, privacy, readers)
        for tier in TIERS
        for privacy in range(4)
        for readers in ([[], ["bo"], [TENANT, "bo/phone"]] if tier == "shared" else [[]])
    ]
    vectors = unit_vectors(len(cells), seed=8)
    columns = memories(
        [f"{WORD} {t} p{p} r{len(r)}" + " filler" * i for i, (t, p, r) in enumerate(cells)],
        vectors,
        metadata=[{"n": i, **({READERS_KEY: r} if r else {})} for i, (_, _, r) in enumerate(cells)],
        tier=[c[0] for c in cells],
        privacy=[c[1] for c in cells],
    )
    return columns, vectors


def visible(columns: dict[str, list[Any]], token: Token) -> list[str]:
    """Ids the reference model (``support.access_model``) lets ``token`` read, in order."""
    return [
        row["id"]
        for row in _row_dicts(columns)
        if may_read(
            token,
            TENANT,
            row["tier"],
            row["privacy"],
            json.loads(row["metadata"]).get(READERS_KEY, []),
        )
    ]


def test_views_restrict_every_read_like_the_reference_model(store: Store) -> None:
    columns, vectors = world()
    write(store, columns)
    sizes = dict(zip(columns["id"], map(len, columns["payload"]), strict=True))
    tier_of = dict(zip(columns["id"], columns["tier"], strict=True))
    n_of = {row["id"]: json.loads(row["metadata"])["n"] for row in _row_dicts(columns)}
    for token in VIEWERS:
        view, expected = view_of(token), visible(columns, token)
        who = (token.tenant, token.principal)
        assert ids(store.get(TENANT, columns["id"], view=view)) == expected, who
        assert ids(scan(store, view=view)) == expected, who
        assert ids(scan(store, view=view, where={"n": {"$lt": 12}})) == [
            i for i in expected if n_of[i] < 12
        ], who
        for mode in MODES:
            found = search(store, vectors[5], query=WORD, mode=mode, k=100, view=view)
            assert sorted(ids(found)) == sorted(expected), (who, mode)
            found = search(
                store, vectors[5], query=WORD, mode=mode, k=100, view=view, tier="shared"
            )
            assert sorted(ids(found)) == sorted(i for i in expected if tier_of[i] == "shared"), (
                who,
                mode,
            )
        stats, counts = store.stats(TENANT, view=view), store.tier_counts(TENANT, view)
        assert stats["memories"] == len(expected), who
        for tier in TIERS:
            mine = [i for i in expected if tier_of[i] == tier]
            assert stats["tiers"][tier]["memories"] == len(mine), (who, tier)
            assert counts[tier] == (len(mine), sum(sizes[i] for i in mine)), (who, tier)


@pytest.mark.parametrize("viewer", ["c1", "low"])
def test_records_outside_a_view_change_no_answer(backend: Backend, viewer: str) -> None:
    columns, vectors = world()
    token = next(t for t in VIEWERS if t.principal == viewer)
    view, seen = view_of(token), visible(columns, token)
    assert 0 < len(seen) < len(columns["id"])
    full, bare = backend.open("full"), backend.open("bare")
    write(full, columns)
    write(bare, rows(columns, *(columns["id"].index(i) for i in seen)))  # only what it sees
    (seen_answers, seen_scores), (all_answers, all_scores) = (
        _answers(store, columns["id"], vectors, view) for store in (bare, full)
    )
    assert all_answers == seen_answers
    assert all_scores == pytest.approx(seen_scores, rel=1e-5)


def _answers(
    store: Store, asked: list[str], vectors: np.ndarray, view: View
) -> tuple[list[Any], list[float]]:
    """Every answer through ``view``, and the vector hits' scores apart."""
    got: list[Any] = [
        ids(store.get(TENANT, asked, view=view)),
        texts(scan(store, view=view)),
        store.tier_counts(TENANT, view),
    ]
    stats = store.stats(TENANT, view=view)
    got += [stats["memories"], stats["tiers"]]
    scores: list[float] = []
    for mode in MODES:
        for k in (2, 100):
            hits = search(store, vectors[5], query=WORD, mode=mode, k=k, view=view)
            # Keyword and fused scores depend on the whole corpus (BM25's statistics); cosine
            # similarity does not, but float32 arithmetic may differ in the last bits.
            got.append(ids(hits))
            if mode == "vector":
                scores += hits.column("score").to_pylist()
    return got, scores


# -- stats and counts ---------------------------------------------------------------------------
def test_stats_and_tier_counts_count_live_memories_and_their_bytes(store: Store) -> None:
    dictionary_columns, _ = dictionary_record(b"a dictionary of words and phrases " * 40)
    write(store, dictionary_columns)
    tiers = ["core", "core", "long_term", "long_term", "long_term", "shared"]
    batch = memories(
        [f"memory {i} " + "with more words " * i for i in range(6)], unit_vectors(6), tier=tiers
    )
    write(store, batch)
    store.forget(TENANT, [batch["id"][2]])
    stats, counts = store.stats(TENANT), store.tier_counts(TENANT)
    # The common contract; a backend may add keys (the lake adds ``lake``, where it reads).
    assert stats["tenant"] == TENANT and stats["replica_id"] == store.replica_id
    assert stats["memories"] == 5 and stats["embed_models"] == {"external": 16}
    for tier in TIERS:
        live = [i for i, t in enumerate(tiers) if t == tier and i != 2]
        payload = sum(len(batch["payload"][i]) for i in live)
        dictionaries = 1 if tier == "long_term" else 0
        assert stats["tiers"][tier] == {
            "memories": len(live),
            "deleted": int(tier == "long_term"),
            "text_bytes": sum(batch["raw_size"][i] for i in live),
            "payload_bytes": payload,
            "dictionaries": dictionaries,
            "dictionary_bytes": len(dictionary_columns["payload"][0]) * dictionaries,
            "scene_bytes": 0,
        }, tier
        assert counts[tier] == (len(live), payload), tier
    assert store.stats("nobody")["memories"] == 0
    assert store.tier_counts("nobody") == {tier: (0, 0) for tier in TIERS}


# -- tenants ------------------------------------------------------------------------------------
def test_tenants_are_kept_apart(store: Store) -> None:
    vectors = unit_vectors(4, seed=9)
    same = new_id()  # one id in both tenants: two memories
    ana = memories(["ana's heron", "ana's other note"], vectors[:2], id=[same, new_id()])
    bo = memories(["bo's heron", "bo's other note"], vectors[2:], id=[same, new_id()], tenant="bo")
    write(store, ana)  # one tenant a put: the lake commits each tenant's log apart
    write(store, bo)
    assert texts(store.get(TENANT, [same, *bo["id"]])) == {same: "ana's heron"}
    assert texts(store.get("bo", [same, *ana["id"]])) == {same: "bo's heron"}
    for tenant, columns in ((TENANT, ana), ("bo", bo)):
        assert ids(scan(store, tenant=tenant)) == columns["id"]
        for mode in MODES:
            found = search(store, vectors[3], query="heron", mode=mode, k=10, tenant=tenant)
            assert set(ids(found)) <= set(columns["id"]) and ids(found), (tenant, mode)
        assert store.stats(tenant)["memories"] == 2
        assert store.tier_counts(tenant)["long_term"][0] == 2
    assert store.forget(TENANT, bo["id"][1:]) == []  # not ana's to forget
    store.forget(TENANT, [same])
    assert texts(store.get("bo", [same])) == {same: "bo's heron"}


# -- durability ---------------------------------------------------------------------------------
def test_everything_survives_close_and_reopen(backend: Backend) -> None:
    store = backend.open()
    vectors = unit_vectors(8, seed=10)
    dictionary_columns, dictionary = dictionary_record(b"the orchard gate and the hill " * 30)
    write(store, dictionary_columns)
    said = [f"durable note {i}: " + "the orchard and the long hill, " * 3 for i in range(6)]
    batch = memories(
        said,
        vectors[:6],
        tier=["core", "working", "long_term", "long_term", "shared", "long_term"],
        metadata=[{"n": i} for i in range(6)],
    )
    coded = memories(
        ["the orchard gate and the hill again"],
        vectors[6:7],
        codec=CODEC_ZSTD_DICT,
        dictionary=dictionary,
    )
    write(store, batch, coded)
    edited, forgotten, replicated, reencoded, unchanged = batch["id"][:5]
    write(store, memories(["the edited orchard note"], vectors[7:], id=[edited], tier="core"))
    store.forget(TENANT, [forgotten])
    future = hlc_pack(int(time.time() * 1000) + 60_000, 0)
    write(store, memories(["from a replica"], id=[replicated], hlc=future, origin="rz"))
    plain = memories([said[3]], vectors[3:4], codec=CODEC_NONE, id=[reencoded], metadata=[{"n": 3}])
    assert hlcs(write(store, plain, reencode=True))[reencoded] > 0
    before = _snapshot(store, vectors, dictionary)
    store = backend.reopen(store)
    after = _snapshot(store, vectors, dictionary)
    for name, answer in before.items():
        assert after[name] == (pytest.approx(answer) if "scores" in name else answer), name
    # It writes on from where it was: a retry is still a retry, a new write orders last.
    retry = rows(batch, 4)
    stored = {r["id"]: r["hlc"] for r in scan(store).to_pylist()}
    assert hlcs(write(store, retry)) == {unchanged: stored[unchanged]}
    fresh = hlcs(write(store, memories(["after the restart"])))
    assert min(fresh.values()) > max(stored.values())


def _snapshot(store: Store, vectors: np.ndarray, dictionary: Any) -> dict[str, Any]:
    everything = scan(store, include_deleted=True)
    stats = store.stats(TENANT)
    got = {
        "scan": everything.to_pylist(),
        "texts": texts(everything, dictionary),
        "get": store.get(TENANT, ids(everything)).to_pylist(),
        "tier_counts": store.tier_counts(TENANT),
        "stats": [stats["memories"], stats["tiers"], stats["embed_models"]],
    }
    for mode in MODES:
        hits = search(store, vectors[3], query="orchard hill", mode=mode, k=5)
        got[mode] = hits.drop_columns(["score"]).to_pylist()
        # BM25 scores count the index's replaced and deleted documents until a merge, which
        # a rebuilt index (the lake's) never held: keyword ranks must agree, scores need not.
        # Cosine and fused scores must (float32 distances up to their last bits).
        if mode != "keyword":
            got[f"{mode} scores"] = hits.column("score").to_pylist()
    return got


# -- when a memory happened ---------------------------------------------------------------------
def test_occurred_at_filters_search_and_scan_and_follow_new_writes(store: Store) -> None:
    days = [f"2023-05-0{n}T12:00:00Z" for n in range(1, 7)]
    vectors = unit_vectors(8, seed=17)
    first = memories(
        [f"kestrel sighting {n}" for n in range(6)],
        vectors[:6],
        metadata=[{OCCURRED_AT_KEY: day} for day in days],
    )
    write(store, first)
    where = {"occurred_at": {"$gte": "2023-05-05"}}
    expected = {first["id"][4], first["id"][5]}
    for mode in MODES:  # the query is nearest record 0, which the filter leaves out
        found = ids(search(store, vectors[0], query="kestrel", mode=mode, k=10, where=where))
        assert set(found) == expected, mode
    later = memories(
        ["kestrel sighting late", "kestrel sighting early"],
        vectors[6:],
        metadata=[{OCCURRED_AT_KEY: "2023-06-01T00:00:00Z"}, {OCCURRED_AT_KEY: days[0]}],
    )
    write(store, later)
    for mode in MODES:  # the filter's cached rows follow the write
        found = ids(search(store, vectors[0], query="kestrel", mode=mode, k=10, where=where))
        assert set(found) == expected | {later["id"][0]}, mode
    window = {"occurred_at": {"$gt": days[0], "$lt": 1683288000}}  # (1 May, 5 May 12:00)
    assert set(ids(scan(store, where=window))) == set(first["id"][1:4])
