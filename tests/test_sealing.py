"""End-to-end encryption: sealing and opening records, the keys, and what each server reads.

Sealed records are changed here as an attacker would change them: every field
the associated data binds, one bit of ciphertext, a payload swapped between
two records, an old version replayed under a newer hlc; and the change must be
caught by the client, by a device server's put, and by a device syncing from
a cloud that lies. (tests/test_e2e_canary.py searches a cloud's files.)
"""

from __future__ import annotations

import itertools
import json
import stat
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
import pyarrow.flight as flight
import pytest
from click.testing import CliRunner
from conftest import unit_vectors
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from support.wire import options

from aios_memory.client import MemoryClient, MemoryInput, _records
from aios_memory.client.cli import main
from aios_memory.client.cli.key_commands import keys as keys_command
from aios_memory.client.codec._key_codes import (
    key_id_of,
    new_transfer_code,
    parse_recovery_code,
    recovery_code,
)
from aios_memory.client.codec.batches import rows_to_batch
from aios_memory.client.codec.keys import KeyStore, TenantKey
from aios_memory.client.codec.sealing import check_sealed, open_row, seal_row
from aios_memory.client.codec.text import Codebook
from aios_memory.flight_server import RunningServer, ServerSettings
from aios_memory.schemas import (
    CODEC_SEALED,
    TIERS,
    CorruptDataError,
    HybridClock,
    InvalidValueError,
    KeyMissingError,
    ScanRequest,
    TamperedError,
    new_id,
)
from aios_memory.sync import FlightReplica, SyncReport, sync_once

KEY = TenantKey("default", key_id_of(b"k" * 32), b"k" * 32)
HLC = 1_700_000_000_000 << 16
WORDS = ["lighthouse", "orchard", "violin", "glacier", "lantern", "saffron"]


def keys_of(key: TenantKey = KEY) -> Callable[[str, int], TenantKey]:
    """A key lookup that hands out ``key`` for any tenant and id (the AEAD must still refuse)."""
    return lambda tenant, key_id: key


def rows_for(
    mem: MemoryClient,
    texts: list[str],
    *,
    privacy: int = 2,
    tier: str = "long_term",
    embeddings: Any = None,
    **fields: Any,
) -> list[dict[str, Any]]:
    """Record rows as ``remember`` makes them, before sealing."""
    items = [MemoryInput(text=t, metadata=fields.pop("metadata", None)) for t in texts]
    vectors = _records.prepare_embeddings(embeddings, len(items))
    defaults = mem._defaults(tier=tier, privacy=privacy, **fields)
    return list(_records.encode_rows(items, vectors, defaults))


def stored(server: RunningServer, tenant: str = "default") -> dict[str, dict[str, Any]]:
    """Every record of ``tenant`` the server holds, as stored (never opened), by id."""
    client = flight.FlightClient(server.uri)
    try:
        ticket = flight.Ticket(ScanRequest(tenant=tenant, include_deleted=True).to_bytes())
        table = client.do_get(ticket, options(server.token)).read_all()
    finally:
        client.close()
    return {r["id"]: r for r in table.to_pylist()}


def sync(local: RunningServer, remote: RunningServer) -> SyncReport:
    with FlightReplica(local.uri, local.token) as a, FlightReplica(remote.uri, remote.token) as b:
        return sync_once(a, b)


def connect(server: RunningServer, **options: Any) -> MemoryClient:
    return MemoryClient(server.uri, server.token, **options)


# -- the format --------------------------------------------------------------------------------

_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=400)
_NAME = st.none() | st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


