"""Access control, checked against a small reference model written here in plain Python.

Every cell of tenants x clearances x tiers x privacy x operations is run
against a real server through raw Flight calls (no SDK on the read side, so
nothing is filtered on the client): an allowed cell must succeed, a forbidden
one must return nothing of the record and change nothing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from aios_memory.flight_server.audit import AuditLog
from aios_memory.flight_server.tokens import TokenAuthority
from aios_memory.schemas import (
    READERS_KEY,
    TIERS,
    IdsRequest,
    PermissionDeniedError,
    ScanRequest,
    SearchRequest,
    StatsRequest,
    decode_error,
)

from _wire import batch_of, options, put, record_columns

TENANTS = ("alice", "bob")
WORD = "matrixword"


@dataclass(frozen=True)
class Token:
    """A token and the grant the reference model believes it carries."""

    tenant: str
    principal: str
    tiers: tuple[str, ...]
    write_tiers: tuple[str, ...]
    clearance: int
    secret: str = ""


# -- the reference model ------------------------------------------------------------------------
def may_read(tok: Token, tenant: str, tier: str, privacy: int, readers: list[str]) -> bool:
    if privacy > tok.clearance:
        return False
    if tenant == tok.tenant:
        return tier in tok.tiers
    named = tok.tenant in readers or f"{tok.tenant}/{tok.principal}" in readers
    return "shared" in tok.tiers and tier == "shared" and named


def may_write(tok: Token, tenant: str, tier: str, privacy: int) -> bool:
    return tenant == tok.tenant and tier in tok.write_tiers and privacy <= tok.clearance


def may_forget(tok: Token, tenant: str, tier: str, privacy: int) -> bool:
    return may_write(tok, tenant, tier, privacy) and tier in tok.tiers


def may_sync(tok: Token, tenant: str, tiers: tuple[str, ...]) -> bool:
    return (tenant == tok.tenant and tok.clearance == 3
            and all(t in tok.tiers and t in tok.write_tiers for t in tiers))


# -- raw calls ------------------------------------------------------------------------------------
def _call(uri: str, secret: str, fn: Any) -> Any:
    client = flight.FlightClient(uri)
    try:
        return fn(client, options(secret))
    except flight.FlightError as exc:
        error = decode_error(exc.extra_info)
        assert error is not None, f"a Flight error without our code: {exc}"
        return error
    finally:
        client.close()


def _table(result: Any) -> pa.Table | Exception:
    if isinstance(result, Exception):
        return result
    return pa.ipc.open_stream(result).read_all()


def scan_ids(uri: str, secret: str, tenant: str, tier: str | None = None) -> set[str] | Exception:
    ticket = flight.Ticket(ScanRequest(tenant=tenant, tier=tier).to_bytes())
    result = _call(uri, secret, lambda c, o: c.do_get(ticket, o).read_all())
    return result if isinstance(result, Exception) else set(result.column("id").to_pylist())


def search_ids(uri: str, secret: str, tenant: str, query: str = WORD) -> set[str] | Exception:
    body = SearchRequest(tenant=tenant, query=query, k=1000, mode="keyword").to_bytes()
    result = _call(uri, secret, lambda c, o: next(iter(c.do_action(("search", body), o))).body)
    table = _table(result)
    return table if isinstance(table, Exception) else set(table.column("id").to_pylist())


def get_ids(uri: str, secret: str, tenant: str, ids: list[str]) -> set[str] | Exception:
    body = IdsRequest(tenant=tenant, ids=ids).to_bytes()
    table = _table(_call(uri, secret, lambda c, o: next(iter(c.do_action(("get", body), o))).body))
    return table if isinstance(table, Exception) else set(table.column("id").to_pylist())


def action_json(uri: str, secret: str, name: str, body: bytes) -> dict[str, Any] | Exception:
    result = _call(uri, secret, lambda c, o: next(iter(c.do_action((name, body), o))).body)
    return result if isinstance(result, Exception) else json.loads(result.to_pybytes())


def listed_counts(uri: str, secret: str, tenant: str) -> dict[str, int] | Exception:
    criteria = StatsRequest(tenant=tenant).to_bytes()
    result = _call(uri, secret, lambda c, o: list(c.list_flights(criteria, o)))
    if isinstance(result, Exception):
        return result
    return {ScanRequest.from_bytes(i.descriptor.command).tier: i.total_records for i in result}


def write(uri: str, secret: str, tenant: str, tier: str, privacy: int, text: str,
          readers: list[str] | None = None) -> list[str] | Exception:
    columns = record_columns([text], tier=tier,
                             metadata=[{READERS_KEY: readers}] if readers else None)
    columns["tenant"], columns["privacy"] = [tenant], [privacy]
    try:
        acks = put(uri, secret, [batch_of(columns)])
    except flight.FlightError as exc:
        return decode_error(exc.extra_info)
    return [i for ack in acks for i in ack.ids]


# -- fixtures -------------------------------------------------------------------------------------
def _token_specs() -> list[Token]:
    specs = [Token("alice", f"c{c}", TIERS, TIERS, c) for c in range(4)]
    specs += [
        Token("alice", "sync-only", ("long_term", "shared"), ("long_term", "shared"), 3),
        Token("alice", "reader", TIERS, (), 3),
        Token("alice", "working", ("working",), ("working",), 2),
        Token("bob", "phone", TIERS, TIERS, 3),
        Token("bob", "low", ("shared", "core"), ("core",), 1),
        Token("bob", "private", ("core", "working", "long_term"), TIERS, 3),
    ]
    return specs


@pytest.fixture
def world(start: Any) -> dict[str, Any]:
    """A server with one record per tenant x tier x privacy (+ shared ones naming readers)."""
    running = start("acl")
    authority = TokenAuthority(running.data_dir)
    tokens = [Token(**{**t.__dict__, "secret": authority.create(
        t.tenant, t.principal, t.tiers, t.write_tiers, t.clearance, None)[0]})
        for t in _token_specs()]
    records: dict[str, tuple[str, str, int, list[str]]] = {}
    for tenant in TENANTS:
        for tier in TIERS:
            for privacy in range(4):
                reader_sets = [[]] if tier != "shared" else [[], ["bob"], ["alice", "bob/phone"]]
                for readers in reader_sets:
                    ids = write(running.uri, running.token, tenant, tier, privacy,
                                f"{WORD} {tenant} {tier} p{privacy} r{len(readers)}",
                                readers or None)
                    assert isinstance(ids, list), ids
                    records[ids[0]] = (tenant, tier, privacy, readers)
    return {"server": running, "tokens": tokens, "records": records}


def _visible(tok: Token, records: dict, tenant: str, tier: str | None = None) -> set[str]:
    return {i for i, (t, r, p, readers) in records.items() if t == tenant
            and (tier is None or r == tier) and may_read(tok, t, r, p, readers)}


# -- the matrix -----------------------------------------------------------------------------------
def test_reads_match_the_reference_model(world: dict[str, Any]) -> None:
    running, records = world["server"], world["records"]
    uri, cells = running.uri, 0
    for tok in world["tokens"]:
        for tenant in TENANTS:
            expected = _visible(tok, records, tenant)
            foreign_without_shared = tenant != tok.tenant and "shared" not in tok.tiers
            for name, got in (("scan", scan_ids(uri, tok.secret, tenant)),
                              ("search", search_ids(uri, tok.secret, tenant)),
                              ("get", get_ids(uri, tok.secret, tenant, list(records)))):
                if foreign_without_shared:
                    assert isinstance(got, PermissionDeniedError), (tok, tenant, name)
                else:
                    assert got == expected, (tok.principal, tok.tenant, tenant, name)
                cells += len(records)
            counts = listed_counts(uri, tok.secret, tenant)
            stats = action_json(uri, tok.secret, "stats", StatsRequest(tenant=tenant).to_bytes())
            if foreign_without_shared:
                assert isinstance(counts, PermissionDeniedError)
                assert isinstance(stats, PermissionDeniedError)
                continue
            for tier in TIERS:
                want = len(_visible(tok, records, tenant, tier))
                assert counts.get(tier, 0) == want, (tok, tenant, tier)
                if tier in stats["tiers"]:
                    assert stats["tiers"][tier]["memories"] == want
                else:
                    assert want == 0
            assert stats["memories"] == len(expected)
            assert "data_dir_bytes" not in stats  # nothing about the server as a whole
    assert cells > 1000


def test_a_tier_outside_the_token_is_refused_not_emptied(world: dict[str, Any]) -> None:
    running = world["server"]
    tok = next(t for t in world["tokens"] if t.principal == "working")
    assert isinstance(scan_ids(running.uri, tok.secret, "alice", "core"), PermissionDeniedError)
    assert scan_ids(running.uri, tok.secret, "alice", "working") == \
        _visible(tok, world["records"], "alice", "working")


def test_writes_and_forgets_match_the_reference_model(world: dict[str, Any]) -> None:
    running, owner = world["server"], world["server"].token
    before = scan_ids(running.uri, owner, "alice") | scan_ids(running.uri, owner, "bob")
    targets: dict[tuple[str, str, str, int], str] = {}
    for tok in world["tokens"]:
        for tenant in TENANTS:
            for tier in TIERS:
                for privacy in range(4):
                    ids = write(running.uri, owner, tenant, tier, privacy, "forget me")
                    targets[(tok.principal + tok.tenant, tenant, tier, privacy)] = ids[0]
    for tok in world["tokens"]:
        for tenant in TENANTS:
            for tier in TIERS:
                for privacy in range(4):
                    result = write(running.uri, tok.secret, tenant, tier, privacy, "a new one")
                    if may_write(tok, tenant, tier, privacy):
                        assert isinstance(result, list) and len(result) == 1, (tok, tier)
                    else:
                        assert isinstance(result, PermissionDeniedError), (tok, tenant, tier)
                    target = targets[(tok.principal + tok.tenant, tenant, tier, privacy)]
                    body = IdsRequest(tenant=tenant, ids=[target]).to_bytes()
                    done = action_json(running.uri, tok.secret, "forget", body)
                    allowed = may_forget(tok, tenant, tier, privacy)
                    if isinstance(done, Exception):
                        assert not allowed and isinstance(done, PermissionDeniedError)
                    else:
                        assert done["forgotten"] == int(allowed), (tok, tenant, tier, privacy)
                    live = get_ids(running.uri, owner, tenant, [target])
                    assert (target in live) != allowed
    after = scan_ids(running.uri, owner, "alice") | scan_ids(running.uri, owner, "bob")
    assert before <= after  # the seeded records: no forbidden call touched one


def test_rows_for_another_tenant_inside_a_put_refuse_the_whole_put(world: dict[str, Any]) -> None:
    running = world["server"]
    tok = next(t for t in world["tokens"] if t.principal == "phone")  # bob, every right
    columns = record_columns(["mine", "theirs"], tier="working")
    columns["tenant"] = ["bob", "alice"]
    before = scan_ids(running.uri, running.token, "bob")
    with pytest.raises(flight.FlightError) as caught:
        put(running.uri, tok.secret, [batch_of(columns)])
    assert decode_error(caught.value.extra_info).code == "PERMISSION_DENIED"
    assert scan_ids(running.uri, running.token, "bob") == before


def test_sync_needs_whole_tiers_at_full_clearance(world: dict[str, Any], start: Any) -> None:
    from aios_memory.client import MemoryClient
    from aios_memory.sync import FlightReplica, sync_once

    hub = world["server"]
    for number, tok in enumerate(world["tokens"]):
        for tenant in TENANTS:
            device = start(f"device-{number}-{tenant}")
            with MemoryClient(device.uri, device.token, tenant=tenant) as mem:
                [new] = mem.remember([f"from device {number}"], tier="long_term", privacy=1)
            before = scan_ids(hub.uri, hub.token, tenant)
            with FlightReplica(device.uri, device.token) as a, \
                    FlightReplica(hub.uri, tok.secret) as b:
                try:
                    sync_once(a, b, tenant=tenant, tiers=["long_term", "shared"])
                    outcome: Exception | None = None
                except PermissionDeniedError as exc:
                    outcome = exc
            after = scan_ids(hub.uri, hub.token, tenant)
            if may_sync(tok, tenant, ("long_term", "shared")):
                assert outcome is None and new in after, (tok, tenant)
                pulled = scan_ids(device.uri, device.token, tenant, "shared")
                assert pulled == {i for i, r in world["records"].items()
                                  if r[0] == tenant and r[1] == "shared"}
            else:
                assert isinstance(outcome, PermissionDeniedError), (tok, tenant)
                assert after == before
                assert scan_ids(device.uri, device.token, tenant) == {new}


# -- tokens -------------------------------------------------------------------------------------
def test_forged_expired_and_revoked_tokens_are_refused_with_their_codes(start: Any) -> None:
    running = start("tokens")
    authority = TokenAuthority(running.data_dir)
    good, _ = authority.create("alice", "app", TIERS, TIERS, 1, None)
    expired, _ = authority.create("alice", "old", TIERS, TIERS, 1, time.time() - 1)
    other, _ = TokenAuthority(running.data_dir / "elsewhere").create(
        "alice", "app", TIERS, TIERS, 3, None)
    body, signature = good.split(".")
    claims = json.loads(_unb64(body[len("aimem_"):]))
    forged_body = "aimem_" + _b64(json.dumps({**claims, "c": 3}).encode())
    cases = {other: "TOKEN_INVALID", f"{forged_body}.{signature}": "TOKEN_INVALID",
             good[:-2] + "AA": "TOKEN_INVALID", expired: "TOKEN_EXPIRED",
             "aimem_%%%.%%%": "TOKEN_INVALID", "not-the-owner": "UNAUTHENTICATED"}
    for secret, code in cases.items():
        result = action_json(running.uri, secret, "whoami", b"")
        assert isinstance(result, Exception) and result.code == code, (secret, result)
    assert action_json(running.uri, good, "whoami", b"")["clearance"] == 1
    authority.revoke(good)  # as `aimem token revoke` does, while the server runs
    result = action_json(running.uri, good, "whoami", b"")
    assert isinstance(result, Exception) and result.code == "TOKEN_REVOKED"
    assert action_json(running.uri, running.token, "health", b"")["status"] == "ok"


def test_denials_and_rights_changes_are_audited_without_payloads(start: Any, tmp_path: Any
                                                                 ) -> None:
    from click.testing import CliRunner

    from aios_memory.client.cli import main

    running = start("audit")
    made = CliRunner().invoke(main, ["token", "create", "--data", str(running.data_dir),
                                     "--tenant", "alice", "--principal", "bot", "--tiers",
                                     "working", "--clearance", "1", "--json"])
    assert made.exit_code == 0, made.output
    secret = json.loads(made.output)["token"]
    assert write(running.uri, secret, "alice", "core", 0, "secret payload 93817").code \
        == "PERMISSION_DENIED"
    assert isinstance(action_json(running.uri, "bogus", "stats", b""), Exception)
    revoked = CliRunner().invoke(main, ["token", "revoke", "--data", str(running.data_dir),
                                        json.loads(made.output)["token_id"]])
    assert revoked.exit_code == 0, revoked.output
    entries = AuditLog(running.data_dir).entries()
    events = [(e["event"], e["code"]) for e in entries]
    assert ("token-created", None) in events and ("token-revoked", None) in events
    assert ("denied", "PERMISSION_DENIED") in events and ("denied", "UNAUTHENTICATED") in events
    denied = next(e for e in entries if e["code"] == "PERMISSION_DENIED")
    assert denied["principal"] == "alice/bot" and denied["tenant"] == "alice"
    log = (running.data_dir / "audit.log").read_text()
    assert "93817" not in log and secret not in log and secret.split(".")[1] not in log
    assert oct((running.data_dir / "audit.log").stat().st_mode & 0o777) == "0o600"


def test_whoami_reports_the_grant(start: Any) -> None:
    from aios_memory.client import MemoryClient

    running = start("whoami")
    secret, _ = TokenAuthority(running.data_dir).create("alice", "cal", ("working",), (), 2, None)
    with MemoryClient(running.uri, secret, tenant="alice") as mem:
        me = mem.whoami()
    assert (me["tenant"], me["principal"], me["tiers"], me["write_tiers"], me["clearance"]) == \
        ("alice", "cal", ["working"], [], 2)
    with MemoryClient(running.uri, running.token) as owner:
        assert owner.whoami()["owner"] is True


def test_readers_are_only_for_shared_records(world: dict[str, Any]) -> None:
    running = world["server"]
    result = write(running.uri, running.token, "alice", "core", 0, "x", readers=["bob"])
    assert isinstance(result, Exception) and result.code == "INVALID_VALUE"
    columns = record_columns(["x"], tier="shared", metadata=[{READERS_KEY: "bob"}])
    columns["tenant"] = ["alice"]
    with pytest.raises(flight.FlightError) as caught:
        put(running.uri, running.token, [batch_of(columns)])
    assert decode_error(caught.value.extra_info).code == "INVALID_VALUE"


def _b64(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
