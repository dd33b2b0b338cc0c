"""Property tests: codecs, wire messages and clocks round-trip; filters agree with Python."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.wire import batch_of, record_columns

from aios_memory.client.codec.text import decode_text, encode_text
from aios_memory.flight_server.ingest import prepare_write
from aios_memory.flight_server.store.duckdb_store import DuckDBStore
from aios_memory.schemas import (
    DEFAULT_LIMITS,
    FIELD_FILTERS,
    RECORD_SCHEMA,
    HybridClock,
    ScanRequest,
    SearchRequest,
)


@given(st.text(max_size=2000))
def test_text_codec_round_trips(text):
    encoded = encode_text(text)
    assert (
        decode_text(
            encoded.codec,
            encoded.payload,
            encoded.raw_size,
            encoded.content_hash,
            max_bytes=1 << 20,
        )
        == text
    )


@given(
    st.builds(
        SearchRequest,
        # An empty query is refused (it would match everything), and a filter's
        # values must suit their field: metadata keys take any scalar of 64 bits.
        query=st.text(max_size=50).filter(str.strip),
        k=st.integers(1, 1000),
        mode=st.sampled_from(["hybrid", "vector", "keyword"]),
        tier=st.sampled_from([None, "core", ["working", "shared"]]),
        where=st.dictionaries(
            st.text(min_size=1, max_size=10).filter(
                lambda key: (
                    key not in FIELD_FILTERS
                    and key.removeprefix("metadata.")
                    and not {'"', "\\"} & set(key)
                )
            ),
            st.one_of(
                st.integers(-(2**63), 2**63 - 1), st.text(max_size=5), st.booleans(), st.none()
            ),
            max_size=3,
        ),
    )
)
def test_search_request_round_trips(request_):
    assert SearchRequest.from_bytes(request_.to_bytes()) == request_


@given(st.lists(st.integers(0, 10**9), min_size=1, max_size=50))
def test_hybrid_clock_never_repeats_or_goes_back(walls):
    ticks = iter(walls)
    clock = HybridClock(wall_ms=lambda: next(ticks))
    stamps = [clock.now() for _ in walls]
    assert stamps == sorted(set(stamps))


@pytest.fixture(scope="module")
def filter_store(tmp_path_factory):
    """60 records with small random-ish metadata, stored once for every example."""
    store = DuckDBStore(tmp_path_factory.mktemp("filters"))
    metadata = [
        {"n": i % 7, "colour": ["red", "green", "blue"][i % 3], "flag": i % 2 == 0}
        for i in range(60)
    ]
    for i in range(0, 60, 5):
        del metadata[i]["colour"]  # some records lack a key
    columns = record_columns([f"m{i}" for i in range(60)], metadata=metadata)
    store.put(prepare_write([batch_of(columns)], None, DEFAULT_LIMITS))
    yield store, metadata
    store.close()


CONDITIONS = st.one_of(
    st.tuples(
        st.just("n"),
        st.sampled_from(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte"]),
        st.integers(-1, 8),
    ),
    st.tuples(
        st.just("colour"),
        st.sampled_from(["$eq", "$ne"]),
        st.sampled_from(["red", "green", "blue", "pink"]),
    ),
    st.tuples(
        st.just("n"), st.sampled_from(["$in", "$nin"]), st.lists(st.integers(0, 7), max_size=4)
    ),
    st.tuples(st.just("flag"), st.just("$eq"), st.booleans()),
)
_OPS = {
    "$eq": lambda a, b: a == b,
    "$ne": lambda a, b: a != b,
    "$gt": lambda a, b: a is not None and a > b,
    "$gte": lambda a, b: a is not None and a >= b,
    "$lt": lambda a, b: a is not None and a < b,
    "$lte": lambda a, b: a is not None and a <= b,
    "$in": lambda a, b: a in b,
    "$nin": lambda a, b: a is not None and a not in b,
}


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(CONDITIONS, min_size=1, max_size=2, unique_by=lambda c: c[0]))
def test_where_filters_agree_with_python(filter_store, conditions):
    store, metadata = filter_store
    where = {key: {op: value} for key, op, value in conditions}
    expected = {
        i
        for i, m in enumerate(metadata)
        if all(_OPS[op](m.get(key), value) for key, op, value in conditions)
    }
    table = pa.Table.from_batches(list(store.scan(ScanRequest(where=where))), RECORD_SCHEMA)
    got = {i for i, _ in _indexed(table)}
    assert got == expected, where


def _indexed(table: pa.Table):
    texts = [
        decode_text(c, p, s, max_bytes=1 << 20)
        for c, p, s in zip(
            *(table.column(n).to_pylist() for n in ("codec", "payload", "raw_size")), strict=True
        )
    ]
    for text, meta in zip(texts, table.column("metadata").to_pylist(), strict=True):
        yield int(text[1:]), meta
