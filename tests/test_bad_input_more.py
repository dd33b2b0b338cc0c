"""Bad filters and arguments a new user met: each gets its typed error, through a real server.

Every refusal is checked three ways: the error class and its code (over raw Flight
and through the SDK), no traceback in the server's log, and nothing stored changed.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.flight as flight
import pytest
from click.testing import CliRunner
from conftest import unit_vectors
from support.wire import action, batch_of, options, put, record_columns, scan_all

from aios_memory.client import MemoryClient, UnopenedMemoryWarning
from aios_memory.client.cli import main
from aios_memory.client.codec.keys import KeyStore
from aios_memory.flight_server.auth.audit import AuditLog
from aios_memory.flight_server.auth.tokens import TokenAuthority
from aios_memory.schemas import (
    DEFAULT_LIMITS,
    FIELD_FILTERS,
    FILTER_OPERATORS,
    TIERS,
    IdsRequest,
    IncompleteWriteError,
    InvalidFilterError,
    InvalidRequestError,
    InvalidValueError,
    LimitExceededError,
    PermissionDeniedError,
    SearchRequest,
    decode_error,
    new_id,
)

ISSUE_FILTERS = [
    {"privacy": {"$gt": "abc"}},
    {"privacy": {"$in": ["a"]}},
    {"tier": 5},
    {"id": {"$in": [1, 2]}},
    {"embed_model": {"$gt": 1.5}},
]


@pytest.fixture
def server_log(caplog: pytest.LogCaptureFixture) -> Callable[[], list[logging.LogRecord]]:
    """The server's log records at error level or with a traceback (it runs in-process)."""
    caplog.set_level(logging.INFO, logger="aios_memory")

    def bad() -> list[logging.LogRecord]:
        return [
            r
            for r in caplog.records
            if r.name.startswith("aios_memory") and (r.levelno >= logging.ERROR or r.exc_info)
        ]

    return bad


@pytest.fixture
def seeded(server: Any) -> tuple[Any, Any]:
    put(
        server.uri,
        server.token,
        [batch_of(record_columns(["tea with Ada", "coffee with Bob"], unit_vectors(2)))],
    )
    return server, scan_all(server.uri, server.token)


def _refusal(call: Callable[[], Any]) -> Any:
    """The decoded error of a raw Flight call that must fail."""
    with pytest.raises(flight.FlightError) as excinfo:
        call()
    error = decode_error(excinfo.value.extra_info)
    assert error is not None, f"no machine-readable code in {excinfo.value!r}"
    return error


def _search(server: Any, **fields: Any) -> Callable[[], Any]:
    body = json.dumps({"v": 1, "type": "search", **fields}).encode()
    return lambda: action(server.uri, server.token, "search", body)


def _scan(server: Any, where: Any) -> Callable[[], Any]:
    ticket = json.dumps({"v": 1, "type": "scan", "where": where}).encode()

    def call() -> Any:
        client = flight.FlightClient(server.uri)
        try:
            return client.do_get(flight.Ticket(ticket), options(server.token)).read_all()
        finally:
            client.close()

    return call


# -- 1. filters: every value is checked against its column's type --------------------------


@pytest.mark.parametrize("where", ISSUE_FILTERS, ids=json.dumps)
def test_the_filters_of_the_issue_are_invalid_filters(seeded, server_log, where) -> None:
    server, before = seeded
    for call in (
        _search(server, query="tea", mode="keyword", where=where),
        _search(server, embedding=unit_vectors(1)[0].tolist(), mode="vector", where=where),
        _scan(server, where),
    ):
        error = _refusal(call)
        assert type(error) is InvalidFilterError and error.code == "INVALID_FILTER"
    with MemoryClient(server.uri, server.token) as mem, pytest.raises(InvalidFilterError):
        mem.recall("tea", where=where, mode="keyword")
    assert server_log() == []
    assert scan_all(server.uri, server.token).equals(before)