@settings(max_examples=80, deadline=None)
@given(
    text=_TEXT,
    agent=_NAME,
    session=_NAME,
    privacy=st.integers(0, 3),
    tier=st.sampled_from(TIERS),
    dim=st.sampled_from([0, 1, 7, 384]),
    metadata=st.none()
    | st.dictionaries(st.text(max_size=6), st.integers() | st.text(), max_size=3),
)
def test_open_gives_back_exactly_what_was_sealed(
    text: str,
    agent: str | None,
    session: str | None,
    privacy: int,
    tier: str,
    dim: int,
    metadata: dict | None,
) -> None:
    assume(dim or text.strip())  # a blank text without a vector is refused before sealing
    defaults = _records.Defaults(
        tenant="default",
        embed_model="external",
        tier=tier,
        agent=agent,
        session=session,
        privacy=privacy,
    )
    vectors = unit_vectors(1, dim, seed=dim) if dim else None
    [row] = _records.encode_rows(
        [MemoryInput(text=text, metadata=metadata)],
        _records.prepare_embeddings(vectors, 1),
        defaults,
    )
    sealed = seal_row(row, KEY, HLC, "c-test")
    check_sealed(sealed)
    assert sealed["codec"] == CODEC_SEALED and sealed["metadata"] is None
    assert all(sealed[f] is None for f in ("agent", "session", "embedding", "embed_model"))
    opened = open_row(sealed, keys_of())
    for name in (
        "codec",
        "dict_id",
        "payload",
        "raw_size",
        "content_hash",
        "agent",
        "session",
        "metadata",
        "embed_model",
        "embedding_scale",
        "tier",
        "privacy",
        "id",
    ):
        assert opened[name] == row[name], name
    assert opened["embedding"] == (None if row["embedding"] is None else row["embedding"].tolist())
    assert Codebook().text(opened, max_bytes=1 << 20) == text


def _sealed(**fields: Any) -> dict[str, Any]:
    defaults = _records.Defaults(
        tenant="default", embed_model="external", tier="long_term", privacy=2
    )
    [row] = _records.encode_rows(
        [MemoryInput(text="the safe code is 4711", **fields)], [None], defaults
    )
    return seal_row(row, KEY, HLC, "c-test")


