"""Seeded fuzzing of ``do_put``: mutated Arrow data and mutated IPC never break the server.

Two modes, each against one real server started for this module:

- ``arrow``: record batches built from mutated buffers (invalid UTF-8, offsets out
  of order or out of range, nulls where the schema forbids them, null counts
  that lie, random values in every fixed-width column) and sent with a raw
  pyarrow client, whose ``write_batch`` does not validate;
- ``ipc``: a valid put stream, made as the client makes it, whose Flight messages
  are rewritten on the wire by ``_h2_rewrite.RewriteProxy``: bit flips, bytes
  overwritten with 0x00/0xFF/0x7F/0x80, IPC length and offset fields set to
  edge values, truncated and duplicated chunks, messages dropped, repeated or
  reordered.

Every case must be refused with one of our error codes (never ``INTERNAL``) or
accepted as a valid record; the server answers ``health`` every 100 cases and at
the end, and the stored records are unchanged apart from accepted ones.

The server runs inside this pytest process, so a crash in it (a segfault in
pyarrow reading bad IPC included) kills the run: a passing run is proof of zero
crashes over every case. Run with ``pytest -s`` to see the outcomes per code.
"""

from __future__ import annotations

import collections
import datetime
import json
import random
import struct
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from conftest import TOKEN, unit_vectors
from support.h2_rewrite import (
    APP_METADATA,
    DATA_BODY,
    DATA_HEADER,
    DESCRIPTOR,
    RewriteProxy,
    flight_data_bytes,
    flight_data_fields,
)
from support.wire import action, options, scan_all

from aios_memory.client import MemoryClient, _records
from aios_memory.client.codec.batches import rows_to_batch
from aios_memory.client.codec.text import decode_text
from aios_memory.client.importers import MemoryInput
from aios_memory.flight_server import RunningServer, ServerSettings, start_server
from aios_memory.schemas import (
    DEFAULT_LIMITS,
    ERROR_CLASSES,
    PUT_PATH,
    RECORD_SCHEMA,
    PutAck,
    PutCommit,
    decode_error,
    validate_record_batch,
)

ARROW_CASES = 400
IPC_CASES = 1000
HEALTH_EVERY = 100
CREATED_AT = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
ACCEPTED = "OK"
# Refused by Arrow Flight's C++ layer before any handler runs: only a broken first
# message (descriptor and schema) can get there, and it carries no code of ours.
FLIGHT_LAYER = "FLIGHT_LAYER"


class Fuzz:
    """The server under test, its sentinel records, and the counts of outcomes."""

    def __init__(self, running: RunningServer) -> None:
        self.running = running
        self.sentinels = _by_id(scan_all(running.uri, running.token))
        self.accepted_ids: set[str] = set()

    def check_state(self) -> None:
        """Sentinels unchanged, nothing stored but accepted ids, every stored row valid."""
        health = json.loads(action(self.running.uri, self.running.token, "health"))
        assert health["status"] == "ok"
        table = scan_all(self.running.uri, self.running.token)
        stored = _by_id(table)
        for memory_id, row in self.sentinels.items():
            assert stored[memory_id] == row, f"sentinel {memory_id} changed"
        assert set(stored) - set(self.sentinels) <= self.accepted_ids
        for batch in table.to_batches():
            validate_record_batch(batch)
        for row in stored.values():
            if not row["deleted"]:
                decode_text(
                    row["codec"],
                    row["payload"],
                    row["raw_size"],
                    row["content_hash"],
                    max_bytes=DEFAULT_LIMITS.max_text_bytes,
                )


def _by_id(table: pa.Table) -> dict[str, dict[str, Any]]:
    return {row["id"]: row for row in table.to_pylist()}


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzz]:
    settings = ServerSettings(
        data_dir=tmp_path_factory.mktemp("fuzz"),
        port=0,
        token=TOKEN,
        embedder="none",
        checkpoint_seconds=0,
    )
    with start_server(settings) as running:
        with MemoryClient(running.uri, running.token, timeout=30) as client:
            client.remember(
                [f"sentinel memory {i}" for i in range(4)], embeddings=unit_vectors(4, seed=1)
            )
            client.remember("a sentinel without a vector", tier="core")
        yield Fuzz(running)


