"""The access reference model in plain Python, raw Flight calls, and a seeded world.

Written apart from ``schemas.rights`` on purpose: the tests compare the
server with this model, so the model must not be the server's own code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

from aios_memory.flight_server.auth.tokens import TokenAuthority
from aios_memory.schemas import (
    READERS_KEY,
    TIERS,
    IdsRequest,
    ScanRequest,
    SearchRequest,
    StatsRequest,
    decode_error,
)
from support.wire import batch_of, options, put, record_columns

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
    return (
        tenant == tok.tenant
        and tok.clearance == 3
        and all(t in tok.tiers and t in tok.write_tiers for t in tiers)
    )


# -- raw calls ------------------------------------------------------------------------------------
def call(uri: str, secret: str, fn: Any) -> Any:
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
    result = call(uri, secret, lambda c, o: c.do_get(ticket, o).read_all())
    return result if isinstance(result, Exception) else set(result.column("id").to_pylist())


def search_ids(uri: str, secret: str, tenant: str, query: str = WORD) -> set[str] | Exception:
    body = SearchRequest(tenant=tenant, query=query, k=1000, mode="keyword").to_bytes()
    result = call(uri, secret, lambda c, o: next(iter(c.do_action(("search", body), o))).body)
    table = _table(result)
    return table if isinstance(table, Exception) else set(table.column("id").to_pylist())


def get_ids(uri: str, secret: str, tenant: str, ids: list[str]) -> set[str] | Exception:
    body = IdsRequest(tenant=tenant, ids=ids).to_bytes()
    table = _table(call(uri, secret, lambda c, o: next(iter(c.do_action(("get", body), o))).body))
    return table if isinstance(table, Exception) else set(table.column("id").to_pylist())


def action_json(uri: str, secret: str, name: str, body: bytes) -> dict[str, Any] | Exception:
    result = call(uri, secret, lambda c, o: next(iter(c.do_action((name, body), o))).body)
    return result if isinstance(result, Exception) else json.loads(result.to_pybytes())


def listed_counts(uri: str, secret: str, tenant: str) -> dict[str, int] | Exception:
    criteria = StatsRequest(tenant=tenant).to_bytes()
    result = call(uri, secret, lambda c, o: list(c.list_flights(criteria, o)))
    if isinstance(result, Exception):
        return result
    return {ScanRequest.from_bytes(i.descriptor.command).tier: i.total_records for i in result}


def write(
    uri: str,
    secret: str,
    tenant: str,
    tier: str,
    privacy: int,
    text: str,
    readers: list[str] | None = None,
) -> list[str] | Exception:
    columns = record_columns(
        [text], tier=tier, metadata=[{READERS_KEY: readers}] if readers else None
    )
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


def build_world(start: Any) -> dict[str, Any]:
    """A server with one record per tenant x tier x privacy (+ shared ones naming readers)."""
    running = start("acl")
    authority = TokenAuthority(running.data_dir)
    tokens = [
        Token(
            **{
                **t.__dict__,
                "secret": authority.create(
                    t.tenant, t.principal, t.tiers, t.write_tiers, t.clearance, None
                )[0],
            }
        )
        for t in _token_specs()
    ]
    records: dict[str, tuple[str, str, int, list[str]]] = {}
    for tenant in TENANTS:
        for tier in TIERS:
            for privacy in range(4):
                reader_sets = [[]] if tier != "shared" else [[], ["bob"], ["alice", "bob/phone"]]
                for readers in reader_sets:
                    ids = write(
                        running.uri,
                        running.token,
                        tenant,
                        tier,
                        privacy,
                        f"{WORD} {tenant} {tier} p{privacy} r{len(readers)}",
                        readers or None,
                    )
                    assert isinstance(ids, list), ids
                    records[ids[0]] = (tenant, tier, privacy, readers)
    return {"server": running, "tokens": tokens, "records": records}


def visible(tok: Token, records: dict, tenant: str, tier: str | None = None) -> set[str]:
    """Ids of ``tenant``'s seeded records (of ``tier``) the model lets ``tok`` read."""
    return {
        i
        for i, (t, r, p, readers) in records.items()
        if t == tenant and (tier is None or r == tier) and may_read(tok, t, r, p, readers)
    }
