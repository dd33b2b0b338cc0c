"""The sync protocol v1 (``sync/PROTOCOL.md``): golden vectors, reconciliation properties,
decoders that refuse cleanly, and a server that refuses bad sync input over a real ``do_exchange``.

The vectors live in ``tests/vectors/sync/`` and are rewritten only by hand
(``regenerate.py --write``); this module reads their inputs and checks the
code against every byte.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from support.wire import batch_of, options, record_columns, scan_all

from aios_memory.client import MemoryClient
from aios_memory.schemas import (
    RECORD_SCHEMA,
    AiosMemoryError,
    InvalidRequestError,
    ScanRequest,
    SyncFinish,
    SyncOpen,
    SyncProtocolError,
    TierPolicyError,
    decode_error,
)
from aios_memory.sync.protocol.frames import (
    FRAME_CONTROL,
    FRAME_MESSAGE,
    MAX_BATCHES_PER_MESSAGE,
    decode_frame,
    encode_frame,
    read_frame,
)
from aios_memory.sync.protocol.reconcile import (
    FINGERPRINT,
    IDLIST,
    INFINITY,
    PROTOCOL_VERSION,
    SKIP,
    Bound,
    ItemSet,
    Message,
    Range,
    Reconciler,
    _Reader,
    _varint,
    item_id,
)

VECTORS = Path(__file__).parent / "vectors" / "sync"
MESSAGES = json.loads((VECTORS / "messages.json").read_text())["vectors"]
REFUSALS = json.loads((VECTORS / "refusals.json").read_text())["vectors"]
MODES = {"skip": SKIP, "fingerprint": FINGERPRINT, "idlist": IDLIST}


# -- reading the vectors (independent of regenerate.py) ---------------------------------------


def _ref_varint(value: int) -> bytes:
    """negentropy's varint, written out again: base 128, MSB first, high bit on all but last."""
    out = [value & 0x7F]
    while value := value >> 7:
        out.insert(0, 0x80 | (value & 0x7F))
    return bytes(out)