@pytest.fixture(scope="module")
def base_batches() -> list[pa.RecordBatch]:
    """Two batches made exactly as ``MemoryClient.remember`` makes them (zstd and plain)."""
    texts = ["tea " * 40 + str(i) if i % 2 else f"short {i}" for i in range(6)]
    items = [
        MemoryInput(text=t, metadata={"n": i}, agent="fuzzer", session="s1")
        for i, t in enumerate(texts)
    ]
    vectors = _records.prepare_embeddings(unit_vectors(6, seed=2), 6)
    rows = list(
        _records.encode_rows(
            items,
            vectors,
            _records.Defaults(tenant="default", embed_model="external", tier="long_term"),
        )
    )
    for number, row in enumerate(rows):  # fixed ids and times: the same bytes every run
        row.update(id=f"0190f5a2-0000-7000-8000-{number:012d}", created_at=CREATED_AT)
    return [rows_to_batch(rows[:3]), rows_to_batch(rows[3:])]


def send(uri: str, batches: list[pa.RecordBatch]) -> tuple[str, list[PutAck]]:
    """One put as ``client._transport`` sends it; ``(code or "OK", acks)``."""
    client = flight.FlightClient(uri)
    try:
        writer, reader = client.do_put(
            flight.FlightDescriptor.for_path(PUT_PATH), RECORD_SCHEMA, options(TOKEN)
        )
        for batch in batches:
            writer.write_batch(batch)
        writer.write_metadata(
            PutCommit(batches=len(batches), rows=sum(b.num_rows for b in batches)).to_bytes()
        )
        writer.done_writing()
        acks = []
        while (buf := reader.read()) is not None:
            acks.append(PutAck.from_bytes(buf.to_pybytes()))
        writer.close()
        return ACCEPTED, acks
    except (flight.FlightError, pa.ArrowException) as exc:
        error = decode_error(getattr(exc, "extra_info", None))
        return (error.code if error else f"{FLIGHT_LAYER} {exc}"), []
    finally:
        client.close()


def run_cases(
    fuzz: Fuzz,
    uri: str,
    count: int,
    make: Callable[[int], tuple[list[pa.RecordBatch], Callable[[str], bool]]],
) -> collections.Counter:
    """``count`` cases; ``make(i)`` gives the batches and a check of the outcome's code."""
    outcomes: collections.Counter = collections.Counter()
    for case in range(count):
        batches, allowed = make(case)
        code, acks = send(uri, batches)
        label = FLIGHT_LAYER if code.startswith(FLIGHT_LAYER) else code
        assert allowed(code), f"case {case}: {code}"
        assert label in (ACCEPTED, FLIGHT_LAYER) or label in ERROR_CLASSES, code
        assert label != "INTERNAL", f"case {case}: the server failed instead of refusing"
        fuzz.accepted_ids.update(i for ack in acks for i in ack.ids)
        outcomes[label] += 1
        if (case + 1) % HEALTH_EVERY == 0:
            assert json.loads(action(fuzz.running.uri, TOKEN, "health"))["status"] == "ok"
    return outcomes


def _report(mode: str, outcomes: collections.Counter) -> None:
    print(
        f"\n{mode}: {sum(outcomes.values())} cases: "
        + ", ".join(f"{code} {n}" for code, n in outcomes.most_common())
    )


# -- mode "arrow": batches from mutated buffers --------------------------------------------

_BAD_UTF8 = [
    b"\xff",
    b"\xc0\x80",
    b"\xed\xa0\x80",
    b"\xe2\x82",
    b"\xf8\x88\x80\x80\x80",
    b"ok\x80",
    b"\xf4\x90\x80\x80",
]
_VARIABLE = [
    f.name
    for f in RECORD_SCHEMA
    if pa.types.is_string(f.type) or pa.types.is_binary(f.type) or pa.types.is_list(f.type)
]
_FIXED = [f.name for f in RECORD_SCHEMA if f.name not in _VARIABLE]


