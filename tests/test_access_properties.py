"""Hypothesis against the access reference model: forged tickets, descriptors and columns.

Each example draws a token and a request (a scan ticket, a search, a get, a
put with chosen tenant/tier/privacy/readers columns, or bytes that only look
like a ticket) and compares what the server did with what the model in
``test_access`` says it may do. Also: a search cannot find, count or rank by
another tenant's secrets.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow.flight as flight
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.access_model import (
    TENANTS,
    WORD,
    action_json,
    build_world,
    call,
    get_ids,
    may_read,
    may_write,
    scan_ids,
    search_ids,
    write,
)

from aios_memory.schemas import TIERS, PermissionDeniedError, ScanRequest, StatsRequest


@pytest.fixture
def world(start: Any) -> dict[str, Any]:
    return build_world(start)


_TIER = st.sampled_from(TIERS)
_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _view_tiers(tok: Any, tenant: str) -> tuple[str, ...] | None:
    """The tiers the model lets ``tok`` ask about in ``tenant`` (None: denied outright)."""
    if tenant == tok.tenant:
        return tok.tiers
    return ("shared",) if "shared" in tok.tiers else None


def _expected(
    tok: Any, records: dict, tenant: str, tiers: list[str] | None, ids: list[str] | None
) -> set[str] | type:
    allowed_tiers = _view_tiers(tok, tenant)
    if allowed_tiers is None or any(t not in allowed_tiers for t in tiers or []):
        return PermissionDeniedError
    return {
        i
        for i, (t, tier, p, readers) in records.items()
        if t == tenant
        and (tiers is None or tier in tiers)
        and (ids is None or i in ids)
        and may_read(tok, t, tier, p, readers)
    }


def test_forged_requests_match_the_model(world: dict[str, Any]) -> None:
    running, records, tokens = world["server"], world["records"], world["tokens"]
    known = sorted(records)
    tenants = st.sampled_from([*TENANTS, "carol"])

    @_SETTINGS
    @given(
        tok=st.sampled_from(tokens),
        tenant=tenants,
        tiers=st.none() | st.lists(_TIER, min_size=1, max_size=3, unique=True),
        ids=st.none()
        | st.lists(
            st.sampled_from(known) | st.text("0123456789abcdef", min_size=1, max_size=8),
            max_size=12,
            unique=True,
        ),
    )
    def reads(tok: Any, tenant: str, tiers: list[str] | None, ids: list[str] | None) -> None:
        ticket = flight.Ticket(ScanRequest(tenant=tenant, tier=tiers, ids=ids).to_bytes())
        result = call(running.uri, tok.secret, lambda c, o: c.do_get(ticket, o).read_all())
        got = result if isinstance(result, Exception) else set(result.column("id").to_pylist())
        want = _expected(tok, records, tenant, tiers, ids)
        if want is PermissionDeniedError:
            assert isinstance(got, PermissionDeniedError), (tok, tenant, tiers)
        else:
            assert got == want, (tok, tenant, tiers, ids)
        if ids:
            got = get_ids(running.uri, tok.secret, tenant, ids)
            want = _expected(tok, records, tenant, None, ids)
            assert (
                isinstance(got, PermissionDeniedError)
                if want is PermissionDeniedError
                else got == want
            )

    reads()


def test_forged_columns_match_the_model(world: dict[str, Any]) -> None:
    running, tokens = world["server"], world["tokens"]

    @_SETTINGS
    @given(
        tok=st.sampled_from(tokens),
        tenant=st.sampled_from(TENANTS),
        tier=_TIER,
        privacy=st.integers(0, 3),
        readers=st.none()
        | st.lists(
            st.sampled_from(["bob", "alice", "bob/phone"]), min_size=1, max_size=2, unique=True
        ),
    )
    def puts(tok: Any, tenant: str, tier: str, privacy: int, readers: list[str] | None) -> None:
        before = scan_ids(running.uri, running.token, tenant)
        result = write(running.uri, tok.secret, tenant, tier, privacy, "forged", readers)
        after = scan_ids(running.uri, running.token, tenant)
        if readers and tier != "shared":
            assert isinstance(result, Exception) and result.code in (
                "INVALID_VALUE",
                "PERMISSION_DENIED",
            )
            assert after == before
        elif may_write(tok, tenant, tier, privacy):
            assert isinstance(result, list) and after == before | set(result), (tok, tier)
        else:
            assert isinstance(result, PermissionDeniedError), (tok, tenant, tier, privacy)
            assert after == before

    puts()


def test_garbage_tickets_and_descriptors_return_nothing(world: dict[str, Any]) -> None:
    running, tokens = world["server"], world["tokens"]
    valid = json.loads(ScanRequest(tenant="alice").to_bytes())

    @_SETTINGS
    @given(
        tok=st.sampled_from(tokens),
        raw=st.binary(max_size=200)
        | st.builds(
            lambda extra: json.dumps({**valid, **extra}).encode(),
            st.dictionaries(
                st.sampled_from(
                    ["v", "tenant", "tier", "ids", "where", "include_deleted", "since_hlc", "evil"]
                ),
                st.none()
                | st.integers()
                | st.text(max_size=5)
                | st.lists(st.text(max_size=3), max_size=2),
                max_size=3,
            ),
        ),
    )
    def garbage(tok: Any, raw: bytes) -> None:
        ticket = flight.Ticket(raw)
        result = call(running.uri, tok.secret, lambda c, o: c.do_get(ticket, o).read_all())
        if isinstance(result, Exception):
            assert result.code != "INTERNAL", result
            return
        request = ScanRequest.from_bytes(raw)  # the server accepted it: it must parse here too
        tiers = [request.tier] if isinstance(request.tier, str) else request.tier
        want = _expected(tok, world["records"], request.tenant, tiers, request.ids)
        got = set(result.column("id").to_pylist())
        assert want is not PermissionDeniedError and got <= want
        descriptor = flight.FlightDescriptor.for_command(raw)
        info = call(running.uri, tok.secret, lambda c, o: c.get_flight_info(descriptor, o))
        assert not isinstance(info, Exception) or info.code != "INTERNAL"

    garbage()


# -- leakage ------------------------------------------------------------------------------------
def test_a_query_equal_to_another_tenants_secret_finds_nothing_of_theirs(start: Any) -> None:
    from aios_memory.flight_server.auth.tokens import TokenAuthority

    running = start("leak")
    secret_text = "the vault code is 4417 zebra"
    write(running.uri, running.token, "alice", "core", 3, secret_text)
    write(running.uri, running.token, "alice", "shared", 3, secret_text, ["bob"])
    write(running.uri, running.token, "bob", "working", 0, "bob likes zebra crossings")
    bob, _ = TokenAuthority(running.data_dir).create("bob", "app", TIERS, TIERS, 2, None)
    assert search_ids(running.uri, bob, "bob", secret_text) == scan_ids(
        running.uri, running.token, "bob"
    )  # only his own zebra
    assert search_ids(running.uri, bob, "alice", secret_text) == set()


def test_result_counts_do_not_depend_on_data_the_caller_cannot_see(start: Any) -> None:
    from aios_memory.flight_server.auth.tokens import TokenAuthority

    answers = []
    for hidden in (0, 40):
        running = start(f"counts-{hidden}")
        for n in range(6):
            write(
                running.uri, running.token, "alice", "shared", 1, f"{WORD} lunch plan {n}", ["bob"]
            )
        for n in range(hidden):  # alice's secrets, and shared ones not naming bob
            write(
                running.uri,
                running.token,
                "alice",
                "shared" if n % 2 else "core",
                3,
                f"{WORD} lunch plan secret {n}",
                ["carol"] if n % 2 else None,
            )
        bob, _ = TokenAuthority(running.data_dir).create("bob", "app", TIERS, TIERS, 1, None)
        stats = action_json(running.uri, bob, "stats", StatsRequest(tenant="alice").to_bytes())
        found = search_ids(running.uri, bob, "alice", f"{WORD} lunch plan")
        answers.append((len(found), stats["memories"], stats["tiers"]))
    assert answers[0] == answers[1]
    assert answers[0][0] == 6