def _item_set(sets: list[dict]) -> ItemSet:
    items = [
        (s["ts_base"] + k // s["per_ts"], hashlib.sha256(f"{s['name']}/{k}".encode()).digest()[:16])
        for s in sets
        for k in range(s["start"], s["stop"])
    ]
    return _items(items)


def _items(items: list[tuple[int, bytes]]) -> ItemSet:
    ids = np.frombuffer(b"".join(i for _, i in items), np.uint8).reshape(-1, 16)
    return ItemSet(np.array([t for t, _ in items], np.uint64), ids)


def _bound(body: dict) -> Bound:
    ts = INFINITY if body["ts"] == "infinity" else body["ts"]
    return Bound(ts, bytes.fromhex(body["prefix"]))


def _message(body: dict) -> Message:
    ranges = tuple(
        Range(
            _bound(r["upper"]),
            MODES[r["mode"]],
            bytes.fromhex(r.get("fingerprint", "")),
            tuple(bytes.fromhex(i) for i in r.get("ids", [])),
        )
        for r in body["ranges"]
    )
    return Message(
        ranges,
        tuple(bytes.fromhex(i) for i in body["need"]),
        tuple(bytes.fromhex(i) for i in body["have"]),
        body["batches"],
    )


def _answer(side: Reconciler, message: Message) -> Message:
    """A dry-run answer: ranges and needs, and the ids it would send as ``have``."""
    outcome = side.respond(message)
    offered = {side.offered(i) for i in message.need} - {None}
    have = tuple(side.items.id_at(i) for i in sorted(set(outcome.have) | offered))
    return Message(tuple(outcome.ranges), tuple(outcome.need), have)


def _vectors(kind: str) -> list[Any]:
    return [pytest.param(v, id=v["name"]) for v in MESSAGES if v["kind"] == kind]


def _same_bytes(encoded: bytes, vector: dict, key: str = "hex") -> None:
    assert encoded.hex() == vector[key], f"{vector['name']}: the encoding changed"


# -- (a) golden vectors ------------------------------------------------------------------------


def test_vector_files_cover_the_protocol():
    kinds = {v["kind"] for v in MESSAGES}
    assert kinds == {
        "varint",
        "item_id",
        "fingerprint",
        "bound",
        "message",
        "initiate",
        "respond",
        "transcript",
        "frame",
    }
    values = {v["value"] for v in MESSAGES if v["kind"] == "varint"}
    assert {0, 127, 128, 2**64 - 1} <= values
    modes = {r["mode"] for v in MESSAGES if v["kind"] == "message" for r in v["message"]["ranges"]}
    assert modes == set(MODES)
    assert any(v["bound"]["prefix"] for v in MESSAGES if v["kind"] == "bound")
    names = {v["name"] for v in REFUSALS}
    assert {
        "wrong version",
        "range count over the data",
        "varint of 11 bytes",
        "trailing byte",
        "prefix of 17 bytes",
        "unknown mode",
        "equal bounds",
        "truncated",
    } <= names


def test_regenerate_without_write_changes_nothing_and_finds_the_files_current():
    spec = importlib.util.spec_from_file_location("regenerate", VECTORS / "regenerate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    before = {p.name: p.read_bytes() for p in VECTORS.glob("*.json")}
    assert module.main([]) == 0
    assert {p.name: p.read_bytes() for p in VECTORS.glob("*.json")} == before


@pytest.mark.parametrize("vector", _vectors("varint"))
def test_varint_vector(vector):
    value, data = vector["value"], bytes.fromhex(vector["hex"])
    _same_bytes(_varint(value), vector)
    assert _ref_varint(value) == data
    reader = _Reader(data)
    assert reader.varint() == value and reader.done()
    wrapped = bytes([PROTOCOL_VERSION]) + data + b"\0\0\0"  # as a message's batch count
    assert Message(batches=value).encode() == wrapped
    assert Message.decode(wrapped).batches == value


@pytest.mark.parametrize("vector", _vectors("item_id"))
def test_item_id_vector(vector):
    _same_bytes(item_id(vector["memory_id"], vector["origin"], vector["hlc"]), vector)
    text = f"{vector['memory_id']}\n{vector['origin']}\n{vector['hlc']}".encode()
    assert hashlib.sha256(text).digest()[:16].hex() == vector["hex"]


@pytest.mark.parametrize("vector", _vectors("fingerprint"))
def test_fingerprint_vector(vector):
    ids = [bytes.fromhex(i) for i in vector["ids"]]
    total = sum(int.from_bytes(i, "little") for i in ids) % 2**128
    assert total.to_bytes(16, "little").hex() == vector["sum"]
    expected = hashlib.sha256(total.to_bytes(16, "little") + _ref_varint(len(ids))).digest()[:16]
    assert expected.hex() == vector["hex"]
    items = _items([(0, i) for i in ids])
    _same_bytes(items.fingerprint(0, len(ids)), vector)


@pytest.mark.parametrize("vector", _vectors("bound"))
def test_bound_vector(vector):
    items = _items([(ts, bytes.fromhex(i)) for ts, i in vector["items"]])
    bound = items.bound_between(1)
    assert bound == _bound(vector["bound"])
    assert items.item_at(0) < bound.key() <= items.item_at(1)
    message = _message(vector["message"])
    assert message.ranges[0].upper == bound
    _same_bytes(message.encode(), vector)
    assert Message.decode(bytes.fromhex(vector["hex"])) == message


@pytest.mark.parametrize("vector", _vectors("message"))
def test_message_vector(vector):
    message = _message(vector["message"])
    _same_bytes(message.encode(), vector)
    assert Message.decode(bytes.fromhex(vector["hex"])) == message


@pytest.mark.parametrize("vector", _vectors("initiate"))
def test_initiate_vector(vector):
    items = _item_set(vector["sets"])
    first = Reconciler(items).initiate()
    _same_bytes(first.encode(), vector)
    assert Message.decode(bytes.fromhex(vector["hex"])) == first
    expected_mode = IDLIST if len(items) <= 64 else FINGERPRINT
    assert {r.mode for r in first.ranges} == {expected_mode}
    assert first.ranges[-1].upper == Bound(INFINITY)
    if expected_mode == FINGERPRINT:
        assert len(first.ranges) == 16


@pytest.mark.parametrize("vector", _vectors("respond"))
def test_respond_vector(vector):
    incoming = Reconciler(_item_set(vector["initiator_sets"])).initiate()
    _same_bytes(incoming.encode(), vector, "incoming")
    responder = Reconciler(_item_set(vector["responder_sets"]))
    answer = _answer(responder, Message.decode(bytes.fromhex(vector["incoming"])))
    _same_bytes(answer.encode(), vector)
    assert [i.hex() for i in answer.have] == vector["have"]
    assert [i.hex() for i in answer.need] == vector["need"]
    assert Message.decode(bytes.fromhex(vector["hex"])) == answer


@pytest.mark.parametrize("vector", _vectors("transcript"))
def test_transcript_vector(vector):
    mine, theirs = _item_set(vector["initiator_sets"]), _item_set(vector["responder_sets"])
    sides = [Reconciler(theirs), Reconciler(mine)]
    message, sent = sides[1].initiate(), [set(), set()]
    _same_bytes(message.encode(), {"name": vector["name"], "hex": vector["messages"][0]})
    for turn, expected in enumerate(vector["messages"][1:]):
        message = _answer(sides[turn % 2], Message.decode(message.encode()))
        assert message.encode().hex() == expected, f"message {turn + 1} changed"
        sent[turn % 2].update(message.have)
    assert message.idle
    assert sent == [_ids(theirs) - _ids(mine), _ids(mine) - _ids(theirs)]


@pytest.mark.parametrize("vector", _vectors("frame"))
def test_frame_vector(vector):
    body = vector["frame"]
    if body["kind"] == "message":
        value: Any = _message(body["message"])
        assert vector["hex"].startswith(f"{FRAME_MESSAGE:02x}")
    else:
        control = {k: v for k, v in body["control"].items() if k not in ("v", "type")}
        value = SyncFinish(**control)
        assert vector["hex"].startswith(f"{FRAME_CONTROL:02x}")
    _same_bytes(encode_frame(value), vector)
    assert decode_frame(bytes.fromhex(vector["hex"])) == value


@pytest.mark.parametrize("vector", [pytest.param(v, id=v["name"]) for v in REFUSALS])
def test_refusal_vector(vector):
    decode = Message.decode if vector["layer"] == "message" else decode_frame
    with pytest.raises(InvalidRequestError) as excinfo:
        decode(bytes.fromhex(vector["hex"]))
    assert excinfo.value.code == vector["code"]
    assert vector["says"] in excinfo.value.message


# -- (b) reconciliation properties -------------------------------------------------------------


def _random_sets(
    seed: int, shared: int, only_a: int, only_b: int, ts_span: int
) -> tuple[ItemSet, ItemSet]:
    """Two sets over one universe: ``shared`` items on both sides, the rest on one."""
    rng = np.random.default_rng(seed)
    n = shared + only_a + only_b
    ids = rng.integers(0, 256, (n, 16), dtype=np.uint8)
    ids[:, 0] = np.arange(n) % 256  # distinct ids even if the generator repeated itself
    ids[:, 1] = np.arange(n) // 256
    rng.shuffle(ids)
    ts = rng.integers(0, ts_span, n, dtype=np.uint64)
    a = np.r_[0:shared, shared : shared + only_a]
    b = np.r_[0:shared, shared + only_a : n]
    return ItemSet(ts[a], ids[a]), ItemSet(ts[b], ids[b])


def _relay(a: ItemSet, b: ItemSet, **params: int) -> tuple[list[list[bytes]], list[set], int]:
    """Pass dry-run messages A -> B -> A ... until one is idle, each through encode/decode.

    Returns each side's ``have`` ids in sending order, each side's needs, and the message count.
    """
    sides = [Reconciler(a, **params), Reconciler(b, **params)]
    haves: list[list[bytes]] = [[], []]
    needs: list[set] = [set(), set()]
    message, count = sides[0].initiate(), 1
    while not message.idle:
        assert count < 40, "the round does not end"
        side = count % 2
        message = _answer(sides[side], Message.decode(message.encode()))
        haves[side] += message.have
        needs[side].update(message.need)
        count += 1
    return haves, needs, count


def _ids(items: ItemSet) -> set[bytes]:
    return {items.id_at(i) for i in range(len(items))}


def _check_difference(a: ItemSet, b: ItemSet, **params: int) -> int:
    haves, needs, count = _relay(a, b, **params)
    only_a, only_b = _ids(a) - _ids(b), _ids(b) - _ids(a)
    assert set(haves[0]) == only_a and set(haves[1]) == only_b  # exact, so no false positive
    assert len(haves[0]) == len(only_a) and len(haves[1]) == len(only_b)  # each id once
    assert needs[0] <= only_b and needs[1] <= only_a
    return count


_SIZES = dict(
    seed=st.integers(0, 2**32 - 1),
    shared=st.integers(0, 2000),
    only_a=st.integers(0, 500),
    only_b=st.integers(0, 500),
    ts_span=st.sampled_from([1, 2, 5, 50, 10**6, 2**63]),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**_SIZES)
@example(seed=1, shared=0, only_a=0, only_b=0, ts_span=1)
@example(seed=2, shared=2000, only_a=0, only_b=0, ts_span=5)
@example(seed=3, shared=0, only_a=500, only_b=500, ts_span=1)
@example(seed=4, shared=2000, only_a=1, only_b=0, ts_span=2**63)
@example(seed=5, shared=2000, only_a=500, only_b=500, ts_span=2)
def test_a_round_finds_exactly_the_symmetric_difference(seed, shared, only_a, only_b, ts_span):
    a, b = _random_sets(seed, shared, only_a, only_b, ts_span)
    count = _check_difference(a, b)
    if not only_a and not only_b:
        assert count == 2  # equal sets: the first answer is already idle


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    shared=st.integers(0, 150),
    only_a=st.integers(0, 40),
    only_b=st.integers(0, 40),
    ts_span=st.sampled_from([1, 3, 1000]),
    branching=st.integers(2, 4),
    extra=st.integers(0, 3),
)
def test_small_branching_and_id_lists_still_converge(
    seed, shared, only_a, only_b, ts_span, branching, extra
):
    # Deep recursion on small sets; branching must not exceed idlist_max + 1 (see PROTOCOL.md).
    a, b = _random_sets(seed, shared, only_a, only_b, ts_span)
    _check_difference(a, b, branching=branching, idlist_max=branching - 1 + extra)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 300),
    ts_span=st.sampled_from([1, 4, 10**9]),
    cut=st.tuples(st.floats(0, 1), st.floats(0, 1)),
)
def test_any_range_fingerprint_matches_the_formula(seed, n, ts_span, cut):
    items, _ = _random_sets(seed, n, 0, 0, ts_span)
    lo, hi = sorted(int(c * n) for c in cut)
    total = sum(int.from_bytes(items.id_at(i), "little") for i in range(lo, hi)) % 2**128
    expected = hashlib.sha256(total.to_bytes(16, "little") + _ref_varint(hi - lo)).digest()[:16]
    assert items.fingerprint(lo, hi) == expected


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 200),
    ts_span=st.sampled_from([1, 3, 100]),
    probe=st.integers(0, 10**6),
    prefix=st.binary(max_size=16),
)
def test_lower_index_and_bound_between_agree_with_the_sort_order(seed, n, ts_span, probe, prefix):
    items, _ = _random_sets(seed, n, 0, 0, ts_span)
    keys = [items.item_at(i) for i in range(n)]
    assert keys == sorted(keys)
    bound = Bound(probe % (ts_span + 1), prefix)
    assert items.lower_index(bound) == sum(k < bound.key() for k in keys)
    i = probe % n
    if i:
        between = items.bound_between(i)
        assert keys[i - 1] < between.key() <= keys[i] and items.lower_index(between) == i