def _bitmap(valid: list[bool]) -> pa.Buffer:
    return pa.py_buffer(np.packbits(np.array(valid, bool), bitorder="little").tobytes())


def _variable(
    column: pa.Array,
    offsets: list[int] | None = None,
    values: list[Any] | None = None,
    valid: list[bool] | None = None,
    null_count: int | None = None,
) -> pa.Array:
    """``column`` (string, binary or list) rebuilt from its buffers with some replaced."""
    values = column.to_pylist() if values is None else values
    items = [v.encode() if isinstance(v, str) else v for v in values]
    if pa.types.is_list(column.type):
        flat = pa.array([x for v in items for x in (v or [])], column.type.value_type)
    else:
        flat = None
    lengths = [len(v or []) for v in items]
    offsets = offsets or list(np.concatenate([[0], np.cumsum(lengths)]).astype(int))
    valid = valid or [v is not None for v in items]
    count = valid.count(False) if null_count is None else null_count
    buffers = [
        _bitmap(valid) if count or not all(valid) else None,
        pa.py_buffer(np.array(offsets, np.int32).tobytes()),
    ]
    if flat is None:
        buffers.append(pa.py_buffer(b"".join(v or b"" for v in items)))
        return pa.Array.from_buffers(column.type, len(items), buffers, null_count=count)
    return pa.Array.from_buffers(
        column.type, len(items), buffers, null_count=count, children=[flat]
    )


def _replace(batch: pa.RecordBatch, name: str, column: pa.Array) -> pa.RecordBatch:
    index = batch.schema.get_field_index(name)
    return batch.set_column(index, batch.schema.field(name), column)


def _bad_utf8(rng: random.Random, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, str]:
    name = rng.choice([f.name for f in RECORD_SCHEMA if pa.types.is_string(f.type)])
    values = batch.column(name).to_pylist()
    row = rng.randrange(len(values))
    bad = rng.choice(_BAD_UTF8)
    values[row] = (values[row] or "").encode()[: rng.randrange(4)] + bad
    return _replace(batch, name, _variable(batch.column(name), values=values)), "INVALID_UTF8"


def _offsets_of(column: pa.Array) -> list[int]:
    lengths = [len(v or []) for v in column.to_pylist()]
    return list(np.concatenate([[0], np.cumsum(lengths)]).astype(int))


def _bad_offsets(rng: random.Random, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, str]:
    """Inner offsets out of order or past the data; the first and last stay (they are
    checked when an array is built, the inner ones only by a full validation)."""
    candidates = [
        n
        for n in _VARIABLE
        if len(set(_offsets_of(batch.column(n))[1:-1])) > 1
        and all(v for v in batch.column(n).to_pylist())
    ]
    name = rng.choice(candidates)
    offsets = _offsets_of(batch.column(name))
    if rng.random() < 0.5:
        offsets[1], offsets[2] = offsets[2], offsets[1]
    else:
        offsets[rng.randrange(1, len(offsets) - 1)] = rng.choice(
            [-1, -(2**31), offsets[-1] + 1, offsets[-1] + rng.randrange(2, 10**6), 2**31 - 1]
        )
    return _replace(batch, name, _variable(batch.column(name), offsets=offsets)), "INVALID_VALUE"


def _null_required(rng: random.Random, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, str]:
    field = rng.choice([f for f in RECORD_SCHEMA if not f.nullable])
    valid = [True] * batch.num_rows
    valid[rng.randrange(batch.num_rows)] = False
    column = batch.column(field.name)
    if field.name in _VARIABLE:
        return _replace(batch, field.name, _variable(column, valid=valid)), "INVALID_VALUE"
    buffers = [_bitmap(valid)] + column.buffers()[1:]
    return _replace(
        batch, field.name, pa.Array.from_buffers(column.type, len(column), buffers, null_count=1)
    ), "INVALID_VALUE"


