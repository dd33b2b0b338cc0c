"""Bad input gets a specific error; the server keeps serving; nothing stored changes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import random

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight
import pytest
import zstandard
from conftest import unit_vectors
from support.wire import action, batch_of, put, record_columns, scan_all

from aios_memory.schemas import (
    ERROR_CLASSES,
    RECORD_SCHEMA,
    Limits,
    ScanRequest,
    SearchRequest,
    decode_error,
)


def _code_of(excinfo: pytest.ExceptionInfo) -> str:
    error = decode_error(excinfo.value.extra_info)
    assert error is not None, f"no machine-readable code in {excinfo.value!r}"
    return error.code


@pytest.fixture
def seeded(server):
    """A server holding 5 memories with 16-dim vectors, and what it held before the test."""
    put(
        server.uri,
        server.token,
        [batch_of(record_columns([f"memory number {i}" for i in range(5)], unit_vectors(5)))],
    )
    return server, scan_all(server.uri, server.token)


def _wrong_schema():
    cols = record_columns(["x"], unit_vectors(1))
    schema = RECORD_SCHEMA.append(pa.field("extra", pa.int32()))
    cols["extra"] = [1]
    return [batch_of(cols, schema)]


def _wrong_dimension():
    return [batch_of(record_columns(["x"], unit_vectors(1, dim=8)))]


def _nan_vector():
    cols = record_columns(["x"], unit_vectors(1))
    cols["embedding_scale"] = [float("nan")]
    return [batch_of(cols)]


def _invalid_utf8():
    cols = record_columns(["x"])
    cols.update(codec=["none"], payload=[b"\xff\xfe bad"], raw_size=[6])
    import hashlib

    cols["content_hash"] = [hashlib.blake2b(b"\xff\xfe bad", digest_size=16).digest()]
    return [batch_of(cols)]


def _oversized_text():
    return [batch_of(record_columns(["y" * (300 * 1024)]))]


def _unknown_tier():
    cols = record_columns(["x"])
    cols["tier"] = ["attic"]
    return [batch_of(cols)]


def _zero_vector():
    cols = record_columns(["x"], unit_vectors(1))
    cols["embedding"] = [[0] * 16]
    return [batch_of(cols)]


def _hash_mismatch():
    cols = record_columns(["x"])
    cols["content_hash"] = [b"\0" * 16]
    return [batch_of(cols)]


@pytest.mark.parametrize(
    "make, code",
    [
        (_wrong_schema, "SCHEMA_MISMATCH"),
        (_wrong_dimension, "INVALID_VECTOR"),
        (_nan_vector, "INVALID_VECTOR"),
        (_invalid_utf8, "INVALID_UTF8"),
        (_oversized_text, "TEXT_TOO_LARGE"),
        (_unknown_tier, "UNKNOWN_TIER"),
        (_hash_mismatch, "CORRUPT_DATA"),
        (_zero_vector, "INVALID_VECTOR"),
    ],
)
def test_bad_put_is_refused_with_its_code_and_changes_nothing(seeded, make, code):
    server, before = seeded
    with pytest.raises(flight.FlightError) as excinfo:
        put(server.uri, server.token, make())
    assert _code_of(excinfo) == code
    assert code in ERROR_CLASSES
    assert json.loads(action(server.uri, server.token, "health"))["status"] == "ok"
    assert scan_all(server.uri, server.token).equals(before)


def test_stream_cut_before_commit_stores_nothing(seeded):
    server, before = seeded
    batch = batch_of(record_columns(["never committed"], unit_vectors(1)))
    with pytest.raises(flight.FlightError) as excinfo:
        put(server.uri, server.token, [batch], commit=False)
    assert _code_of(excinfo) == "INCOMPLETE_WRITE"
    assert scan_all(server.uri, server.token).equals(before)
    assert json.loads(action(server.uri, server.token, "health"))["status"] == "ok"


def test_commit_with_wrong_counts_stores_nothing(seeded):
    server, before = seeded
    client = flight.FlightClient(server.uri)
    from support.wire import options

    from aios_memory.schemas import PUT_PATH, PutCommit

    writer, reader = client.do_put(
        flight.FlightDescriptor.for_path(PUT_PATH), RECORD_SCHEMA, options(server.token)
    )
    writer.write_batch(batch_of(record_columns(["a", "b"], unit_vectors(2))))
    writer.write_metadata(PutCommit(batches=1, rows=3).to_bytes())
    with pytest.raises(flight.FlightError) as excinfo:
        reader.read()
        writer.close()
    assert _code_of(excinfo) == "INCOMPLETE_WRITE"
    client.close()
    assert scan_all(server.uri, server.token).equals(before)


@pytest.mark.parametrize(
    "body, code",
    [
        (SearchRequest(embedding=[float("nan")] * 16, mode="vector").to_bytes(), "INVALID_VECTOR"),
        (SearchRequest(embedding=[0.1] * 8, mode="vector").to_bytes(), "INVALID_VECTOR"),
        (SearchRequest(query="x", tier="attic").to_bytes(), "UNKNOWN_TIER"),
        (SearchRequest(query="x", where={"a": {"$regex": "x"}}).to_bytes(), "INVALID_FILTER"),
        (SearchRequest(query="x", k=10**6).to_bytes(), "LIMIT_EXCEEDED"),
        (SearchRequest(query="x", mode="vector").to_bytes(), "EMBEDDER_FAILED"),
        (b'{"v": 99, "type": "search"}', "UNSUPPORTED_VERSION"),
        (b"not json", "INVALID_REQUEST"),
        (b'{"v": 1, "type": "search", "query": "x", "kk": 1}', "INVALID_REQUEST"),
    ],
)
def test_bad_search_is_refused_with_its_code(seeded, body, code):
    server, before = seeded
    with pytest.raises(flight.FlightError) as excinfo:
        action(server.uri, server.token, "search", body)
    assert _code_of(excinfo) == code
    assert scan_all(server.uri, server.token).equals(before)


def test_unknown_action_and_bad_ticket(seeded):
    server, _ = seeded
    with pytest.raises(flight.FlightError) as excinfo:
        action(server.uri, server.token, "drop_everything")
    assert _code_of(excinfo) == "INVALID_REQUEST"
    client = flight.FlightClient(server.uri)
    from support.wire import options

    with pytest.raises(flight.FlightError) as excinfo:
        client.do_get(
            flight.Ticket(b'{"v":1,"type":"scan","tier":"attic"}'), options(server.token)
        ).read_all()
    assert _code_of(excinfo) == "UNKNOWN_TIER"
    client.close()


@pytest.mark.parametrize("token", [None, "wrong"])
def test_missing_or_wrong_token_is_refused(server, token):
    client = flight.FlightClient(server.uri)
    headers = [] if token is None else [(b"authorization", f"Bearer {token}".encode())]
    call = flight.FlightCallOptions(headers=headers, timeout=10)
    with pytest.raises(flight.FlightUnauthenticatedError) as excinfo:
        list(client.do_action(flight.Action("health", b""), call))
    assert _code_of(excinfo) == "UNAUTHENTICATED"
    with pytest.raises(flight.FlightUnauthenticatedError):
        client.do_get(flight.Ticket(b"{}"), call).read_all()
    client.close()


def test_retry_of_the_same_put_is_idempotent(server):
    batch = batch_of(record_columns(["retry me", "and me"], unit_vectors(2)))
    first = put(server.uri, server.token, [batch])
    second = put(server.uri, server.token, [batch])
    assert first == second
    assert scan_all(server.uri, server.token).num_rows == 2


def test_mixed_dimensions_for_a_new_model_in_one_put_are_refused(server):
    columns = record_columns(["a", "b"], unit_vectors(2, dim=16), model="fresh")
    columns["embedding"][1] = columns["embedding"][1][:8]
    with pytest.raises(flight.FlightError) as excinfo:
        put(server.uri, server.token, [batch_of(columns)])
    assert _code_of(excinfo) == "INVALID_VECTOR"
    assert scan_all(server.uri, server.token).num_rows == 0


# -- garbage where the server expects its own messages ---------------------------------------


def _flight_call(server, call: str, payload: bytes) -> None:
    """Make one raw Flight call carrying ``payload`` where a message of ours belongs."""
    from support.wire import options

    client = flight.FlightClient(server.uri)
    try:
        opts = options(server.token)
        command = flight.FlightDescriptor.for_command(payload)
        if call == "do_get":
            client.do_get(flight.Ticket(payload), opts).read_all()
        elif call == "get_flight_info":
            client.get_flight_info(command, opts)
        elif call == "get_flight_info_path":
            client.get_flight_info(flight.FlightDescriptor.for_path(payload), opts)
        elif call == "list_flights":
            list(client.list_flights(payload, opts))
        elif call in ("do_exchange", "do_exchange_path"):
            descriptor = (
                command if call == "do_exchange" else flight.FlightDescriptor.for_path(payload)
            )
            writer, reader = client.do_exchange(descriptor, opts)
            try:
                writer.done_writing()
                reader.read_chunk()
            finally:
                with contextlib.suppress(pa.ArrowException):
                    writer.close()  # raises the same error again
        elif call == "do_put_command":
            writer, _ = client.do_put(command, RECORD_SCHEMA, opts)
            writer.close()
    finally:
        client.close()


_RANDOM = random.Random(6).randbytes(64)


@pytest.mark.parametrize(
    "call, payload, code",
    [
        ("do_get", _RANDOM, "INVALID_REQUEST"),
        ("do_get", b"", "INVALID_REQUEST"),
        ("do_get", b"[" * 100_000, "INVALID_REQUEST"),
        ("do_get", b'{"v": 2, "type": "scan"}', "UNSUPPORTED_VERSION"),
        ("do_get", b'{"v": 1, "type": "search", "query": "x"}', "INVALID_REQUEST"),
        ("do_get", b'{"v": 1, "type": "scan", "tierz": "core"}', "INVALID_REQUEST"),
        ("do_get", b'{"v": 1, "type": "scan", "since_hlc": -1}', "INVALID_REQUEST"),
        ("do_get", ScanRequest(where={f"k{i}": i for i in range(65)}).to_bytes(), "LIMIT_EXCEEDED"),
        ("get_flight_info", _RANDOM, "INVALID_REQUEST"),
        ("get_flight_info_path", b"records", "INVALID_REQUEST"),
        ("list_flights", _RANDOM, "INVALID_REQUEST"),
        ("do_exchange", _RANDOM, "INVALID_REQUEST"),
        ("do_exchange", b'{"v": 9, "type": "sync_open"}', "UNSUPPORTED_VERSION"),
        ("do_exchange_path", b"sync", "INVALID_REQUEST"),
        ("do_put_command", _RANDOM, "INVALID_REQUEST"),
    ],
)
def test_garbage_tickets_and_descriptors_are_refused(seeded, call, payload, code):
    server, before = seeded
    with pytest.raises(flight.FlightError) as excinfo:
        _flight_call(server, call, payload)
    assert _code_of(excinfo) == code
    assert json.loads(action(server.uri, server.token, "health"))["status"] == "ok"
    assert scan_all(server.uri, server.token).equals(before)


# -- more bad records: schema, vectors, UTF-8, sizes, duplicates, bombs ----------------------


def _schema_without(name: str):
    return [
        batch_of(record_columns(["x"]), RECORD_SCHEMA.remove(RECORD_SCHEMA.get_field_index(name)))
    ]


def _schema_with_type(name: str, new_type: pa.DataType):
    index = RECORD_SCHEMA.get_field_index(name)
    field = RECORD_SCHEMA.field(index)
    return [
        batch_of(
            record_columns(["x"]),
            RECORD_SCHEMA.set(index, pa.field(name, new_type, field.nullable)),
        )
    ]


def _schema_without_version():
    return [batch_of(record_columns(["x"]), RECORD_SCHEMA.remove_metadata())]


def _schema_reordered():
    names = RECORD_SCHEMA.names
    return [
        batch_of(
            record_columns(["x"]),
            pa.schema(
                [RECORD_SCHEMA.field(n) for n in [names[1], names[0], *names[2:]]],
                metadata=RECORD_SCHEMA.metadata,
            ),
        )
    ]


def _dimension(dim: int):
    cols = record_columns(["x"], unit_vectors(1))
    cols["embedding"] = [[1] * dim]
    return [batch_of(cols)]


def _scale(value: float):
    cols = record_columns(["x"], unit_vectors(1))
    cols["embedding_scale"] = [value]
    return [batch_of(cols)]


def _string_column(name: str, raw: bytes):
    """A batch whose ``name`` column holds ``raw`` as a string, valid UTF-8 or not."""
    batch = batch_of(record_columns(["x"], unit_vectors(1), metadata=[{}]))
    offsets = pa.py_buffer(np.array([0, len(raw)], np.int32).tobytes())
    column = pa.Array.from_buffers(pa.string(), 1, [None, offsets, pa.py_buffer(raw)], null_count=0)
    return [batch.set_column(batch.schema.get_field_index(name), RECORD_SCHEMA.field(name), column)]


def _payload(codec: str, payload: bytes, raw_size: int, raw: bytes | None = None):
    """A record with this payload; its content hash is of ``raw`` (default: the payload)."""
    cols = record_columns(["x"])
    digest = hashlib.blake2b(payload if raw is None else raw, digest_size=16).digest()
    cols.update(codec=[codec], payload=[payload], raw_size=[raw_size], content_hash=[digest])
    return [batch_of(cols)]


def _zstd(data: bytes, *, content_size: bool) -> bytes:
    params = zstandard.ZstdCompressionParameters.from_level(
        3, format=zstandard.FORMAT_ZSTD1_MAGICLESS, write_content_size=content_size
    )
    return zstandard.ZstdCompressor(compression_params=params).compress(data)


def _frame_declaring(size: int, data: bytes) -> bytes:
    """A magicless zstd frame whose header declares ``size`` bytes, holding one raw block."""
    header = bytes([0xE0]) + size.to_bytes(8, "little")  # 8-byte content size, one segment
    block = (1 | len(data) << 3).to_bytes(3, "little")  # last block, raw
    return header + block + data


def _field(name: str, value):
    cols = record_columns(["x"])
    cols[name] = [value]
    return [batch_of(cols)]


def _same_id_twice_in_a_batch():
    cols = record_columns(["one", "two"])
    cols["id"] = [cols["id"][0]] * 2
    return [batch_of(cols)]


def _same_id_in_two_batches():
    first, second = record_columns(["one"]), record_columns(["two"])
    second["id"] = first["id"]
    return [batch_of(first), batch_of(second)]


@pytest.mark.parametrize(
    "make, code",
    [
        (lambda: _schema_without("metadata"), "SCHEMA_MISMATCH"),
        (lambda: _schema_with_type("privacy", pa.int32()), "SCHEMA_MISMATCH"),
        (lambda: _schema_with_type("payload", pa.string()), "SCHEMA_MISMATCH"),
        (_schema_without_version, "UNSUPPORTED_VERSION"),
        (_schema_reordered, "SCHEMA_MISMATCH"),
        (lambda: _dimension(0), "INVALID_VECTOR"),
        (lambda: _dimension(5000), "INVALID_VECTOR"),
        (lambda: _scale(float("inf")), "INVALID_VECTOR"),
        (lambda: _scale(float("-inf")), "INVALID_VECTOR"),
        (lambda: _scale(-0.01), "INVALID_VECTOR"),
        (lambda: _scale(3e38), "INVALID_VECTOR"),  # finite, but inf once dequantized
        (lambda: _scale(1e-30), "INVALID_VECTOR"),
        (lambda: _string_column("agent", b"\xff\xfe"), "INVALID_UTF8"),
        (lambda: _string_column("kind", b"\xed\xa0\x80"), "INVALID_UTF8"),  # a lone surrogate
        (lambda: _string_column("metadata", b'{"a": "\xc0\x80"}'), "INVALID_UTF8"),  # overlong
        (lambda: _payload("none", b"caf\xed\xa0\x80", 6), "INVALID_UTF8"),
        (
            lambda: _payload("zstd", _zstd(b"\xff" * 100, content_size=True), 100, b"\xff" * 100),
            "INVALID_UTF8",
        ),
        (lambda: _field("metadata", json.dumps({"a": "m" * (65 * 1024)})), "LIMIT_EXCEEDED"),
        (lambda: _field("agent", "a" * 300), "INVALID_VALUE"),
        (lambda: _payload("none", b"x", 2**31), "TEXT_TOO_LARGE"),
        (lambda: _payload("zstd", b"\0" * (300 * 1024), 1000), "TEXT_TOO_LARGE"),
        # zstd bombs: 64 MiB of zeros is a 2 KB frame; the record says 100 bytes.
        (lambda: _payload("zstd", _zstd(bytes(64 << 20), content_size=False), 100), "CORRUPT_DATA"),
        (lambda: _payload("zstd", _zstd(bytes(64 << 20), content_size=True), 100), "CORRUPT_DATA"),
        (lambda: _payload("zstd", _frame_declaring(1 << 40, b"x" * 100), 100), "CORRUPT_DATA"),
        (lambda: _field("hlc", 2**64 - 1), "INVALID_VALUE"),  # would push the clock past 2**64
        (lambda: _field("created_at", 2**62), "INVALID_VALUE"),  # past datetime's year 9999
        (_same_id_twice_in_a_batch, "DUPLICATE_ID"),
        (_same_id_in_two_batches, "DUPLICATE_ID"),
    ],
)
def test_more_bad_puts_are_refused_with_their_code_and_change_nothing(seeded, make, code):
    server, before = seeded
    with pytest.raises(flight.FlightError) as excinfo:
        put(server.uri, server.token, make())
    assert _code_of(excinfo) == code
    assert json.loads(action(server.uri, server.token, "health"))["status"] == "ok"
    assert scan_all(server.uri, server.token).equals(before)
    put(server.uri, server.token, [batch_of(record_columns(["still writable"]))])


def test_the_client_refuses_an_id_twice_before_sending():
    from aios_memory.client.codec.batches import rows_to_batch
    from aios_memory.schemas import DuplicateIdError

    cols = record_columns(["one", "two"])
    rows = [{name: values[i] for name, values in cols.items()} for i in range(2)]
    rows[1]["id"] = rows[0]["id"]
    with pytest.raises(DuplicateIdError) as excinfo:
        rows_to_batch(rows)
    assert excinfo.value.detail["rows"] == [0, 1]


@pytest.mark.parametrize(
    "body, code",
    [
        (SearchRequest(embedding=[float("inf")] * 16, mode="vector").to_bytes(), "INVALID_VECTOR"),
        (SearchRequest(embedding=[1e308] * 16, mode="vector").to_bytes(), "INVALID_VECTOR"),
        (SearchRequest(embedding=[0.0] * 16, mode="vector").to_bytes(), "INVALID_VECTOR"),
        (b'{"v": 1, "type": "search", "embedding": []}', "INVALID_VECTOR"),
        (b'{"v": 1, "type": "search", "embedding": ["x"]}', "INVALID_REQUEST"),
        (SearchRequest(query="q" * (10 << 20)).to_bytes(), "LIMIT_EXCEEDED"),
        (
            SearchRequest(query="x", where={f"k{i}": i for i in range(65)}).to_bytes(),
            "LIMIT_EXCEEDED",
        ),
        (
            SearchRequest(query="x", where={"id": {"$in": ["a"] * 10_001}}).to_bytes(),
            "LIMIT_EXCEEDED",
        ),
    ],
)
def test_bad_search_vectors_and_sizes_are_refused(seeded, body, code):
    server, before = seeded
    with pytest.raises(flight.FlightError) as excinfo:
        action(server.uri, server.token, "search", body)
    assert _code_of(excinfo) == code
    assert json.loads(action(server.uri, server.token, "health"))["status"] == "ok"
    assert scan_all(server.uri, server.token).equals(before)


@pytest.mark.parametrize(
    "name, size", [("search", 100 << 20), ("forget", (1 << 20) + 1), ("health", (1 << 20) + 1)]
)
def test_an_action_body_over_1_mib_is_refused_before_parsing(seeded, name, size):
    server, before = seeded
    body = b'{"v": 1, "type": "ids", "ids": [' + b" " * (size - 34) + b"]}"
    assert len(body) == size
    with pytest.raises(flight.FlightError) as excinfo:
        action(server.uri, server.token, name, body)
    assert _code_of(excinfo) == "LIMIT_EXCEEDED"
    assert scan_all(server.uri, server.token).equals(before)


def _plain(text: bytes, n: int) -> pa.RecordBatch:
    """``n`` records holding ``text`` uncompressed (codec none): as large on the wire as in RAM."""
    cols = record_columns(["x"] * n)
    cols.update(
        codec=["none"] * n,
        payload=[text] * n,
        raw_size=[len(text)] * n,
        content_hash=[hashlib.blake2b(text, digest_size=16).digest()] * n,
    )
    return batch_of(cols)


def test_puts_over_the_row_and_byte_limits_are_refused(start):
    server = start("small", limits=Limits(max_rows_per_put=4, max_bytes_per_put=256 * 1024))
    cases = [
        [batch_of(record_columns(["r"] * 5))],
        [batch_of(record_columns(["r"] * 3)), batch_of(record_columns(["r"] * 2))],
        [_plain(b"b" * (200 * 1024), 1), _plain(b"c" * (200 * 1024), 1)],
    ]
    for batches in cases:
        with pytest.raises(flight.FlightError) as excinfo:
            put(server.uri, server.token, batches)
        assert _code_of(excinfo) == "LIMIT_EXCEEDED"
    assert scan_all(server.uri, server.token).num_rows == 0
    assert json.loads(action(server.uri, server.token, "health"))["status"] == "ok"


def test_the_client_will_not_send_a_batch_over_its_write_size_limit(server):
    from aios_memory.client.transport.flight import WRITE_SIZE_LIMIT, Transport
    from aios_memory.schemas import LimitExceededError

    batch = _plain(b"w" * (200 * 1024), WRITE_SIZE_LIMIT // (200 * 1024) + 8)
    transport = Transport(server.uri, server.token, 30)
    try:
        with pytest.raises(LimitExceededError):
            transport.put([batch])
    finally:
        transport.close()
    assert scan_all(server.uri, server.token).num_rows == 0