_IDS = st.binary(min_size=16, max_size=16)
_KEYS = st.tuples(
    st.one_of(st.integers(0, INFINITY - 1), st.just(INFINITY)), st.binary(max_size=16)
)


@st.composite
def _messages(draw: Any) -> Message:
    keys = sorted(
        {Bound(ts, p).key(): Bound(ts, p) for ts, p in draw(st.lists(_KEYS, max_size=12))}.items()
    )
    ranges = []
    for _, bound in keys:
        mode = draw(st.sampled_from([SKIP, FINGERPRINT, IDLIST]))
        ranges.append(
            Range(
                bound,
                mode,
                draw(_IDS) if mode == FINGERPRINT else b"",
                tuple(draw(st.lists(_IDS, max_size=4))) if mode == IDLIST else (),
            )
        )
    return Message(
        tuple(ranges),
        tuple(draw(st.lists(_IDS, max_size=4))),
        tuple(draw(st.lists(_IDS, max_size=4))),
        draw(st.integers(0, 2**64 - 1)),
    )


@settings(max_examples=200, deadline=None)
@given(_messages())
def test_message_round_trips(message):
    data = message.encode()
    assert Message.decode(data) == message
    assert Message.decode(data).encode() == data
    assert decode_frame(encode_frame(message)) == message


