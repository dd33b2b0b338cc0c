"""Codecs end to end: round trips, bombs, the verified fallback, dictionaries kept per tenant
and synced with their tier, and recompression that keeps every text and every edit."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import pyarrow.flight as flight
import pytest
import zstandard
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from support.wire import batch_of, put, record_columns, scan_all

from aios_memory.client import MemoryClient
from aios_memory.client.cli import main
from aios_memory.client.codec.dictionaries import train_dictionary
from aios_memory.client.codec.text import (
    Codebook,
    Dictionary,
    EncodedText,
    content_hash,
    encode_text,
)
from aios_memory.flight_server import RunningServer
from aios_memory.schemas import (
    CODEC_LM,
    CODEC_ZSTD,
    CODEC_ZSTD_DICT,
    DICTIONARY_KIND,
    CodecMismatchError,
    CorruptDataError,
    InvalidValueError,
    TextTooLargeError,
    decode_error,
    dictionary_id_of,
)
from aios_memory.sync import FlightReplica, sync_once

NAMES = ["Caroline", "Melanie", "Jon", "Gina", "Ada", "Tim", "Nate", "Joanna"]
PLACES = [
    "the beach",
    "the park",
    "a pottery class",
    "the museum",
    "my sister's house",
    "the LGBTQ support group",
    "a charity run",
    "the library",
    "the farmers market",
]
THINGS = [
    "painting a sunset",
    "adopting a dog",
    "a new job at the bakery",
    "my kids' school play",
    "learning the guitar",
    "a camping trip",
    "reading a book about courage",
]


def turns(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` conversation-like (agent, text) pairs with the repetition real chats have."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        who = rng.choice(NAMES)
        text = (
            f"{who}: Hey! I went to {rng.choice(PLACES)} yesterday and kept thinking about "
            f"{rng.choice(THINGS)}. It was {rng.choice(['amazing', 'tough', 'so fun'])}, "
            f"and I'm glad I did it. How about you? ({i})"
        )
        out.append((who, text))
    return out


@pytest.fixture(scope="module")
def dictionary() -> Dictionary:
    data, report = train_dictionary([t.encode() for _, t in turns(600)], None, max_bytes=8 * 1024)
    assert data is not None, report.reason
    return Dictionary(dictionary_id_of(content_hash(data)), data)


def row_of(encoded: EncodedText, agent: str | None = None) -> dict[str, Any]:
    return {
        "id": "m",
        "codec": encoded.codec,
        "dict_id": encoded.dict_id,
        "payload": encoded.payload,
        "raw_size": encoded.raw_size,
        "content_hash": encoded.content_hash,
        "agent": agent,
    }


# -- codecs alone ---------------------------------------------------------------------

TEXTS = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=2000),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),  # binary-looking text
    st.sampled_from(["", "x", "😀" * 500, "\x00\x01\x02" * 100, "é" * 4000]),
)


@settings(max_examples=150, deadline=None)
@given(text=TEXTS, codec=st.sampled_from(["none", CODEC_ZSTD, CODEC_ZSTD_DICT]))
def test_every_codec_round_trips_any_text(text: str, codec: str, dictionary: Dictionary) -> None:
    encoded = encode_text(text, codec=codec, dictionary=dictionary)
    assert encoded.content_hash == content_hash(text.encode())
    book = Codebook(lambda i: dictionary if i == dictionary.dict_id else None)
    assert book.text(row_of(encoded), max_bytes=1 << 20) == text


def test_dictionary_beats_plain_zstd_and_strips_the_header(dictionary: Dictionary) -> None:
    texts = [t for _, t in turns(200, seed=7)]
    with_dict = sum(
        len(encode_text(t, codec=CODEC_ZSTD_DICT, dictionary=dictionary).payload) for t in texts
    )
    plain = sum(len(encode_text(t, codec=CODEC_ZSTD).payload) for t in texts)
    stock = sum(
        len(
            zstandard.ZstdCompressor(
                dict_data=zstandard.ZstdCompressionDict(dictionary.data)
            ).compress(t.encode())
        )
        for t in texts
    )
    assert with_dict < plain / 1.5
    assert with_dict <= stock - 6 * len(texts)  # magic, dict id, checksum, size: not stored


def test_a_dictionary_bomb_is_refused(dictionary: Dictionary) -> None:
    bomb = Dictionary(dictionary.dict_id, dictionary.data).compress(b"\0" * (1 << 22))
    row = {
        "id": "m",
        "codec": CODEC_ZSTD_DICT,
        "dict_id": dictionary.dict_id,
        "payload": bomb,
        "raw_size": 100,
        "content_hash": None,
        "agent": None,
    }
    book = Codebook(lambda i: dictionary)
    with pytest.raises(CorruptDataError, match="past its declared"):
        book.decode(row, max_bytes=1 << 20)
    with pytest.raises(TextTooLargeError):
        book.decode({**row, "raw_size": 1 << 30}, max_bytes=1 << 20)
    with pytest.raises(CorruptDataError):
        book.decode({**row, "payload": b"\xff" * 40}, max_bytes=1 << 20)


def test_unknown_dictionary_says_which(dictionary: Dictionary) -> None:
    encoded = encode_text(turns(1)[0][1], codec=CODEC_ZSTD_DICT, dictionary=dictionary)
    with pytest.raises(CodecMismatchError, match=str(dictionary.dict_id)):
        Codebook().decode(row_of(encoded), max_bytes=1 << 20)


class _LyingModel:
    """A model whose decoder disagrees with its encoder: what verification exists for."""

    fingerprint = 7

    def encode(self, raw: bytes, agent: str | None) -> bytes:
        return b"\x01"

    def decode(self, payload: bytes, raw_size: int, agent: str | None) -> bytes:
        return b"?" * raw_size

    def describe(self) -> dict[str, Any]:
        return {"model": "liar"}


def test_an_lm_payload_that_fails_verification_falls_back(dictionary: Dictionary) -> None:
    text = turns(1)[0][1]
    encoded = encode_text(text, codec=CODEC_LM, dictionary=dictionary, lm=_LyingModel())
    assert encoded.codec == CODEC_ZSTD_DICT
    encoded = encode_text(text, codec=CODEC_LM, lm=_LyingModel())
    assert encoded.codec == CODEC_ZSTD


def test_an_lm_payload_from_another_model_is_refused_not_garbled() -> None:
    row = {
        "id": "m1",
        "codec": CODEC_LM,
        "dict_id": 99,
        "payload": b"\x01\x02",
        "raw_size": 5,
        "content_hash": content_hash(b"hello"),
        "agent": None,
    }
    book = Codebook(lm=lambda: _LyingModel())
    with pytest.raises(CodecMismatchError, match="language model 99"):
        book.decode(row, max_bytes=1 << 20)


# -- through a server -------------------------------------------------------------------


def refusal(server: RunningServer, columns: dict[str, list]) -> Exception:
    """The contract error the server answers a raw put of ``columns`` with."""
    with pytest.raises(flight.FlightError) as info:
        put(server.uri, server.token, [batch_of(columns)])
    error = decode_error(info.value.extra_info)
    assert error is not None, info.value
    return error


def remember_turns(mem: MemoryClient, pairs: list[tuple[str, str]], tier: str) -> list[str]:
    ids: list[str] = []
    for agent in sorted({a for a, _ in pairs}):
        texts = [t for a, t in pairs if a == agent]
        ids += mem.remember(texts, tier=tier, agent=agent)
    return ids


def trained(mem: MemoryClient, tier: str = "long_term", n: int = 400) -> list[str]:
    ids = remember_turns(mem, turns(n), tier)
    report = mem.train_dictionary(tier)
    assert report.trained, report.reason
    return ids


def test_new_memories_use_the_tiers_dictionary(client: MemoryClient, server: RunningServer) -> None:
    trained(client)
    fresh = turns(20, seed=3)
    ids = remember_turns(client, fresh, "long_term")
    rows = {r["id"]: r for r in scan_all(server.uri, server.token).to_pylist()}
    assert {rows[i]["codec"] for i in ids} == {CODEC_ZSTD_DICT}
    assert sorted(m.text for m in client.get(ids)) == sorted(t for _, t in fresh)
    hits = client.recall(fresh[0][1].split(":")[1][:40], mode="keyword", k=50)
    assert any(h.text == fresh[0][1] for h in hits)  # the server decoded it to index it


def test_training_waits_for_growth_and_keeps_old_dictionaries(client: MemoryClient) -> None:
    trained(client)
    again = client.train_dictionary("long_term")
    assert not again.trained and "due at" in again.reason
    forced = client.train_dictionary("long_term", force=True)
    assert not forced.trained  # same texts: the new one is no better on held-out texts
    assert len(client.dictionaries()) == 1
    assert client.train_dictionary("core").reason.startswith("0 memories")
    (dictionary_id,) = [
        r["id"] for batch in client.iter_records(kind=DICTIONARY_KIND) for r in batch.to_pylist()
    ]
    with pytest.raises(InvalidValueError, match="never forgotten"):
        client.forget([dictionary_id])
    assert len(client.dictionaries()) == 1
    stats = client.stats()  # a dictionary is a record, not a memory
    assert stats["memories"] == 400 and stats["tiers"]["long_term"]["dictionaries"] == 1
    assert {t["tier"]: t["memories"] for t in client.tiers()}["long_term"] == 400


def test_dictionaries_stay_with_their_tenant(server: RunningServer) -> None:
    with (
        MemoryClient(server.uri, server.token, tenant="alice") as alice,
        MemoryClient(server.uri, server.token, tenant="bob") as bob,
    ):
        ids = trained(alice)
        assert bob.dictionaries() == []
        assert bob.get(ids) == []
        (entry,) = alice.dictionaries()
        columns = record_columns([turns(1)[0][1]], tier="long_term")
        columns["tenant"] = ["bob"]
        encoded = alice.encode(turns(1)[0][1], "long_term")
        columns.update(codec=[encoded.codec], dict_id=[entry["dict_id"]], payload=[encoded.payload])
        refused = refusal(server, columns)
        assert isinstance(refused, CodecMismatchError) and str(entry["dict_id"]) in refused.message


def test_a_dictionary_record_must_match_its_bytes(server: RunningServer) -> None:
    data = b"some dictionary bytes" * 64
    columns = record_columns(["x"], tier="long_term")
    columns.update(
        kind=[DICTIONARY_KIND],
        codec=["none"],
        payload=[data],
        raw_size=[len(data)],
        content_hash=[content_hash(data)],
        dict_id=[12345],
    )
    refused = refusal(server, columns)
    assert type(refused) is CorruptDataError and "dict_id" in refused.message
    columns.update(dict_id=[None])
    refused = refusal(server, columns)
    assert isinstance(refused, InvalidValueError) and "dict_id" in refused.message
    assert scan_all(server.uri, server.token).num_rows == 0


def test_recompress_keeps_every_text_and_hash(client: MemoryClient, server: RunningServer) -> None:
    ids = remember_turns(client, turns(300), "long_term")  # before any dictionary: plain zstd
    before = {r["id"]: r for r in scan_all(server.uri, server.token).to_pylist()}
    assert client.train_dictionary("long_term").trained
    seen = []
    report = client.recompress("long_term", CODEC_ZSTD_DICT, progress=lambda r: seen.append(r))
    after = {r["id"]: r for r in scan_all(server.uri, server.token).to_pylist()}
    assert report.reencoded == report.verified == len(ids) and seen
    assert report.bytes_after < report.bytes_before
    for memory_id in ids:
        assert after[memory_id]["content_hash"] == before[memory_id]["content_hash"]
        assert after[memory_id]["codec"] == CODEC_ZSTD_DICT
        assert after[memory_id]["hlc"] > before[memory_id]["hlc"]
        assert after[memory_id]["created_at"] == before[memory_id]["created_at"]
    originals = [Codebook().text(before[i], max_bytes=1 << 20) for i in ids]  # plain zstd
    assert [m.text for m in client.get(ids)] == originals
    assert client.recompress("long_term", CODEC_ZSTD_DICT).reencoded == 0  # nothing left to do


def test_recompress_never_undoes_an_edit_or_a_forget(
    client: MemoryClient, server: RunningServer
) -> None:
    from aios_memory.client._recompress import RecompressReport, _recompress_chunk

    ids = remember_turns(client, turns(300), "long_term")
    assert client.train_dictionary("long_term").trained
    stale = [r for r in scan_all(server.uri, server.token).to_pylist() if r["id"] in ids[:3]]
    columns = record_columns(["an edit made meanwhile"], tier="long_term")
    columns["id"] = [ids[0]]
    put(server.uri, server.token, [batch_of(columns)])
    client.forget(ids[1])
    report = RecompressReport("long_term", CODEC_ZSTD_DICT)
    _recompress_chunk(client, client._upload, stale, CODEC_ZSTD_DICT, report)
    assert (report.reencoded, report.skipped_edited) == (1, 2)
    assert client.get(ids[0])[0].text == "an edit made meanwhile"
    assert client.get(ids[1]) == []


def test_dictionaries_sync_with_their_tier_and_stay_local_with_theirs(
    start: Callable[..., Any],
) -> None:
    device, cloud, laptop = start("device"), start("cloud", role="cloud"), start("laptop")
    with MemoryClient(device.uri, device.token) as mem:
        ids = trained(mem, "long_term")
        trained(mem, "working")
        fresh = remember_turns(mem, turns(10, seed=5), "long_term")
    for local in (device, laptop):
        with FlightReplica(local.uri, local.token) as a, FlightReplica(cloud.uri, cloud.token) as b:
            sync_once(a, b)
    with MemoryClient(laptop.uri, laptop.token) as other:
        assert [d["tier"] for d in other.dictionaries()] == ["long_term"]
        assert len(other.get(ids + fresh)) == len(ids) + len(fresh)
        hits = other.recall(turns(10, seed=5)[0][1][10:50], mode="keyword", k=50)
        assert fresh[0] in {h.id for h in hits}  # the laptop's server decoded it to index it


def test_codec_policy_is_checked_and_chosen_per_tier(server: RunningServer) -> None:
    with pytest.raises(InvalidValueError, match="tier"):
        MemoryClient(server.uri, server.token, codecs="attic=lm")
    with pytest.raises(InvalidValueError, match="codec"):
        MemoryClient(server.uri, server.token, codecs={"core": "gzip"})
    with MemoryClient(server.uri, server.token, codecs="long_term=zstd,core=none") as mem:
        trained(mem)
        (memory_id,) = mem.remember([turns(1, seed=9)[0][1]], tier="long_term")
        (plain_id,) = mem.remember(["a" * 500], tier="core")
        assert mem.codec_policy["long_term"] == CODEC_ZSTD
    rows = {r["id"]: r for r in scan_all(server.uri, server.token).to_pylist()}
    assert rows[memory_id]["codec"] == CODEC_ZSTD
    assert rows[plain_id]["codec"] == "none" and rows[plain_id]["payload"] == b"a" * 500


def test_cli_trains_lists_and_recompresses(server: RunningServer) -> None:
    with MemoryClient(server.uri, server.token) as mem:
        remember_turns(mem, turns(300), "long_term")
    env = {"AIMEM_SERVER": server.uri, "AIMEM_TOKEN": server.token}
    runner = CliRunner()
    trained_out = runner.invoke(main, ["dict", "train", "--tier", "long_term", "--json"], env=env)
    assert trained_out.exit_code == 0, trained_out.output
    assert json.loads(trained_out.stdout)["trained"] is True
    listed = runner.invoke(main, ["dict", "list"], env=env)
    assert "long_term" in listed.stdout
    done = runner.invoke(
        main,
        [
            "recompress",
            "--tier",
            "long_term",
            "--codec",
            "zstd-dict",
            "--older-than",
            "0s",
            "--json",
        ],
        env=env,
    )
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["reencoded"] == 300
    bad = runner.invoke(
        main,
        ["recompress", "--tier", "long_term", "--codec", "zstd", "--older-than", "soon"],
        env=env,
    )
    assert bad.exit_code == 2 and "30d" in bad.output


def test_a_large_import_trains_its_tiers_dictionary_on_the_way(
    client: MemoryClient, server: RunningServer
) -> None:
    from aios_memory.client.importers import MemoryInput

    items = [MemoryInput(text=t, agent=a) for a, t in turns(2500)]
    ids = client.remember_many(items, tier="long_term", batch_size=500)
    entries = client.dictionaries()  # trained at 1,000 and, if it gained 2%, again at 2,000
    assert {e["tier"] for e in entries} == {"long_term"} and 1 <= len(entries) <= 2
    assert entries[0]["trained_on"] == 1000
    rows = {r["id"]: r for r in scan_all(server.uri, server.token).to_pylist()}
    assert rows[ids[0]]["codec"] != CODEC_ZSTD_DICT  # written before there was a dictionary
    assert rows[ids[-1]]["codec"] == CODEC_ZSTD_DICT
    assert client.remember_many(items[:10], tier="core", train_dictionaries=False)
    assert {d["tier"] for d in client.dictionaries()} == {"long_term"}


def test_training_reads_a_bounded_sample_and_waits_for_the_tier_to_double(
    client: MemoryClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aios_memory.client import client as client_module

    texts = turns(1200)
    remember_turns(client, texts, "long_term")
    cap = sum(len(t.encode()) for _, t in texts[:400])  # about a third of the tier's text
    monkeypatch.setattr(client_module, "MAX_TRAINING_BYTES", cap)
    report = client.train_dictionary("long_term")
    assert report.trained, report.reason
    assert 300 <= report.samples < 600  # not all 1,200 texts
    [entry] = client.dictionaries()
    assert entry["trained_on"] == report.samples
    again = client.train_dictionary("long_term")  # due at twice the tier, not twice the sample
    assert not again.trained and "due at 2400" in again.reason
