"""Bad input gets a specific error; the server keeps serving; nothing stored changes."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from aios_memory.schemas import RECORD_SCHEMA, ERROR_CLASSES, SearchRequest, decode_error

from _wire import action, batch_of, put, record_columns, scan_all
from conftest import unit_vectors


def _code_of(excinfo: pytest.ExceptionInfo) -> str:
    error = decode_error(excinfo.value.extra_info)
    assert error is not None, f"no machine-readable code in {excinfo.value!r}"
    return error.code


@pytest.fixture
def seeded(server):
    """A server holding 5 memories with 16-dim vectors, and what it held before the test."""
    put(server.uri, server.token,
        [batch_of(record_columns([f"memory number {i}" for i in range(5)], unit_vectors(5)))])
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


@pytest.mark.parametrize("make, code", [
    (_wrong_schema, "SCHEMA_MISMATCH"),
    (_wrong_dimension, "INVALID_VECTOR"),
    (_nan_vector, "INVALID_VECTOR"),
    (_invalid_utf8, "INVALID_UTF8"),
    (_oversized_text, "TEXT_TOO_LARGE"),
    (_unknown_tier, "UNKNOWN_TIER"),
    (_hash_mismatch, "CORRUPT_DATA"),
    (_zero_vector, "INVALID_VECTOR"),
])
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
    from _wire import options
    from aios_memory.schemas import PUT_PATH, PutCommit

    writer, reader = client.do_put(flight.FlightDescriptor.for_path(PUT_PATH), RECORD_SCHEMA,
                                   options(server.token))
    writer.write_batch(batch_of(record_columns(["a", "b"], unit_vectors(2))))
    writer.write_metadata(PutCommit(batches=1, rows=3).to_bytes())
    with pytest.raises(flight.FlightError) as excinfo:
        reader.read()
        writer.close()
    assert _code_of(excinfo) == "INCOMPLETE_WRITE"
    client.close()
    assert scan_all(server.uri, server.token).equals(before)


@pytest.mark.parametrize("body, code", [
    (SearchRequest(embedding=[float("nan")] * 16, mode="vector").to_bytes(), "INVALID_VECTOR"),
    (SearchRequest(embedding=[0.1] * 8, mode="vector").to_bytes(), "INVALID_VECTOR"),
    (SearchRequest(query="x", tier="attic").to_bytes(), "UNKNOWN_TIER"),
    (SearchRequest(query="x", where={"a": {"$regex": "x"}}).to_bytes(), "INVALID_FILTER"),
    (SearchRequest(query="x", k=10**6).to_bytes(), "LIMIT_EXCEEDED"),
    (SearchRequest(query="x", mode="vector").to_bytes(), "EMBEDDER_FAILED"),
    (b'{"v": 99, "type": "search"}', "UNSUPPORTED_VERSION"),
    (b"not json", "INVALID_REQUEST"),
    (b'{"v": 1, "type": "search", "query": "x", "kk": 1}', "INVALID_REQUEST"),
])
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
    from _wire import options

    with pytest.raises(flight.FlightError) as excinfo:
        client.do_get(flight.Ticket(b'{"v":1,"type":"scan","tier":"attic"}'),
                      options(server.token)).read_all()
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