# -- (c) decoders refuse, cleanly --------------------------------------------------------------


def _decodes_or_refuses(data: bytes) -> None:
    try:
        message = Message.decode(data)
    except SyncProtocolError:
        return
    assert Message.decode(message.encode()) == message


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.binary(max_size=200).map(lambda b: bytes([PROTOCOL_VERSION]) + b),
    )
)
def test_random_bytes_decode_or_raise_only_sync_protocol_error(data):
    _decodes_or_refuses(data)


_VALID = [
    bytes.fromhex(v["hex"])
    for v in MESSAGES
    if v["kind"] in ("bound", "message", "initiate", "respond")
]


def test_every_truncation_of_a_valid_message_is_refused():
    for data in _VALID:
        for end in range(len(data)):
            with pytest.raises(SyncProtocolError):
                Message.decode(data[:end])


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(_VALID),
    st.integers(0, 10**6),
    st.integers(0, 255),
    st.sampled_from(["replace", "insert", "delete", "xor"]),
)
def test_mutated_messages_decode_or_raise_only_sync_protocol_error(data, where, value, how):
    at = where % (len(data) + 1)
    if how == "replace" and at < len(data):
        data = data[:at] + bytes([value]) + data[at + 1 :]
    elif how == "insert":
        data = data[:at] + bytes([value]) + data[at:]
    elif how == "delete":
        data = data[:at] + data[at + 1 :]
    elif at < len(data):
        data = data[:at] + bytes([data[at] ^ 0x80]) + data[at + 1 :]
    _decodes_or_refuses(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=100), st.sampled_from([0x00, FRAME_MESSAGE, FRAME_CONTROL, 0x03, 0xFF]))