@pytest.mark.parametrize(
    "name, value",
    [
        ("tenant", "mallory"),
        ("id", new_id()),
        ("tier", "shared"),
        ("hlc", HLC + 1),
        ("origin", "c-mallory"),
        ("privacy", 3),
        ("kind", "note"),
        ("deleted", True),
        ("metadata", '{"aimem:readers": ["mallory"]}'),
        ("dict_id", 7),
    ],
)
def test_every_field_the_ciphertext_is_bound_to_is_checked(name: str, value: Any) -> None:
    sealed = _sealed()
    open_row(sealed, keys_of())
    with pytest.raises(TamperedError, match="does not authenticate"):
        open_row({**sealed, name: value}, keys_of())
    moved = {**sealed, "created_at": sealed["created_at"] + timedelta(microseconds=1)}
    with pytest.raises(TamperedError):
        open_row(moved, keys_of())


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_one_flipped_bit_anywhere_after_the_format_byte_is_caught(data: st.DataObject) -> None:
    sealed = _sealed(metadata={"aimem:readers": ["bob"]})
    bit = data.draw(st.integers(8, len(sealed["payload"]) * 8 - 1))
    payload = bytearray(sealed["payload"])
    payload[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(TamperedError):
        open_row({**sealed, "payload": bytes(payload)}, keys_of())
    with pytest.raises(CorruptDataError):
        check_sealed({**sealed, "payload": bytes(payload)})  # the cloud sees the hash change


def test_a_wrong_key_is_a_missing_key_and_names_the_fix() -> None:
    other = TenantKey("default", key_id_of(b"o" * 32), b"o" * 32)
    with pytest.raises(KeyMissingError, match="aimem keys import"):
        open_row(_sealed(), lambda tenant, key_id: other if key_id == other.key_id else None)


def test_only_the_access_list_stays_outside() -> None:
    sealed = _sealed(metadata={"topic": "health", "aimem:readers": ["bob", "carol/phone"]})
    assert json.loads(sealed["metadata"]) == {"aimem:readers": ["bob", "carol/phone"]}
    assert json.loads(open_row(sealed, keys_of())["metadata"])["topic"] == "health"
    leaky = {**sealed, "agent": "ada"}
    with pytest.raises(InvalidValueError, match="agent"):
        check_sealed(leaky)
    with pytest.raises(InvalidValueError, match="no version"):
        check_sealed({**sealed, "hlc": 0})


# -- the threshold -----------------------------------------------------------------------------


def test_records_at_or_above_the_threshold_are_sealed_and_read_back(
    client: MemoryClient, server: RunningServer
) -> None:
    ids = [
        client.remember(
            f"note at privacy {p}", tier="long_term", privacy=p, agent="ada", metadata={"p": p}
        )[0]
        for p in range(4)
    ]
    rows = stored(server)
    assert [rows[i]["codec"] == CODEC_SEALED for i in ids] == [False, False, True, True]
    assert [rows[i]["agent"] for i in ids] == ["ada", "ada", None, None]
    memories = client.get(ids)
    assert [(m.text, m.agent, m.metadata) for m in memories] == [
        (f"note at privacy {p}", "ada", {"p": p}) for p in range(4)
    ]
    assert all(m.hlc == rows[m.id]["hlc"] for m in memories)


def test_the_threshold_is_per_tenant_and_can_be_overridden(
    server: RunningServer, key_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = KeyStore(key_store)
    store.create("strict", encrypt_at=1)
    store.create("loose", encrypt_at=3)

    def sealed_privacies(tenant: str, **options: Any) -> list[int]:
        with connect(server, tenant=tenant, **options) as mem:
            ids = [mem.remember(f"{tenant} {p}", privacy=p)[0] for p in range(4)]
            assert [m.text for m in mem.get(ids)] == [f"{tenant} {p}" for p in range(4)]
        rows = stored(server, tenant)
        return [p for p, i in enumerate(ids) if rows[i]["codec"] == CODEC_SEALED]

    assert sealed_privacies("strict") == [1, 2, 3]
    assert sealed_privacies("loose") == [3]
    assert sealed_privacies("default") == [2, 3]
    assert sealed_privacies("loose", encrypt_at=0) == [0, 1, 2, 3]
    monkeypatch.setenv("AIMEM_ENCRYPT_AT", "4")
    assert sealed_privacies("strict") == []


def test_tombstones_are_never_sealed_and_recompress_leaves_sealed_alone(
    client: MemoryClient, server: RunningServer
) -> None:
    keep, drop = client.remember(
        ["kept secret " * 8, "dropped secret " * 8], tier="long_term", privacy=3
    )
    before = stored(server)[keep]
    report = client.recompress("long_term", "zstd")
    assert (report.scanned, report.skipped_sealed) == (0, 2)
    assert stored(server)[keep] == before
    client.forget(drop)
    tombstone = stored(server)[drop]
    assert tombstone["deleted"] and tombstone["codec"] == "none" and tombstone["payload"] == b""


def test_a_device_filters_sealed_memories_by_their_opened_fields(
    client: MemoryClient, server_factory: Callable[..., Any]
) -> None:
    [memory_id] = client.remember(
        "tea ceremony history",
        tier="long_term",
        privacy=3,
        metadata={"topic": "culture"},
        session="b",
        agent="ada",
    )
    client.remember("tea with milk", tier="long_term", privacy=3, metadata={"topic": "food"})
    [hit] = client.recall("tea", mode="keyword", where={"topic": "culture", "agent": "ada"})
    assert (hit.id, hit.metadata, hit.session) == (memory_id, {"topic": "culture"}, "b")
    scanned = client.scan(where={"topic": "culture"})
    assert scanned.column("id").to_pylist() == [memory_id]
    assert scanned.column("text").to_pylist() == ["tea ceremony history"]
    assert client.scan(session="b").column("id").to_pylist() == [memory_id]
    # What the records hold is still only what stays outside (the fields live apart).
    stored = [r for batch in client.iter_records("long_term") for r in batch.to_pylist()]
    assert len(stored) == 2
    assert all(r["metadata"] is None and r["session"] is None for r in stored)


def test_a_cloud_cannot_filter_on_what_it_cannot_read(start: Callable[..., Any]) -> None:
    cloud = start("cloud", role="cloud")
    with MemoryClient(cloud.uri, cloud.token) as mem:
        [memory_id] = mem.remember(
            "tea ceremony history", tier="long_term", privacy=3, metadata={"topic": "culture"}
        )
        assert mem.recall("tea", mode="keyword") == []  # no text to match either
        assert mem.scan(where={"topic": "culture"}).num_rows == 0
        assert mem.scan(where={"privacy": 3}).column("id").to_pylist() == [memory_id]


# -- the device server -------------------------------------------------------------------------


def test_device_recalls_sealed_memories_by_keyword_and_vector_after_a_restart(
    server_factory: Callable[..., Any],
) -> None:
    vectors = unit_vectors(len(WORDS), dim=16, seed=3)
    texts = [f"my private note about the {word}" for word in WORDS]
    with server_factory() as running, connect(running) as mem:
        ids = mem.remember(
            texts,
            tier="long_term",
            privacy=3,
            embeddings=vectors,
            agent="ada",
            session="s1",
            metadata={"topic": "secret"},
        )
        [hit] = mem.recall("glacier", mode="keyword")
        assert (hit.id, hit.text, hit.agent, hit.session) == (ids[3], texts[3], "ada", "s1")
        rows = stored(running)
        assert all(rows[i]["codec"] == CODEC_SEALED and rows[i]["embedding"] is None for i in ids)
    with server_factory() as running, connect(running) as mem:
        assert running.store._cursor().execute("SELECT count(*) FROM sealed_vectors").fetchone()[
            0
        ] == len(WORDS)
        for i in range(len(WORDS)):  # the records hold no vector: these come from the table
            hits = mem.recall(embedding=vectors[i], k=1, mode="vector")
            assert [(h.id, h.text, h.metadata) for h in hits] == [
                (ids[i], texts[i], {"topic": "secret"})
            ]
        assert [h.id for h in mem.recall("orchard", mode="keyword")] == [ids[1]]
        assert mem.forget(ids[1]) == 1
        assert mem.recall(embedding=vectors[1], k=1, mode="vector")[0].id != ids[1]
        assert (
            running.store._cursor().execute("SELECT count(*) FROM sealed_vectors").fetchone()[0]
            == len(WORDS) - 1
        )


def test_device_embeds_the_opened_text_but_keeps_the_vector_out_of_the_record(
    server_factory: Callable[..., Any],
) -> None:
    with server_factory(embedder="local") as running, connect(running) as mem:
        ids = mem.remember(
            ["My bank PIN is hidden under the blue teapot", "We hiked up the volcano at dawn"],
            tier="long_term",
            privacy=2,
        )
        hits = mem.recall("where is the PIN?", mode="vector", k=1)
        assert [h.id for h in hits] == [ids[0]]
        assert all(r["embedding"] is None for r in stored(running).values())
        models = (
            running.store._cursor()
            .execute("SELECT DISTINCT embed_model FROM sealed_vectors")
            .fetchall()
        )
        assert models == [("multilingual-e5-small-q4",)]


def test_tampering_is_refused_by_a_device_put_and_by_the_client(
    client: MemoryClient, server: RunningServer
) -> None:
    a, b = (client.sealer.seal(row) for row in rows_for(client, ["Ada's secret", "Bob's secret"]))
    swapped = {**a, "payload": b["payload"], "content_hash": b["content_hash"]}
    with pytest.raises(TamperedError, match=a["id"]) as refused:
        client._transport.put([rows_to_batch([swapped])])
    assert refused.value.code == "TAMPERED"
    client.sealer.write([a], client._upload)
    [first] = client.get(a["id"])
    edited = client.sealer.seal({**rows_for(client, ["Ada's new secret"])[0], "id": a["id"]})
    client.sealer.write([edited], client._upload)
    replayed = {**a, "hlc": edited["hlc"] + 1}  # the old version under a newer hlc
    with pytest.raises(TamperedError):
        client._transport.put([rows_to_batch([replayed])])
    with pytest.raises(TamperedError):
        client.codebook.open(replayed)
    assert [m.text for m in client.get(a["id"])] == ["Ada's new secret"] != [first.text]


def test_a_lying_cloud_is_caught_by_the_device_it_syncs_to(start: Callable[..., Any]) -> None:
    device, cloud = start("device"), start("cloud", role="cloud")
    with connect(device) as mem:
        rows = [mem.sealer.seal(r) for r in rows_for(mem, ["my diary entry", "my passwords"])]
        mem.sealer.write(rows, mem._upload)
        sync(device, cloud)
        a, b = rows
        # The cloud cannot tell a swap or a replay from a real version: it stores them.
        with connect(cloud) as liar:
            liar._transport.put(
                [
                    rows_to_batch(
                        [
                            {
                                **a,
                                "payload": b["payload"],
                                "content_hash": b["content_hash"],
                                "hlc": a["hlc"] + 5,
                            }
                        ]
                    )
                ]
            )
        with pytest.raises(TamperedError, match=a["id"]):
            sync(device, cloud)
        assert [m.text for m in mem.get(a["id"])] == ["my diary entry"]


def test_a_sealed_write_orders_after_a_newer_stored_version(
    client: MemoryClient, server: RunningServer
) -> None:
    [memory_id] = client.remember("first", tier="long_term", privacy=2)
    with connect(server) as ahead:  # another device whose clock runs an hour ahead
        ahead.sealer.clock = HybridClock(wall_ms=lambda: int(time.time() * 1000) + 3_600_000)
        ahead.sealer.write(
            [{**rows_for(ahead, ["from the future"])[0], "id": memory_id}], ahead._upload
        )
    [future] = client.get(memory_id)
    row = {**rows_for(client, ["edited here, now"])[0], "id": memory_id}
    assert client.sealer.seal(row)["hlc"] > future.hlc  # reading it moved the clock past it
    client.sealer.clock = HybridClock()  # has not seen the future version
    [ack] = client.sealer.write([row], client._upload)
    assert ack.hlcs[0] > future.hlc
    assert [(m.text, m.hlc) for m in client.get(memory_id)] == [("edited here, now", ack.hlcs[0])]


def test_sealed_dictionaries_serve_the_device_and_travel_unread(start: Callable[..., Any]) -> None:
    device, cloud = start("device"), start("cloud", role="cloud", embedder="local")
    texts = [
        f"Ada: my therapist said the {w} dream means {i} things about my father"
        for i, w in zip(range(260), itertools.cycle(WORDS))
    ]
    with connect(device) as mem:
        mem.remember_many(
            (MemoryInput(text=t, privacy=2) for t in texts),
            tier="long_term",
            train_dictionaries=False,
        )
        report = mem.train_dictionary("long_term", force=True)
        assert report.trained, report.reason
        [dictionary] = [r for r in stored(device).values() if r["kind"] == "zstd-dictionary"]
        assert dictionary["codec"] == CODEC_SEALED and dictionary["dict_id"] == report.dict_id
        new = mem.remember(
            [
                "Ada: my therapist said the violin dream means nothing",
                "Ada: the violin dream was public after all",
            ],
            tier="long_term",
            privacy=2,
        )
        public = mem.remember("Ada: the violin dream is public now", tier="long_term", privacy=1)
        assert stored(device)[public[0]]["codec"] == "zstd-dict"
        inner = mem.codebook.open(stored(device)[new[0]])
        assert (inner["codec"], inner["dict_id"]) == ("zstd-dict", report.dict_id)
        assert len(mem.recall("violin nothing", mode="keyword", k=300)) > 0
        sync(device, cloud)  # the cloud cannot open the dictionary, and stores all as it came
        assert len(stored(cloud)) == len(stored(device))
        with connect(cloud) as outsider:
            assert outsider.recall("violin", mode="keyword") == []


# -- keys ----------------------------------------------------------------------------------------


def test_key_files_are_private_and_the_recovery_code_is_shown_once(
    client: MemoryClient, key_store: Path
) -> None:
    client.remember("a secret", privacy=2)
    assert stat.S_IMODE(key_store.stat().st_mode) == 0o700
    assert stat.S_IMODE((key_store / "tenants").stat().st_mode) == 0o700
    for name in ("device.key", "device.json", "tenants/default.json"):
        assert stat.S_IMODE((key_store / name).stat().st_mode) == 0o600, name
    assert b"a secret" not in (key_store / "tenants/default.json").read_bytes()
    store = KeyStore(key_store)
    code = store.take_recovery_code("default")
    assert len(code.replace("-", "")) == 64
    with pytest.raises(InvalidValueError, match="only once"):
        store.take_recovery_code("default")


@settings(max_examples=60, deadline=None)
@given(position=st.integers(0, 63), letter=st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"))
def test_any_one_character_typo_in_a_recovery_code_is_caught(position: int, letter: str) -> None:
    code = recovery_code("ada", KEY.key).replace("-", "")
    assert parse_recovery_code("ada", code) == KEY.key
    assume(code[position] != letter)
    with pytest.raises(InvalidValueError, match="does not check out"):
        parse_recovery_code("ada", code[:position] + letter + code[position + 1 :])


def test_recovery_on_a_new_machine_reads_the_old_memories(
    client: MemoryClient, key_store: Path, server: RunningServer, tmp_path: Path
) -> None:
    ids = client.remember(["the vault code is 0451", "my first pet was Biscuit"], privacy=3)
    code = KeyStore(key_store).take_recovery_code("default")
    fresh = KeyStore(tmp_path / "new-laptop")
    with (
        connect(server, keys=fresh) as lost,
        pytest.raises(KeyMissingError, match="aimem keys import"),
    ):
        lost.get(ids)
    typo = code[:-1] + ("A" if code[-1] != "A" else "B")
    with pytest.raises(InvalidValueError, match="does not check out"):
        fresh.recover("default", typo)
    with pytest.raises(InvalidValueError, match="another tenant"):
        fresh.recover("someone-else", code)
    fresh.recover("default", code.lower().replace("-", " "))
    with connect(server, keys=fresh) as found:
        assert [m.text for m in found.get(ids)] == [
            "the vault code is 0451",
            "my first pet was Biscuit",
        ]


def test_a_tampered_or_foreign_key_file_is_refused_with_the_fix(
    key_store: Path, tmp_path: Path
) -> None:
    KeyStore(key_store).create("ada")
    path = key_store / "tenants" / "ada.json"
    body = json.loads(path.read_text())
    entry = next(iter(body["keys"].values()))
    entry["wrapped"] = entry["wrapped"][:-4] + (
        "AAAA" if entry["wrapped"][-4:] != "AAAA" else "BBBB"
    )
    path.write_text(json.dumps(body))
    with pytest.raises(TamperedError, match="aimem keys import"):
        KeyStore(key_store).key("ada")
    other = tmp_path / "other"  # a key file copied from another device: another device key
    KeyStore(other).create("bob")
    (key_store / "tenants" / "bob.json").write_bytes((other / "tenants" / "bob.json").read_bytes())
    with pytest.raises(TamperedError, match="another device"):
        KeyStore(key_store).key("bob")


def test_a_second_device_joins_by_key_transfer_and_reads_after_sync(
    start: Callable[..., Any], tmp_path: Path
) -> None:
    laptop, cloud = start("laptop"), start("cloud", role="cloud")
    phone_keys = KeyStore(tmp_path / "phone-keys")
    phone = start("phone", keys_dir=phone_keys.path)
    vectors = unit_vectors(2, dim=16, seed=9)
    with connect(laptop) as mem:
        ids = mem.remember(
            ["I proposed at the lighthouse", "the ring cost 900"],
            tier="long_term",
            privacy=3,
            embeddings=vectors,
            metadata=[{"topic": "proposal"}, {"topic": "money"}],
        )
        blob, code = mem.sealer.keys.export_key("default")
    sync(laptop, cloud)
    sync(phone, cloud)  # the phone stores what it cannot open yet, and indexes nothing
    with connect(phone, keys=phone_keys) as mem:
        assert mem.recall("lighthouse", mode="keyword") == []
        assert mem.stats()["keyword_backlog"] == 2
        with pytest.raises(KeyMissingError, match="aimem keys import"):
            mem.scan("long_term")
        with pytest.raises(TamperedError, match="does not open"):
            phone_keys.import_key(blob, new_transfer_code())
        with pytest.raises(InvalidValueError, match="typo"):
            phone_keys.import_key(blob, code[:-1] + ("A" if code[-1] != "A" else "B"))
        phone_keys.import_key(blob, code)
        hits = _eventually(lambda: mem.recall("lighthouse", mode="keyword"))
        assert [(h.id, h.text) for h in hits] == [(ids[0], "I proposed at the lighthouse")]

        def both_vectors() -> list[str]:
            # The background opens and indexes the rows one after another: wait for both.
            found = [h.id for h in mem.recall(embedding=vectors[1], k=2, mode="vector")]
            return found if len(found) == 2 else []

        assert _eventually(both_vectors)[0] == ids[1]
        # Opened in the background, its fields are filterable like those of a put.
        assert mem.scan(where={"topic": "money"}).column("id").to_pylist() == [ids[1]]
        assert mem.scan("long_term").column("text").to_pylist() == [
            "I proposed at the lighthouse",
            "the ring cost 900",
        ]


def _eventually(read: Callable[[], list], seconds: float = 30.0) -> list:
    """``read()`` once it returns something (the background indexes a row once its key came)."""
    deadline = time.monotonic() + seconds
    while not (found := read()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def test_a_cloud_never_holds_keys(tmp_path: Path) -> None:
    with pytest.raises(InvalidValueError, match="never holds tenant keys"):
        ServerSettings(data_dir=tmp_path / "cloud", role="cloud", keys_dir=tmp_path / "keys")
    assert ServerSettings(data_dir=tmp_path / "cloud", role="cloud").keys_dir is None
    assert ServerSettings(data_dir=tmp_path / "dev").keys_dir == tmp_path / "keys"
    result = CliRunner().invoke(
        main,
        [
            "serve",
            "--data",
            str(tmp_path / "c"),
            "--role",
            "cloud",
            "--keys",
            str(tmp_path / "keys"),
            "--port",
            "0",
        ],
    )
    assert result.exit_code == 1 and "never holds tenant keys" in result.output


# -- the CLI --------------------------------------------------------------------------------------


@pytest.fixture
def aimem_keys(tmp_path: Path) -> Callable[..., Any]:
    """Run ``aimem keys ...``; registers the command when the installed entry points lack it."""
    if main.get_command(click.Context(main), "keys") is None:
        main.add_command(keys_command, "keys")

    def run(*args: str, code: int = 0, input: str | None = None) -> Any:
        result = CliRunner().invoke(main, ["keys", *args], input=input)
        assert result.exit_code == code, result.output
        return result

    return run


def test_keys_cli_init_export_import_recover_list(aimem_keys: Any, tmp_path: Path) -> None:
    made = json.loads(aimem_keys("init", "--tenant", "ada", "--encrypt-at", "1", "--json").stdout)
    assert made["encrypt_at"] == 1 and len(made["recovery_code"].replace("-", "")) == 64
    assert "only once" in aimem_keys("recovery-code", "--tenant", "ada", code=1).output
    assert "already has a key" in aimem_keys("init", "--tenant", "ada", code=1).output
    out = tmp_path / "ada.key"
    sent = json.loads(aimem_keys("export", "--tenant", "ada", "--out", str(out), "--json").stdout)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert sent["transfer_code"] not in out.read_text()
    second = str(tmp_path / "second")
    wrong = aimem_keys(
        "import", str(out), "--keys", second, input=new_transfer_code() + "\n", code=1
    )
    assert "does not open" in wrong.output
    got = json.loads(
        aimem_keys(
            "import", str(out), "--keys", second, "--json", input=sent["transfer_code"] + "\n"
        ).stdout
    )
    assert (got["tenant"], got["key_id"], got["encrypt_at"]) == ("ada", made["key_id"], 1)
    third = str(tmp_path / "third")
    back = aimem_keys(
        "recover",
        "--tenant",
        "ada",
        "--keys",
        third,
        "--encrypt-at",
        "1",
        input=made["recovery_code"] + "\n",
    )
    assert made["key_id"] in back.stdout
    [listed] = json.loads(aimem_keys("list", "--keys", third, "--json").stdout)
    assert (listed["tenant"], listed["key_id"]) == ("ada", made["key_id"])
    assert "Example" in aimem_keys("--help").stdout
    for command in ("init", "recovery-code", "recover", "export", "import", "list"):
        assert "Example" in aimem_keys(command, "--help").stdout, command


def test_an_automatic_key_tells_how_to_print_its_recovery_code(
    client: MemoryClient, aimem_keys: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client.remember("made a key on the way", privacy=2)
    assert "aimem keys recovery-code --tenant default" in caplog.text
    shown = aimem_keys("recovery-code", "--tenant", "default").stdout
    assert "Recovery code" in shown and "shown this once" in shown
    assert "only once" in aimem_keys("recovery-code", "--tenant", "default", code=1).output
