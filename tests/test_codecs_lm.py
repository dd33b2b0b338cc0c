"""The ``lm`` codec through the SDK and real servers: policy, recompression, recall, sync.

The model costs tens of milliseconds a token, so each test writes a handful of short
memories. CI sets ``AIMEM_REQUIRE_LM=1``: a missing ``[lm]`` extra then fails the run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import pytest

REQUIRED = os.environ.get("AIMEM_REQUIRE_LM") == "1"
try:
    import llama_cpp  # noqa: F401
except ImportError as exc:
    if REQUIRED:
        raise ImportError(f"AIMEM_REQUIRE_LM=1 but llama_cpp does not import ({exc})") from exc
    pytest.skip("llama-cpp-python is not installed (the [lm] extra)", allow_module_level=True)

from support.wire import scan_all

from aios_memory.client import MemoryClient
from aios_memory.client.codec._lm import load_lm_codec
from aios_memory.client.codec.text import Codebook, content_hash
from aios_memory.flight_server import RunningServer
from aios_memory.schemas import CODEC_LM, CODEC_ZSTD_DICT, CodecMismatchError
from aios_memory.sync import FlightReplica, sync_once

TURNS = [
    (
        "Priya",
        "Priya: I finally signed up for the pottery class downtown, first lesson is "
        "on Thursday evening!",
    ),
    (
        "Jordan",
        "Jordan: That's great! My brother and I are hiking near the lake this weekend "
        "if the weather holds.",
    ),
    ("Priya", "Priya: Send me pictures of the sunset, the last ones you took were beautiful."),
    ("Jordan", "Jordan: Will do. How is the new job going so far, are the people nice?"),
]


def remember(mem: MemoryClient, tier: str = "long_term") -> list[str]:
    return [mem.remember([text], tier=tier, agent=agent)[0] for agent, text in TURNS]


def rows(server: RunningServer) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in scan_all(server.uri, server.token).to_pylist()}


def test_a_tier_whose_policy_is_lm_stores_what_the_model_cannot_predict(
    server: RunningServer,
) -> None:
    with MemoryClient(server.uri, server.token, codecs="long_term=lm") as mem:
        ids = remember(mem)
        assert [m.text for m in mem.get(ids)] == [t for _, t in TURNS]
    stored = rows(server)
    fingerprint = load_lm_codec().fingerprint
    raw = sum(len(t.encode()) for _, t in TURNS)
    payload = sum(len(stored[i]["payload"]) for i in ids)
    assert {stored[i]["codec"] for i in ids} == {CODEC_LM}
    assert {stored[i]["dict_id"] for i in ids} == {fingerprint}
    assert raw / payload > 3  # short turns; LoCoMo's average 5x+ is in bench/RESULTS.md


def test_recompress_to_lm_keeps_texts_hashes_and_keyword_recall(
    client: MemoryClient, server: RunningServer
) -> None:
    ids = remember(client)
    before = rows(server)
    report = client.recompress("long_term", CODEC_LM)
    after = rows(server)
    assert report.reencoded == len(ids) and report.bytes_after < report.bytes_before / 2
    for memory_id in ids:
        assert after[memory_id]["codec"] == CODEC_LM
        assert after[memory_id]["content_hash"] == before[memory_id]["content_hash"]
    hits = client.recall("pottery class Thursday", mode="keyword", k=3)
    assert hits and hits[0].id == ids[0] and hits[0].text == TURNS[0][1]
    assert client.stats()["keyword_backlog"] == 0  # the stored text was reused, not decoded


def test_a_payload_from_another_model_is_refused(
    client: MemoryClient, server: RunningServer
) -> None:
    ids = remember(client)
    client.recompress("long_term", CODEC_LM)
    row = rows(server)[ids[0]]
    with pytest.raises(CodecMismatchError, match="language model"):
        Codebook().decode({**row, "dict_id": row["dict_id"] ^ 1}, max_bytes=1 << 20)
    assert Codebook().text(row, max_bytes=1 << 20) == TURNS[0][1]


def test_decoded_texts_are_cached(server: RunningServer) -> None:
    calls = []
    model = load_lm_codec()

    class Counting:
        fingerprint = model.fingerprint

        def decode(self, payload: bytes, raw_size: int, agent: str | None) -> bytes:
            calls.append(raw_size)
            return model.decode(payload, raw_size, agent)

        def describe(self) -> dict[str, Any]:
            return model.describe()

    with MemoryClient(server.uri, server.token, codecs="long_term=lm") as mem:
        ids = remember(mem)
        mem.codebook = Codebook(mem.codebook._dictionaries, lm=lambda: Counting())
        first = [m.text for m in mem.get(ids)]
        second = [m.text for m in mem.get(ids)]
    assert first == second == [t for _, t in TURNS]
    assert len(calls) == len(TURNS)


def test_a_replica_new_to_lm_records_indexes_them_in_the_background(
    start: Callable[..., Any],
) -> None:
    device, cloud, laptop = start("device"), start("cloud", role="cloud"), start("laptop")
    with MemoryClient(device.uri, device.token, codecs="long_term=lm") as mem:
        ids = remember(mem)
    for local in (device, laptop):
        with FlightReplica(local.uri, local.token) as a, FlightReplica(cloud.uri, cloud.token) as b:
            sync_once(a, b)
    with MemoryClient(laptop.uri, laptop.token) as other:
        deadline = time.monotonic() + 120
        while other.stats()["keyword_backlog"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert other.stats()["keyword_backlog"] == 0
        hits = other.recall("hiking near the lake", mode="keyword", k=3)
        assert hits and hits[0].id == ids[1] and hits[0].text == TURNS[1][1]
    stored = rows(laptop)
    assert all(
        content_hash(t.encode()) == stored[i]["content_hash"]
        for i, (_, t) in zip(ids, TURNS, strict=True)
    )
    assert {stored[i]["codec"] for i in ids} <= {CODEC_LM, CODEC_ZSTD_DICT}


def test_recompress_right_after_a_restart_reuses_the_stored_texts(
    server_factory: Callable[..., Any],
) -> None:
    with server_factory() as first, MemoryClient(first.uri, first.token) as mem:
        ids = remember(mem)
    with server_factory() as again, MemoryClient(again.uri, again.token) as mem:
        assert mem.recompress("long_term", CODEC_LM).reencoded == len(ids)
        assert mem.stats()["keyword_backlog"] == 0
        hits = mem.recall("pottery class Thursday", mode="keyword", k=1)
        assert [h.id for h in hits] == [ids[0]]