_VALUES: list[Any] = [
    "abc",
    "working",
    "2024-05-01T12:00:00Z",
    0,
    1,
    -5,
    1.5,
    10**30,
    float("nan"),
    True,
    None,
    1e300,
]


def _conditions(op: str) -> Iterator[Any]:
    if op in ("$in", "$nin"):
        yield from ([v] for v in _VALUES)
        yield ["abc", 1]
        yield [None, 2]
        yield []
    else:
        yield from _VALUES
        yield [1]  # a list where a scalar belongs


def test_no_field_operator_or_value_type_reaches_the_engine(seeded, server_log) -> None:
    """Every field x operator x value kind: answered, or refused with a filter code."""
    server, before = seeded
    answered = refused = 0
    for key, op in itertools.product([*FIELD_FILTERS, "topic", "metadata.n"], FILTER_OPERATORS):
        for value in _conditions(op):
            where = {key: {op: value}}
            for call in (
                _search(server, query="tea", mode="keyword", where=where),
                _scan(server, where),
            ):
                try:
                    call()
                    answered += 1
                except flight.FlightError as exc:
                    error = decode_error(exc.extra_info)
                    assert isinstance(error, InvalidFilterError), (where, exc)
                    refused += 1
    assert answered > 100 and refused > 100  # both sides of the contract were exercised
    assert server_log() == []
    assert scan_all(server.uri, server.token).equals(before)


def test_well_typed_filters_still_match(seeded) -> None:
    server, _ = seeded
    with MemoryClient(server.uri, server.token) as mem:
        [ada] = mem.remember("Ada drinks tea", metadata={"n": 3, "topic": "food"})
        for where in (
            {"privacy": {"$in": [1]}, "tier": "working"},
            {"id": {"$in": [ada]}},
            {"n": {"$gt": 2.5}, "topic": {"$in": ["food", None]}},
            {"created_at": {"$gt": "2001-01-01T00:00:00Z"}, "agent": None},
        ):
            assert [h.id for h in mem.recall("drinks", where=where, mode="keyword")] == [ada], where


@pytest.mark.parametrize("k", [10**40, 0, -1, True, 2.5, "10"])
def test_bad_k_is_an_invalid_request(seeded, server_log, k) -> None:
    server, _ = seeded
    error = _refusal(_search(server, query="tea", k=k))
    assert isinstance(error, InvalidRequestError)
    expected = LimitExceededError if k == 10**40 else InvalidRequestError
    assert type(error) is expected and error.code == expected.code
    with MemoryClient(server.uri, server.token) as mem, pytest.raises(expected):
        mem.recall("tea", k=k)
    assert server_log() == []


# -- 2. depth and size of documents ---------------------------------------------------------


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def test_metadata_nesting_is_bounded_on_both_sides(server, server_log) -> None:
    limit = DEFAULT_LIMITS.max_json_depth
    with MemoryClient(server.uri, server.token) as mem:
        for depth in (limit + 1, 5000):
            with pytest.raises(InvalidValueError, match=f"more than {limit} levels"):
                mem.remember("deep", metadata=_nested(depth))
        assert mem.remember("deep enough", metadata=_nested(limit))
    before = scan_all(server.uri, server.token)
    for text in (json.dumps(_nested(limit + 1)), '{"a":' * 5000 + "1" + "}" * 5000):
        columns = record_columns(["x"])
        columns["metadata"] = [text]
        error = _refusal(lambda c=columns: put(server.uri, server.token, [batch_of(c)]))
        assert type(error) is InvalidValueError and error.detail["field"] == "metadata"
    assert server_log() == []
    assert scan_all(server.uri, server.token).equals(before)