def test_random_frames_raise_only_invalid_request_errors(body, kind):
    try:
        decode_frame(bytes([kind]) + body)
    except SyncProtocolError:
        pass
    except InvalidRequestError:  # only a control frame's JSON may fail this way
        assert kind == FRAME_CONTROL


# Deeply nested JSON raises RecursionError in json.loads: it must be a plain INVALID_REQUEST.
def test_deeply_nested_control_json_is_an_invalid_request():
    with pytest.raises(InvalidRequestError):
        decode_frame(bytes([FRAME_CONTROL]) + b"[" * 100_000)


class _Chunk:
    def __init__(self, data: pa.RecordBatch | None = None, metadata: bytes | None = None) -> None:
        self.data = data
        self.app_metadata = None if metadata is None else pa.py_buffer(metadata)


class _FakeReader:
    def __init__(self, *chunks: _Chunk) -> None:
        self._chunks = iter(chunks)

    def read_chunk(self) -> _Chunk:
        return next(self._chunks)  # StopIteration at the end, as Flight's reader


def _record_batch(texts: list[str], **columns: Any) -> pa.RecordBatch:
    values = record_columns(texts, tier=columns.pop("tier", "long_term"))
    values.update({k: [v] * len(texts) for k, v in columns.items()})
    return batch_of(values)


def test_read_frame_streams_exactly_the_announced_batches():
    batch = _record_batch(["one"])
    frame = encode_frame(Message(batches=2))
    reader = _FakeReader(
        _Chunk(metadata=frame),
        _Chunk(batch),
        _Chunk(batch),
        _Chunk(metadata=encode_frame(Message())),
    )
    incoming = read_frame(reader)
    assert incoming.value == Message(batches=2) and incoming.bytes == len(frame)
    assert list(incoming.batches) == [batch, batch]
    assert incoming.bytes == len(frame) + 2 * pa.ipc.get_record_batch_size(batch)
    assert read_frame(reader).value == Message()
    assert read_frame(reader) is None


