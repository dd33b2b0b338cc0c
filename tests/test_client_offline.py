"""The thin client without a memory server: records, local checks, error mapping, CLI shell.

Servers here are tiny ``FlightServerBase`` subclasses, one per behaviour, on
127.0.0.1 port 0 (the pyarrow ``test_flight.py`` style).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import aios_memory.client as client_pkg
from aios_memory.client import (
    AiosMemoryError,
    AuthenticationError,
    ConnectionFailedError,
    CorruptDataError,
    DeadlineExceededError,
    Hit,
    InvalidFilterError,
    InvalidValueError,
    InvalidVectorError,
    MemoryClient,
    ServerInternalError,
    TextTooLargeError,
    UnknownTierError,
    _records,
)
from aios_memory.client._results import hits_from_table, memories_from_table, with_text
from aios_memory.client.cli.main import _load_plugin, main
from aios_memory.client.codec import vectors
from aios_memory.client.codec.batches import chunk_rows, rows_to_batch
from aios_memory.client.importers import MemoryInput
from aios_memory.schemas import (
    DEFAULT_LIMITS,
    HIT_SCHEMA,
    RECORD_SCHEMA,
    PutAck,
    PutCommit,
    encode_error,
)
from aios_memory.schemas import errors as schema_errors

MY_COMMANDS = ("remember", "recall", "get", "forget", "tiers", "stats", "import", "export")
DEFAULTS = _records.Defaults(tenant="default", embed_model="external")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def offline() -> Iterator[MemoryClient]:
    """A client to a port nothing listens on: any network call fails with ConnectionFailedError."""
    with MemoryClient(f"grpc://127.0.0.1:{_free_port()}", "t", timeout=5) as mem:
        yield mem


def _batch(texts: list[str], vectors: Any = None, **fields: Any) -> pa.RecordBatch:
    items = [MemoryInput(text=t, **fields) for t in texts]
    prepared = _records.prepare_embeddings(vectors, len(items))
    return rows_to_batch(list(_records.encode_rows(items, prepared, DEFAULTS)))


# -- records and local validation -------------------------------------------------


def test_record_batch_matches_the_contract() -> None:
    batch = _batch(
        ["Ada prefers tea", "x" * 500],
        [[3.0, 4.0], [0.0, -2.0]],
        metadata={"topic": "food"},
        session="s1",
    )
    assert batch.schema.equals(RECORD_SCHEMA, check_metadata=True)
    row = batch.to_pylist()[0]
    assert row["hlc"] == 0 and row["origin"] == "" and row["deleted"] is False
    assert row["tenant"] == "default" and row["tier"] == "working" and row["kind"] == "text"
    assert row["embed_model"] == "external" and row["dict_id"] is None
    assert json.loads(row["metadata"]) == {"topic": "food"}
    assert row["created_at"].tzinfo is not None
    assert batch.column("codec").to_pylist() == ["none", "zstd"]
    assert len(set(batch.column("id").to_pylist())) == 2


def test_record_without_embedding_leaves_vector_fields_null() -> None:
    row = _batch(["no vector"]).to_pylist()[0]
    assert row["embedding"] is None and row["embedding_scale"] is None
    assert row["embed_model"] is None and row["metadata"] is None


def test_bad_tier_fails_before_upload(offline: MemoryClient) -> None:
    with pytest.raises(UnknownTierError) as info:
        offline.remember("hello", tier="attic")
    assert info.value.detail["tier"] == "attic"


@pytest.mark.parametrize("vector", [[float("nan"), 1.0], [float("inf"), 0.0], [0.0, 0.0], []])
def test_bad_embedding_fails_before_upload(offline: MemoryClient, vector: list[float]) -> None:
    with pytest.raises(InvalidVectorError):
        offline.remember("hello", embeddings=[vector])


def test_embedding_count_and_dimension_must_match(offline: MemoryClient) -> None:
    with pytest.raises(InvalidVectorError, match="one per text"):
        offline.remember(["a", "b"], embeddings=[[1.0, 0.0]])
    with pytest.raises(InvalidVectorError, match="same dimension"):
        offline.remember(["a", "b"], embeddings=[[1.0, 0.0], [1.0, 0.0, 0.0]])


def test_oversize_text_fails_before_upload(offline: MemoryClient) -> None:
    with pytest.raises(TextTooLargeError):
        offline.remember("x" * (DEFAULT_LIMITS.max_text_bytes + 1))
    with pytest.raises(TextTooLargeError):  # under the limit in characters, over it in bytes
        offline.remember("é" * (DEFAULT_LIMITS.max_text_bytes // 2 + 1))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"privacy": 4},
        {"privacy": -1},
        {"metadata": "not a dict"},
        {"metadata": {"x": {1, 2}}},
        {"metadata": [{"a": 1}, {"b": 2}]},
        {"session": 5},
    ],
)
def test_bad_fields_fail_before_upload(offline: MemoryClient, kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidValueError):
        offline.remember("hello", **kwargs)


def test_bad_queries_fail_before_sending(offline: MemoryClient) -> None:
    with pytest.raises(InvalidFilterError):
        offline.recall("tea", where={"topic": {"$like": "t%"}})
    with pytest.raises(UnknownTierError):
        offline.recall("tea", tier="attic")
    with pytest.raises(InvalidVectorError):
        offline.recall(embedding=[0.0, 0.0])
    with pytest.raises(client_pkg.InvalidRequestError):
        offline.recall()
    with pytest.raises(client_pkg.InvalidRequestError):
        offline.scan(color="red")


def test_empty_writes_and_reads_send_nothing(offline: MemoryClient) -> None:
    assert offline.remember([]) == []
    assert offline.get([]) == [] and offline.forget([]) == 0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=64).filter(
        lambda v: any(abs(x) > 1e-3 for x in v)
    )
)
def test_quantization_round_trip_within_one_127th(vector: list[float]) -> None:
    unit = vectors.normalize(vector)
    codes, scale = vectors.quantize(unit)
    assert codes.dtype == np.int8 and np.abs(codes).max() == 127
    assert np.abs(codes.astype(np.float64) * scale - unit).max() <= 1 / 127


def test_quantized_column_decodes_to_the_unit_vector() -> None:
    batch = _batch(["v"], np.array([[1.0, 2.0, -2.0]]))
    codes = np.array(batch.column("embedding")[0].as_py(), dtype=np.float64)
    scale = batch.column("embedding_scale")[0].as_py()
    assert np.allclose(codes * scale, [1 / 3, 2 / 3, -2 / 3], atol=1 / 127)


def test_batches_and_puts_are_split_by_rows_and_bytes() -> None:
    rows = list(
        _records.encode_rows(
            [MemoryInput(text=f"t{i}") for i in range(5000)], [None] * 5000, DEFAULTS
        )
    )
    assert [len(c) for c in chunk_rows(rows)] == [4096, 904]
    big = [dict(r, payload=b"x" * 1_000_000) for r in rows[:20]]
    assert [len(c) for c in chunk_rows(big)] == [8, 8, 4]
    batches = [rows_to_batch(rows[i : i + 10]) for i in range(0, 100, 10)]
    assert [len(g) for g in _records.plan_puts(batches, max_rows=35)] == [3, 3, 3, 1]


def test_decoding_hits_and_tombstones() -> None:
    batch = _batch(["Ada prefers tea"], metadata={"topic": "food"})
    hits = hits_from_table(
        pa.Table.from_batches([batch.append_column(HIT_SCHEMA.field("score"), pa.array([0.5]))])
    )
    assert isinstance(hits[0], Hit) and hits[0].text == "Ada prefers tea"
    assert hits[0].metadata == {"topic": "food"} and hits[0].score == 0.5
    dead = batch.set_column(19, "deleted", pa.array([True]))
    assert with_text(dead).column("text").to_pylist() == [None]


def test_corrupt_payload_is_refused() -> None:
    batch = _batch(["Ada prefers tea"])
    bad = batch.set_column(
        14, RECORD_SCHEMA.field("content_hash"), pa.array([b"\0" * 16], pa.binary(16))
    )
    with pytest.raises(CorruptDataError):
        memories_from_table(pa.Table.from_batches([bad]))


# -- error mapping through real Flight servers ------------------------------------


class ErrorServer(flight.FlightServerBase):
    """Raises ``error`` from every call."""

    def __init__(self, error: Exception) -> None:
        super().__init__("grpc://127.0.0.1:0")
        self.error = error

    def do_action(self, context: Any, action: Any) -> Any:
        raise self.error

    def do_get(self, context: Any, ticket: Any) -> Any:
        raise self.error

    def list_flights(self, context: Any, criteria: Any) -> Any:
        raise self.error

    def do_put(self, context: Any, descriptor: Any, reader: Any, writer: Any) -> None:
        for _ in reader:
            pass
        raise self.error


def _connect(server: flight.FlightServerBase, timeout: float = 10) -> MemoryClient:
    return MemoryClient(f"grpc://127.0.0.1:{server.port}", "t", timeout=timeout)


def _tier_error() -> flight.FlightServerError:
    extra = encode_error(UnknownTierError("bad tier 'x'", tier="x"))
    return flight.FlightServerError("x", extra_info=extra)


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.recall("tea"),
        lambda m: m.stats(),
        lambda m: m.scan(),
        lambda m: m.tiers(),
        lambda m: m.remember("tea"),
        lambda m: m.get("a"),
    ],
)
def test_server_errors_come_back_as_the_same_class(call: Any) -> None:
    with (
        ErrorServer(_tier_error()) as server,
        _connect(server) as mem,
        pytest.raises(UnknownTierError) as info,
    ):
        call(mem)
    assert info.value.message == "bad tier 'x'" and info.value.detail == {"tier": "x"}


@pytest.mark.parametrize(
    "raised, expected, words",
    [
        (flight.FlightUnauthenticatedError("no"), AuthenticationError, "AIMEM_TOKEN"),
        (flight.FlightUnauthorizedError("no"), AuthenticationError, "--token"),
        (flight.FlightInternalError("boom"), ServerInternalError, "boom"),
        (flight.FlightUnavailableError("gone"), ConnectionFailedError, "aimem serve"),
        (ValueError("a bare Python bug"), ServerInternalError, "failed"),
        (
            flight.FlightServerError("x", extra_info=b'{"code": "NEW_CODE", "message": "m"}'),
            AiosMemoryError,
            "m",
        ),
    ],
)
def test_flight_errors_without_our_info(raised: Exception, expected: type, words: str) -> None:
    with (
        ErrorServer(raised) as server,
        _connect(server) as mem,
        pytest.raises(expected, match=words.replace("-", "\\-")),
    ):
        mem.health()


def test_every_error_code_round_trips() -> None:
    for cls in schema_errors.ERROR_CLASSES.values():
        error = flight.FlightServerError("x", extra_info=encode_error(cls("msg", row=3)))
        with (
            ErrorServer(error) as server,
            _connect(server) as mem,
            pytest.raises(cls) as info,
        ):
            mem.stats()
        assert type(info.value) is cls and info.value.detail == {"row": 3}


def test_unreachable_server_says_how_to_start_one(offline: MemoryClient) -> None:
    with pytest.raises(ConnectionFailedError, match="aimem serve --data DIR"):
        offline.health()


def test_bad_uri_is_a_value_error() -> None:
    with pytest.raises(InvalidValueError, match="grpc://HOST:PORT"):
        MemoryClient("nowhere")


class SlowServer(flight.FlightServerBase):
    """Sleeps past any short deadline."""

    def __init__(self) -> None:
        super().__init__("grpc://127.0.0.1:0")

    def do_action(self, context: Any, action: Any) -> Any:
        time.sleep(2)
        return [b"{}"]

    def do_put(self, context: Any, descriptor: Any, reader: Any, writer: Any) -> None:
        for _ in reader:
            pass
        time.sleep(2)


def test_deadline_is_mapped() -> None:
    with SlowServer() as server, _connect(server, timeout=0.3) as mem:
        with pytest.raises(DeadlineExceededError, match="timeout"):
            mem.health()
        with pytest.raises(DeadlineExceededError):  # read() gives None; close() says why
            mem.remember("tea")


class AckServer(flight.FlightServerBase):
    """Acknowledges puts as the contract says (or, with ``acks=False``, not at all)."""

    def __init__(self, acks: bool = True) -> None:
        super().__init__("grpc://127.0.0.1:0")
        self.acks = acks
        self.puts: list[tuple[list[int], Any]] = []
        self.lock = threading.Lock()

    def do_put(self, context: Any, descriptor: Any, reader: Any, writer: Any) -> None:
        sizes, ids, commit = [], [], None
        for chunk in iter(reader.read_chunk, None):
            if chunk.data is not None:
                sizes.append(chunk.data.num_rows)
                ids.append(chunk.data.column("id").to_pylist())
            elif chunk.app_metadata is not None:
                commit = PutCommit.from_bytes(chunk.app_metadata.to_pybytes())
                break
        with self.lock:
            self.puts.append((sizes, commit))
        for n, batch_ids in enumerate(ids if self.acks else []):
            writer.write(
                pa.py_buffer(PutAck(batch=n, ids=batch_ids, hlcs=[1] * len(batch_ids)).to_bytes())
            )


def test_put_protocol_splits_commits_and_reads_acks() -> None:
    with AckServer() as server, _connect(server) as mem:
        ids = mem.remember([f"memory {i}" for i in range(5000)])
    assert len(ids) == 5000 and len(set(ids)) == 5000
    assert server.puts == [([4096, 904], PutCommit(batches=2, rows=5000))]


def test_missing_acks_are_never_success() -> None:
    with (
        AckServer(acks=False) as server,
        _connect(server) as mem,
        pytest.raises(ServerInternalError, match="acknowledg"),
    ):
        mem.remember("tea")


class GarbageServer(flight.FlightServerBase):
    """Answers actions with ``body``."""

    def __init__(self, body: bytes) -> None:
        super().__init__("grpc://127.0.0.1:0")
        self.body = body

    def do_action(self, context: Any, action: Any) -> Any:
        return [self.body]


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


@pytest.mark.parametrize(
    "body",
    [
        b"not arrow",
        b"[1, 2]",
        _ipc(pa.table({"id": ["a"]})),
    ],
)
def test_bad_answers_are_corrupt_data(body: bytes) -> None:
    with GarbageServer(body) as server, _connect(server) as mem:
        with pytest.raises(CorruptDataError):
            mem.recall("tea", mode="keyword")
        with pytest.raises(CorruptDataError):
            mem.stats()


# -- packaging and the CLI shell --------------------------------------------------


def test_client_never_imports_the_server() -> None:
    code = (
        "import aios_memory.client, aios_memory.client.cli, sys; "
        "bad = [m for m in sys.modules if m.startswith(('duckdb', 'hnswlib', 'tantivy', "
        "'aios_memory.flight_server'))]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("command", [None, *MY_COMMANDS])
def test_cli_help_has_an_example(command: str | None) -> None:
    args = ["--help"] if command is None else [command, "-h"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "Example" in result.output


def test_cli_error_is_one_line_exit_1() -> None:
    result = CliRunner().invoke(main, ["stats", "--server", f"grpc://127.0.0.1:{_free_port()}"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: could not reach the memory server")
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["recall"],
        ["remember", "x", "--metadata", "{not json"],
        ["remember", "x", "--tier", "attic"],
        ["recall", "x", "--where", "[1]"],
        ["nope"],
    ],
)
def test_cli_usage_errors_exit_2(args: list[str]) -> None:
    assert CliRunner().invoke(main, args).exit_code == 2


def test_missing_plugin_becomes_a_stub_that_names_the_fix() -> None:
    point = EntryPoint(
        name="serve", value="aios_memory_not_installed.cli:serve", group="aimem.commands"
    )
    result = CliRunner().invoke(_load_plugin(point), ["--data", "x"])
    assert result.exit_code == 1
    assert "pip install 'ai-os-memory[server]'" in result.stderr