def test_a_filter_nested_past_its_shape_is_refused(seeded, server_log) -> None:
    server, _ = seeded
    for where in ({"topic": {"$eq": _nested(5000)}}, {"topic": {"$in": [[["x"]]]}}):
        with MemoryClient(server.uri, server.token) as mem, pytest.raises(InvalidFilterError):
            mem.recall("tea", where=where)
    raw = b'{"v":1,"type":"search","query":"x","where":' + b'{"a":' * 5000 + b"1" + b"}" * 5001
    assert type(_refusal(lambda: action(server.uri, server.token, "search", raw))) in (
        InvalidRequestError,
        InvalidFilterError,
    )
    assert server_log() == []


# -- 3. id lists: bounded with a clear error ------------------------------------------------


def test_get_of_more_ids_than_one_call_takes_is_refused(server, server_log) -> None:
    ids = [new_id() for _ in range(DEFAULT_LIMITS.max_ids_per_call + 1)]
    with MemoryClient(server.uri, server.token) as mem:
        with pytest.raises(LimitExceededError, match="Split the ids"):
            mem.get(ids)
        assert mem.get(ids[:-1]) == []  # exactly the limit: one call
    body = IdsRequest(ids=ids).to_bytes()
    error = _refusal(lambda: action(server.uri, server.token, "get", body))
    assert type(error) is LimitExceededError
    assert server_log() == []


# -- 4. forget of many ids reports exactly what it did --------------------------------------


def test_forget_that_fails_midway_says_what_was_done(server_factory) -> None:
    stack = contextlib.ExitStack()
    running = stack.enter_context(server_factory())
    per_call = DEFAULT_LIMITS.max_ids_per_call // 2
    with MemoryClient(running.uri, running.token) as mem:
        a, b, c = mem.remember(["first", "second", "third"])
        filler = [new_id() for _ in range(2 * (per_call - 1))]
        asked = [a, *filler[: per_call - 1], b, *filler[per_call - 1 :], c]
        calls = []
        real = mem._transport.action_json

        def stop_after_first(name: str, body: bytes) -> dict[str, Any]:
            if name == "forget" and calls:
                stack.close()  # the server goes away between two calls, as in a crash
            calls.append(name)
            return real(name, body)

        mem._transport.action_json = stop_after_first  # type: ignore[method-assign]
        with pytest.raises(IncompleteWriteError) as excinfo:
            mem.forget(asked)
    detail = excinfo.value.detail
    assert detail["forgotten"] == [a] and detail["cause"] == "UNAVAILABLE"
    assert detail["done"] == asked[:per_call]
    assert detail["unknown"] == asked[per_call : 2 * per_call] and b in detail["unknown"]
    assert detail["not_done"] == asked[2 * per_call :] == [c]
    with server_factory() as again, MemoryClient(again.uri, again.token) as mem:
        assert [m.id for m in mem.get([a, b, c])] == [b, c]


def test_forget_of_up_to_5000_ids_is_one_call(client) -> None:
    ids = client.remember(["one", "two"])
    calls = []
    real = client._transport.action_json
    client._transport.action_json = lambda name, body: calls.append(name) or real(name, body)
    assert client.forget([*ids, *(new_id() for _ in range(4998))]) == 2
    assert calls == ["whoami", "forget"] or calls == ["forget"]


# -- 5. empty memories and empty queries -----------------------------------------------------


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
def test_a_blank_memory_is_refused_in_the_sdk_and_on_the_server(server, server_log, text) -> None:
    with MemoryClient(server.uri, server.token) as mem, pytest.raises(InvalidValueError):
        mem.remember(text)
    before = scan_all(server.uri, server.token)
    error = _refusal(lambda: put(server.uri, server.token, [batch_of(record_columns([text]))]))
    assert type(error) is InvalidValueError and error.detail["field"] == "text"
    assert scan_all(server.uri, server.token).equals(before)
    # With a vector it is a memory that can be found: accepted.
    assert put(server.uri, server.token, [batch_of(record_columns([text], unit_vectors(1)))])
    assert server_log() == []