@pytest.mark.parametrize(
    "chunks, says",
    [
        ([_Chunk(_record_batch(["x"]))], "must start with a frame"),
        (
            [_Chunk(metadata=encode_frame(Message(batches=2))), _Chunk(_record_batch(["x"]))],
            "ended before the batches",
        ),
        (
            [
                _Chunk(metadata=encode_frame(Message(batches=1))),
                _Chunk(metadata=encode_frame(Message())),
            ],
            "ended before the batches",
        ),
        (
            [
                _Chunk(metadata=encode_frame(Message(batches=1))),
                _Chunk(_record_batch(["x"]), metadata=encode_frame(Message())),
            ],
            "ended before the batches",
        ),
        (
            [_Chunk(metadata=encode_frame(Message(batches=MAX_BATCHES_PER_MESSAGE + 1)))],
            "announces 1048577 batches",
        ),
        ([_Chunk(metadata=b"\x09")], "unknown sync frame kind 0x09"),
    ],
)
def test_read_frame_refuses(chunks, says):
    with pytest.raises(SyncProtocolError, match=says):
        incoming = read_frame(_FakeReader(*chunks))
        incoming.drain()


# -- (d) a real server refuses bad sync input and keeps serving ---------------------------------


def _exchange(server: Any, command: bytes | None, frames: list[Any]) -> list[Any]:
    """One raw do_exchange: send ``frames`` (bytes: a frame, else a batch), read to the end."""
    client = flight.FlightClient(server.uri)
    writer = None
    try:
        descriptor = (
            flight.FlightDescriptor.for_path("sync")
            if command is None
            else flight.FlightDescriptor.for_command(command)
        )
        writer, reader = client.do_exchange(descriptor, options(server.token))
        writer.begin(RECORD_SCHEMA)
        for frame in frames:
            if isinstance(frame, bytes):
                writer.write_metadata(pa.py_buffer(frame))
            else:
                writer.write_batch(frame)
        writer.done_writing()
        received = []
        while (incoming := read_frame(reader)) is not None:
            incoming.drain()
            received.append(incoming.value)
        return received
    finally:
        if writer is not None:
            with contextlib.suppress(flight.FlightError):
                writer.close()  # the server's error, again; closed here, not in a destructor
        client.close()


def _refusal(server: Any, command: bytes | None, frames: list[Any] = ()) -> AiosMemoryError:
    """The error a bad exchange gets, rebuilt from the Flight error's ``extra_info``."""
    with pytest.raises(flight.FlightError) as excinfo:
        _exchange(server, command, list(frames))
    error = decode_error(excinfo.value.extra_info)
    assert error is not None, f"no machine-readable code in {excinfo.value!r}"
    return error


def _scan(server: Any, tenant: str = "default") -> pa.Table:
    client = flight.FlightClient(server.uri)
    try:
        ticket = flight.Ticket(ScanRequest(tenant=tenant, include_deleted=True).to_bytes())
        return client.do_get(ticket, options(server.token)).read_all()
    finally:
        client.close()


@pytest.fixture
def seeded(server: Any) -> Iterator[tuple[Any, pa.Table]]:
    """A default (device) server holding a few records, and its records before the test."""
    with MemoryClient(server.uri, server.token, timeout=30) as mem:
        mem.remember(["kept one", "kept two"], tier="long_term")
        mem.remember("kept local", tier="core")
    yield server, scan_all(server.uri, server.token)


def _still_serving(server: Any, before: pa.Table) -> None:
    assert scan_all(server.uri, server.token).equals(before), "a refused exchange changed the store"
    with MemoryClient(server.uri, server.token, timeout=30) as mem:
        [memory_id] = mem.remember("written after the refusal", tier="long_term")
        assert [m.text for m in mem.get(memory_id)] == ["written after the refusal"]