def _lying_null_count(rng: random.Random, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, str]:
    name = rng.choice(_VARIABLE)
    column = batch.column(name)
    valid = [v is not None for v in column.to_pylist()]
    wrong = valid.count(False) + rng.randrange(1, batch.num_rows + 1 - valid.count(False))
    return _replace(batch, name, _variable(column, valid=valid, null_count=wrong)), "INVALID_VALUE"


def _random_values(rng: random.Random, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, str]:
    """Random bytes in a fixed-width column: any code or a valid record, never INTERNAL."""
    name = rng.choice(_FIXED + ["embedding"])
    column = batch.column(name)
    if name == "embedding":
        column = column.values
    data = bytearray(column.buffers()[1].to_pybytes())
    if column.type == pa.bool_():
        data = bytearray(rng.randbytes(len(data)))
    else:
        width = column.type.byte_width
        row = rng.randrange(len(column))
        data[row * width : (row + 1) * width] = rng.choice(
            [rng.randbytes(width), b"\xff" * width, b"\x00" * width, b"\x7f" * width]
        )
    rebuilt = pa.Array.from_buffers(
        column.type,
        len(column),
        [column.buffers()[0], pa.py_buffer(bytes(data))],
        null_count=column.null_count,
    )
    if name == "embedding":
        outer = batch.column(name)
        rebuilt = pa.ListArray.from_arrays(outer.offsets, rebuilt)
    return _replace(batch, name, rebuilt), ""


_ARROW_MUTATIONS = [
    (_bad_utf8, 3),
    (_bad_offsets, 3),
    (_null_required, 2),
    (_lying_null_count, 1),
    (_random_values, 4),
]


def test_mutated_arrow_batches_are_refused_or_stored_valid(fuzz, base_batches):
    """400 seeded batches with invalid buffers, sent without client-side checks."""
    rng = random.Random(20240611)
    mutations = [m for m, weight in _ARROW_MUTATIONS for _ in range(weight)]

    def make(case: int) -> tuple[list[pa.RecordBatch], Callable[[str], bool]]:
        batches = list(base_batches)
        which = rng.randrange(len(batches))
        batches[which], expected = rng.choice(mutations)(rng, batches[which])
        return batches, (lambda code: code == expected) if expected else (lambda code: True)

    outcomes = run_cases(fuzz, fuzz.running.uri, ARROW_CASES, make)
    _report("arrow", outcomes)
    assert sum(outcomes.values()) == ARROW_CASES
    assert outcomes["INVALID_UTF8"] and outcomes["INVALID_VALUE"] and outcomes[ACCEPTED]
    assert not outcomes[FLIGHT_LAYER]
    fuzz.check_state()


# -- mode "ipc": Flight messages rewritten on the wire ----------------------------------------

_BYTES = [0x00, 0xFF, 0x7F, 0x80, 0x01, 0xFE]
_INT32 = [0, 1, -1, 7, 8, 2**31 - 1, -(2**31), 2**16, 2**24, 4096]
_INT64 = [0, 1, -1, 8, 2**63 - 1, -(2**63), 2**32, 2**40]


def _mutate_bytes(rng: random.Random, value: bytes) -> bytes:
    data = bytearray(value)
    kind = rng.randrange(7)
    if not data:
        return bytes(rng.randbytes(rng.randrange(1, 16)))
    at = rng.randrange(len(data))
    if kind == 0:  # bit flips
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif kind == 1:  # an interesting byte
        data[at] = rng.choice(_BYTES)
    elif kind in (2, 3):  # a length or offset field (flatbuffers align them)
        width, values, fmt = (4, _INT32, "<i") if kind == 2 else (8, _INT64, "<q")
        at = at - at % width
        if at + width <= len(data):
            old = struct.unpack_from(fmt, data, at)[0]
            new = rng.choice(values + [old + 1, old - 1, old * 2, old + 8])
            struct.pack_into(
                fmt, data, at, max(min(new, 2 ** (8 * width - 1) - 1), -(2 ** (8 * width - 1)))
            )
    elif kind == 4:  # truncated
        del data[at:]
    elif kind == 5:  # a chunk duplicated in place
        size = rng.randrange(1, 65)
        data[at:at] = data[at : at + size]
    else:  # random bytes over a stretch
        size = min(rng.randrange(1, 33), len(data) - at)
        data[at : at + size] = rng.randbytes(size)
    return bytes(data)


