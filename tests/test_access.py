"""Access control, checked against the reference model in ``support.access_model``.

Every cell of tenants x clearances x tiers x privacy x operations is run
against a real server through raw Flight calls (no SDK on the read side, so
nothing is filtered on the client): an allowed cell must succeed, a forbidden
one must return nothing of the record and change nothing.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pyarrow.flight as flight
import pytest
from support.access_model import (
    TENANTS,
    WORD,
    action_json,
    build_world,
    get_ids,
    listed_counts,
    may_forget,
    may_sync,
    may_write,
    scan_ids,
    search_ids,
    visible,
    write,
)
from support.wire import batch_of, put, record_columns

from aios_memory.flight_server.auth.audit import AuditLog
from aios_memory.flight_server.auth.tokens import TokenAuthority
from aios_memory.schemas import (
    READERS_KEY,
    TIERS,
    IdsRequest,
    PermissionDeniedError,
    StatsRequest,
    decode_error,
)


@pytest.fixture
def world(start: Any) -> dict[str, Any]:
    return build_world(start)


# -- the matrix -----------------------------------------------------------------------------------
def test_reads_match_the_reference_model(world: dict[str, Any]) -> None:
    running, records = world["server"], world["records"]
    uri, cells = running.uri, 0
    for tok in world["tokens"]:
        for tenant in TENANTS:
            expected = visible(tok, records, tenant)
            foreign_without_shared = tenant != tok.tenant and "shared" not in tok.tiers
            for name, got in (
                ("scan", scan_ids(uri, tok.secret, tenant)),
                ("search", search_ids(uri, tok.secret, tenant)),
                ("get", get_ids(uri, tok.secret, tenant, list(records))),
            ):
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
                want = len(visible(tok, records, tenant, tier))
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
    assert scan_ids(running.uri, tok.secret, "alice", "working") == visible(
        tok, world["records"], "alice", "working"
    )


def test_a_token_that_reads_no_tier_finds_nothing(start: Any) -> None:
    # A write-only token (``aimem token create --tiers ''``): its view admits no tier, which
    # the keyword index once took for "no tier filter" and searched every tier.
    running = start("write-only")
    for tier in TIERS:
        write(running.uri, running.token, "alice", tier, 0, f"{WORD} in {tier}")
    secret, _ = TokenAuthority(running.data_dir).create(
        "alice", "ingest", (), ("working",), 3, None
    )
    assert search_ids(running.uri, secret, "alice") == set()
    assert scan_ids(running.uri, secret, "alice") == set()
    assert isinstance(write(running.uri, secret, "alice", "working", 0, "it may write"), list)


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
            with (
                FlightReplica(device.uri, device.token) as a,
                FlightReplica(hub.uri, tok.secret) as b,
            ):
                try:
                    sync_once(a, b, tenant=tenant, tiers=["long_term", "shared"])
                    outcome: Exception | None = None
                except PermissionDeniedError as exc:
                    outcome = exc
            after = scan_ids(hub.uri, hub.token, tenant)
            if may_sync(tok, tenant, ("long_term", "shared")):
                assert outcome is None and new in after, (tok, tenant)
                pulled = scan_ids(device.uri, device.token, tenant, "shared")
                assert pulled == {
                    i for i, r in world["records"].items() if r[0] == tenant and r[1] == "shared"
                }
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
        "alice", "app", TIERS, TIERS, 3, None
    )
    body, signature = good.split(".")
    claims = json.loads(_unb64(body[len("aimem_") :]))
    forged_body = "aimem_" + _b64(json.dumps({**claims, "c": 3}).encode())
    cases = {
        other: "TOKEN_INVALID",
        f"{forged_body}.{signature}": "TOKEN_INVALID",
        good[:-2] + "AA": "TOKEN_INVALID",
        expired: "TOKEN_EXPIRED",
        "aimem_%%%.%%%": "TOKEN_INVALID",
        "not-the-owner": "UNAUTHENTICATED",
    }
    for secret, code in cases.items():
        result = action_json(running.uri, secret, "whoami", b"")
        assert isinstance(result, Exception) and result.code == code, (secret, result)
    assert action_json(running.uri, good, "whoami", b"")["clearance"] == 1
    authority.revoke(good)  # as `aimem token revoke` does, while the server runs
    result = action_json(running.uri, good, "whoami", b"")
    assert isinstance(result, Exception) and result.code == "TOKEN_REVOKED"
    assert action_json(running.uri, running.token, "health", b"")["status"] == "ok"


def test_denials_and_rights_changes_are_audited_without_payloads(start: Any, tmp_path: Any) -> None:
    from click.testing import CliRunner

    from aios_memory.client.cli import main

    running = start("audit")
    made = CliRunner().invoke(
        main,
        [
            "token",
            "create",
            "--data",
            str(running.data_dir),
            "--tenant",
            "alice",
            "--principal",
            "bot",
            "--tiers",
            "working",
            "--clearance",
            "1",
            "--json",
        ],
    )
    assert made.exit_code == 0, made.output
    secret = json.loads(made.output)["token"]
    assert (
        write(running.uri, secret, "alice", "core", 0, "secret payload 93817").code
        == "PERMISSION_DENIED"
    )
    assert isinstance(action_json(running.uri, "bogus", "stats", b""), Exception)
    revoked = CliRunner().invoke(
        main,
        ["token", "revoke", "--data", str(running.data_dir), json.loads(made.output)["token_id"]],
    )
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
    assert (me["tenant"], me["principal"], me["tiers"], me["write_tiers"], me["clearance"]) == (
        "alice",
        "cal",
        ["working"],
        [],
        2,
    )
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