_RESPONDER = SyncOpen().to_bytes()
_DRY = SyncOpen(dry_run=True).to_bytes()
_INITIATOR = SyncOpen(role="initiator").to_bytes()
_VERSIONED = _record_batch(["a version from a peer"], hlc=77, origin="rpeer")
_UNVERSIONED = _record_batch(["a new memory, not a version"])


def _msg(body_hex: str) -> bytes:
    return bytes([FRAME_MESSAGE]) + bytes.fromhex(body_hex)


@pytest.mark.parametrize(
    "command, frames, code, says",
    [
        (b"not json", [], "INVALID_REQUEST", "not JSON"),
        (b'{"v":1,"type":"sync_open","rolle":"responder"}', [], "INVALID_REQUEST", "unknown keys"),
        (b'{"v":1,"type":"sync_open","role":"hub"}', [], "INVALID_REQUEST", "role must be"),
        (b'{"v":1,"type":"sync_open","horizon":-1}', [], "INVALID_REQUEST", "horizon must be"),
        (b'{"v":1,"type":"scan"}', [], "INVALID_REQUEST", "expected a 'sync_open'"),
        (None, [], "INVALID_REQUEST", "opens with a SyncOpen command"),
        (b'{"v":9,"type":"sync_open"}', [], "UNSUPPORTED_VERSION", "wire version 9"),
        (SyncOpen(tiers=["attic"]).to_bytes(), [], "UNKNOWN_TIER", "unknown tier 'attic'"),
        (SyncOpen(tiers=["core"]).to_bytes(), [], "TIER_NOT_ALLOWED", "tier 'core' is not carried"),
        (
            SyncOpen(tiers=["long_term", "working"], role="initiator").to_bytes(),
            [],
            "TIER_NOT_ALLOWED",
            "tier 'working' is not carried",
        ),
        (
            _RESPONDER,
            [b"\x07" + Message().encode()],
            "SYNC_PROTOCOL",
            "unknown sync frame kind 0x07",
        ),
        (
            _RESPONDER,
            [_msg("41000100000201" + "ab" * 8)],
            "SYNC_PROTOCOL",
            "ended in the middle of a field",
        ),
        (_RESPONDER, [_msg("620000000000")], "SYNC_PROTOCOL", "version 0x62 is not supported"),
        (_RESPONDER, [_msg("4100000000" + "00")], "SYNC_PROTOCOL", "trailing bytes"),
        (
            _RESPONDER,
            [_msg("410002" + "0b0000" + "010000" + "0000")],
            "SYNC_PROTOCOL",
            "not in ascending order",
        ),
        (
            _RESPONDER,
            [encode_frame(Message(batches=2))],
            "SYNC_PROTOCOL",
            "ended before the batches",
        ),
        (
            _RESPONDER,
            [encode_frame(Message(batches=1)), encode_frame(Message())],
            "SYNC_PROTOCOL",
            "ended before the batches",
        ),
        (_RESPONDER, [_VERSIONED], "SYNC_PROTOCOL", "must start with a frame"),
        (_RESPONDER, [encode_frame(SyncOpen())], "SYNC_PROTOCOL", "unknown sync control message"),
        (
            _RESPONDER,
            [encode_frame(Message(batches=1)), _UNVERSIONED],
            "SYNC_PROTOCOL",
            "no version",
        ),
        (
            _DRY,
            [encode_frame(Message(batches=1)), _VERSIONED],
            "SYNC_PROTOCOL",
            "a dry run carries no records",
        ),
        (_INITIATOR, [b"\x07"], "SYNC_PROTOCOL", "unknown sync frame kind 0x07"),
        (
            _INITIATOR,
            [encode_frame(Message(batches=3))],
            "SYNC_PROTOCOL",
            "ended before the batches",
        ),
    ],
    ids=[
        "not json",
        "unknown key",
        "unknown role",
        "negative horizon",
        "not a sync_open",
        "path descriptor",
        "wire version 9",
        "unknown tier",
        "core tier",
        "working tier",
        "unknown frame kind",
        "truncated message",
        "wrong protocol version",
        "trailing bytes",
        "equal bounds",
        "batches that never come",
        "a frame where a batch is due",
        "a batch before any frame",
        "unknown control message",
        "a record without a version",
        "dry run carrying batches",
        "initiator: unknown frame kind",
        "initiator: batches that never come",
    ],
)
def test_bad_sync_input_is_refused_with_its_code(seeded, command, frames, code, says):
    server, before = seeded
    error = _refusal(server, command, frames)
    assert (error.code, says in error.message) == (code, True), error.message
    _still_serving(server, before)