def _field_mutation(rng: random.Random, messages: list[bytes]) -> tuple[list[bytes], int]:
    """Mutate one field of one message; returns the messages and the touched index."""
    targets = [
        (0, DATA_HEADER, 2),
        (0, DESCRIPTOR, 1),
        (1, DATA_HEADER, 6),
        (1, DATA_BODY, 7),
        (2, DATA_HEADER, 3),
        (2, DATA_BODY, 3),
        (3, APP_METADATA, 1),
    ]
    index, number, _ = rng.choice([t for t in targets for _ in range(t[2])])
    fields = flight_data_fields(messages[index])
    spot = [i for i, (n, _) in enumerate(fields) if n == number][0]
    fields[spot] = (number, _mutate_bytes(rng, fields[spot][1]))
    out = list(messages)
    out[index] = flight_data_bytes(fields)
    return out, index


def _raw_mutation(rng: random.Random, messages: list[bytes]) -> tuple[list[bytes], int]:
    """Mutate the protobuf bytes of one message, tags and lengths included."""
    index = rng.randrange(len(messages))
    out = list(messages)
    out[index] = _mutate_bytes(rng, messages[index])
    return out, index


def _message_mutation(rng: random.Random, messages: list[bytes]) -> tuple[list[bytes], int]:
    """Whole messages dropped, repeated, reordered or merged (the first one stays)."""
    schema, first, second, commit = messages
    kind = rng.randrange(6)
    if kind == 0:
        return [schema, first, first, second, commit], 1
    if kind == 1:
        return [schema, second, commit], 1
    if kind == 2:
        return [schema, commit, first, second], 3
    if kind == 3:
        return [schema, first, second, commit, commit], 3
    if kind == 4:
        return [schema, second, first, commit], 1
    return [
        schema,
        first,
        flight_data_bytes(flight_data_fields(second) + flight_data_fields(commit)),
    ], 2


def _duplicated_batch(messages: list[bytes]) -> list[bytes]:
    """The first batch twice, with a commit that counts it twice: one put, ids twice."""
    schema, first, second, _ = messages
    commit = flight_data_bytes([(APP_METADATA, PutCommit(batches=2, rows=6).to_bytes())])
    return [schema, first, first, commit]


def test_mutated_ipc_messages_are_refused_or_stored_valid(fuzz, base_batches):
    """1,000 seeded rewrites of a valid put stream's Flight messages on the wire."""
    rng = random.Random(1_000_003)
    with RewriteProxy.to_uri(fuzz.running.uri, lifetime=600) as proxy:
        code, acks = send(proxy.uri, base_batches)
        assert code == ACCEPTED
        fuzz.accepted_ids.update(i for ack in acks for i in ack.ids)
        pristine = proxy.captured
        assert len(pristine) == 4  # schema, two batches, commit
        send(proxy.uri, base_batches)
        assert proxy.captured == pristine, "the client's bytes must not vary between puts"
        proxy.rewrite = lambda messages: _duplicated_batch(messages)
        assert send(proxy.uri, base_batches)[0] == "DUPLICATE_ID"
        mutations = [_field_mutation] * 7 + [_raw_mutation, _message_mutation]

        def make(case: int) -> tuple[list[pa.RecordBatch], Callable[[str], bool]]:
            mutated, touched = rng.choice(mutations)(rng, pristine)
            proxy.rewrite = lambda messages: mutated
            return base_batches, lambda code: touched == 0 or not code.startswith(FLIGHT_LAYER)

        outcomes = run_cases(fuzz, proxy.uri, IPC_CASES, make)
    _report("ipc", outcomes)
    assert sum(outcomes.values()) == IPC_CASES
    assert outcomes["INVALID_VALUE"] and outcomes["CORRUPT_DATA"]
    fuzz.check_state()