@pytest.mark.parametrize("query", ["", "  "])
def test_an_empty_query_is_refused(seeded, server_log, query) -> None:
    server, _ = seeded
    with MemoryClient(server.uri, server.token) as mem:
        with pytest.raises(InvalidRequestError, match="empty"):
            mem.recall(query)
        assert mem.recall(query, embedding=unit_vectors(1)[0], mode="vector")
    error = _refusal(
        lambda: action(server.uri, server.token, "search", SearchRequest(query=query).to_bytes())
    )
    assert type(error) is InvalidRequestError
    assert server_log() == []


# -- 6. a read-only token may not forget -----------------------------------------------------


def test_forget_with_a_read_only_token_is_refused_and_audited(server) -> None:
    authority = TokenAuthority(server.data_dir)
    reader, _ = authority.create("default", "reader", TIERS, (), 3, None)
    with MemoryClient(server.uri, server.token) as owner:
        [kept] = owner.remember("keep me")
    with MemoryClient(server.uri, reader) as mem, pytest.raises(PermissionDeniedError):
        mem.forget(kept)
    result = CliRunner().invoke(main, ["forget", kept, "--server", server.uri, "--token", reader])
    assert result.exit_code == 1 and "may not forget" in result.output
    assert "forgot 0" not in result.output
    events = [(e["event"], e["code"]) for e in AuditLog(server.data_dir).entries()]
    assert events.count(("denied", "PERMISSION_DENIED")) == 2
    with MemoryClient(server.uri, server.token) as owner:
        assert [m.id for m in owner.get(kept)] == [kept]


# -- 7. the tenant defaults to the token's own ----------------------------------------------


def test_the_tenant_defaults_to_the_tokens_own(server) -> None:
    bob_token, _ = TokenAuthority(server.data_dir).create("bob", "app", TIERS, TIERS, 3, None)
    with MemoryClient(server.uri, bob_token) as bob:
        [memory_id] = bob.remember("bob's note")
        assert bob.tenant == "bob"
    result = CliRunner().invoke(
        main, ["get", memory_id, "--server", server.uri, "--token", bob_token, "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["id"] == memory_id
    with MemoryClient(server.uri, server.token) as owner:
        assert owner.tenant == "default" and owner.get(memory_id) == []
    with MemoryClient(server.uri, server.token, tenant="bob") as owner:
        assert [m.id for m in owner.get(memory_id)] == [memory_id]
    with MemoryClient(server.uri, bob_token, tenant="alice") as lost:
        with pytest.raises(PermissionDeniedError, match="--tenant bob") as excinfo:
            lost.remember("a note for alice")
        assert "tenant='bob'" in excinfo.value.message


# -- 8. a memory this side cannot open does not sink the others ------------------------------


def test_an_unopenable_private_memory_is_marked_not_fatal(server, tmp_path: Path) -> None:
    with MemoryClient(server.uri, server.token) as mem:
        [plain] = mem.remember("a public note", privacy=1)
        [sealed] = mem.remember("the vault code is 0451", privacy=3)
    with MemoryClient(server.uri, server.token, keys=KeyStore(tmp_path / "other")) as stranger:
        with pytest.warns(UnopenedMemoryWarning, match=sealed) as caught:
            memories = stranger.get([plain, sealed])
        assert [(m.id, m.text, m.unopened) for m in memories] == [
            (plain, "a public note", None),
            (sealed, "", "KEY_MISSING"),
        ]
        assert caught[0].message.ids == [sealed]
        with pytest.warns(UnopenedMemoryWarning, match=sealed):
            table = stranger.scan("working")
        texts = dict(zip(table["id"].to_pylist(), table["text"].to_pylist(), strict=True))
        assert texts[plain] == "a public note" and texts[sealed] is None


# -- 9. the quick start's secrets are not committed --------------------------------------------


def test_the_quick_start_data_directory_is_git_ignored() -> None:
    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    assert "--data ./aimem-data" in readme  # the directory the quick start names
    for path in ("aimem-data/token", "aimem-data/signing.key"):
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=root, check=False)
        assert ignored.returncode == 0, path