def test_a_message_cut_short_keeps_the_batches_that_came(seeded):
    # Batches stream and each is committed as it arrives (commit before answer): a cut
    # after the first of two announced batches keeps that version, and nothing else.
    server, before = seeded
    error = _refusal(server, _RESPONDER, [encode_frame(Message(batches=2)), _VERSIONED])
    assert error.code == "SYNC_PROTOCOL" and "ended before the batches" in error.message
    after = scan_all(server.uri, server.token)
    assert after.num_rows == before.num_rows + 1
    kept = after.filter(pa.compute.equal(after.column("origin"), "rpeer")).to_pylist()
    assert [(r["id"], r["hlc"]) for r in kept] == [(_VERSIONED.column("id")[0].as_py(), 77)]


def test_a_good_exchange_on_the_same_server_still_works(seeded):
    server, before = seeded
    assert _refusal(server, _RESPONDER, [b"\x07"]).code == "SYNC_PROTOCOL"
    received = _exchange(
        server, _DRY, [encode_frame(Message((Range(Bound(INFINITY), IDLIST, ids=()),)))]
    )
    accept, answer = received[0], received[1]
    assert accept.tiers == ["long_term", "shared"] and accept.items == 2
    assert len(answer.have) == 2 and not answer.need and not answer.batches  # a dry run: ids
    _still_serving(server, before)


# A peer must not write core/working records into a device through a long_term/shared round.
def test_a_device_refuses_synced_records_of_tiers_outside_the_round(seeded):
    server, before = seeded
    core = _record_batch(["injected into core"], tier="core", hlc=77, origin="rpeer")
    error = _refusal(server, _RESPONDER, [encode_frame(Message(batches=1)), core])
    assert error.code == "TIER_NOT_ALLOWED"
    _still_serving(server, before)


# A round opened for tenant "default" must not write records into tenant "bob".
def test_a_round_refuses_records_of_another_tenant(seeded):
    server, before = seeded
    other = _record_batch(["injected into bob"], tenant="bob", hlc=77, origin="rpeer")
    try:
        _refusal(server, _RESPONDER, [encode_frame(Message(batches=1)), other])
    finally:
        assert _scan(server, "bob").num_rows == 0
    _still_serving(server, before)


def test_deeply_nested_sync_open_is_an_invalid_request(seeded):
    server, before = seeded
    assert _refusal(server, b"[" * 100_000).code == "INVALID_REQUEST"
    _still_serving(server, before)


@pytest.fixture
def cloud(server_factory: Any, tmp_path: Path) -> Iterator[Any]:
    with server_factory(data_dir=tmp_path / "cloud", role="cloud") as running:
        yield running


def test_a_cloud_refuses_a_client_put_of_a_core_record_and_stores_nothing(cloud):
    with MemoryClient(cloud.uri, cloud.token, timeout=30) as mem:
        with pytest.raises(TierPolicyError) as excinfo:
            mem.remember(["who the user is", "and more"], tier="core")
        assert excinfo.value.code == "TIER_NOT_ALLOWED"
        with pytest.raises(TierPolicyError):
            mem.remember("scratch", tier="working")
        assert _scan(cloud).num_rows == 0
        [memory_id] = mem.remember("this one travels", tier="long_term")
        assert [m.text for m in mem.get(memory_id)] == ["this one travels"]


def test_a_cloud_refuses_synced_records_of_a_local_tier_and_stores_nothing(cloud):
    core = _record_batch(["injected into core"], tier="core", hlc=77, origin="rpeer")
    assert (
        _refusal(cloud, _RESPONDER, [encode_frame(Message(batches=1)), core]).code
        == "TIER_NOT_ALLOWED"
    )
    assert _refusal(cloud, SyncOpen(tiers=["core"]).to_bytes()).code == "TIER_NOT_ALLOWED"
    assert _scan(cloud).num_rows == 0
