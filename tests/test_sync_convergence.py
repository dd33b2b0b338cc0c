"""Sync converges: a star of two devices and a cloud, random writes, deletes, syncs and cut links.

Rules: remember (any replica, working only on devices), update and forget an id the
replica knows, sync a device (or dry-run), sync while writes land, sync through
proxies with one link cut after a random number of bytes, and move a server's
clock (d2 starts an hour behind, the cloud ten minutes ahead).

The stateful test keeps a model of every acknowledged write (id -> versions
``(hlc, origin, content_hash | tombstone)`` from the servers' acks) and, after
a final quiet round (D1<->C, D2<->C, D1<->C), checks that all three replicas
hold the same live records, that each id's survivor is the model's winner
(the highest ``(hlc, origin)``), that a tombstoned winner is live nowhere and
that working memories never reach the cloud. After every step it checks the
cheap things: every stored row is an acknowledged version, ids are unique,
and no replica's version of an id ever goes back.

Three servers are started once per module; each Hypothesis example works in
a fresh tenant, so examples are isolated without restarts.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.flight as flight
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from support.proxy import DOWN, UP, CutProxy
from support.wire import action, batch_of, put, record_columns

from aios_memory.client import MemoryClient
from aios_memory.flight_server import RunningServer, ServerSettings, start_server
from aios_memory.schemas import AiosMemoryError, IdsRequest, TierPolicyError, decode_error
from aios_memory.sync import FlightReplica, SyncReport, sync_once

TOKEN = "sync-token"
SYNCED = ("long_term", "shared")
DEVICES = ("d1", "d2")
NODES = (*DEVICES, "cloud")
HOUR_MS = 3_600_000
# Skews up to an hour: d2 runs an hour behind, the cloud ten minutes ahead.
OFFSETS_MS = {"d1": 0, "d2": -HOUR_MS, "cloud": 600_000}
_texts = itertools.count()


# -- the cluster ------------------------------------------------------------------------------


@dataclass
class Node:
    """One server of the star, its replica id and a cut-able proxy in front of it."""

    name: str
    running: RunningServer
    replica_id: str
    proxy: CutProxy

    @property
    def uri(self) -> str:
        return self.running.uri


@contextlib.contextmanager
def cluster_of(base: Path, offsets: dict[str, int] = OFFSETS_MS) -> Iterator[dict[str, Node]]:
    """d1, d2 (devices) and cloud, each with its clock offset and a proxy."""
    with contextlib.ExitStack() as stack:
        nodes = {}
        for name in NODES:
            running = stack.enter_context(
                start_server(
                    ServerSettings(
                        data_dir=base / name,
                        port=0,
                        token=TOKEN,
                        embedder="none",
                        checkpoint_seconds=0,
                        role="cloud" if name == "cloud" else "device",
                        clock_offset_ms=offsets[name],
                    )
                )
            )
            with MemoryClient(running.uri, TOKEN, timeout=10) as client:
                replica_id = client.health()["replica_id"]
            proxy = stack.enter_context(CutProxy.to_uri(running.uri, lifetime=3600))
            nodes[name] = Node(name, running, replica_id, proxy)
        yield nodes


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Node]]:
    with cluster_of(tmp_path_factory.mktemp("star")) as nodes:
        yield nodes


def set_clock_offset(node: Node, offset_ms: int) -> None:
    """Skew a running server's wall clock, as ``clock_offset_ms`` does at start.

    Reaches into the store's ``HybridClock``: settings are frozen once a server runs.
    """
    node.running.store.clock._wall_ms = lambda: int(time.time() * 1000) + offset_ms


def sync(
    device: Node, cloud: Node, tenant: str, *, via_proxy: bool = False, dry_run: bool = False
) -> SyncReport:
    """One round device<->cloud (through their proxies if asked); replicas closed after."""
    local_uri = device.proxy.uri if via_proxy else device.uri
    cloud_uri = cloud.proxy.uri if via_proxy else cloud.uri
    with (
        FlightReplica(local_uri, TOKEN, timeout=30) as local,
        FlightReplica(cloud_uri, TOKEN, timeout=30) as hub,
    ):
        return sync_once(local, hub, tenant=tenant, dry_run=dry_run)


def quiet_round(nodes: dict[str, Node], tenant: str) -> None:
    for name in ("d1", "d2", "d1"):
        sync(nodes[name], nodes["cloud"], tenant)


def settle(nodes: dict[str, Node], tenant: str, max_rounds: int = 16) -> int:
    """Quiet rounds until every synced tombstone is collected and rounds move nothing.

    No live record may move any more. A tombstone crosses once more in the round
    in which the hub settles it (the device learns the new horizon only when that
    round finishes), so tombstones may move until they are collected everywhere.
    Returns the number of rounds it took.
    """
    idle = 0
    for done in range(1, max_rounds + 1):
        report = sync(nodes[DEVICES[done % 2]], nodes["cloud"], tenant)
        assert report.sent == report.tombstones_sent, report.to_json()
        assert report.received == report.tombstones_received, report.to_json()
        idle = idle + 1 if report.sent == report.received == 0 else 0
        if idle >= 2 and not any(
            r["deleted"] and r["tier"] in SYNCED
            for node in nodes.values()
            for r in rows_of(node, tenant)
        ):
            return done
    raise AssertionError(f"tombstones still moving or uncollected after {max_rounds} rounds")


def write(
    node: Node, tenant: str, ids: list[str], texts: list[str], tier: str
) -> list[tuple[str, int]]:
    """A raw put of ``ids`` with hlc 0 (the server versions it); ``(id, hlc)`` from the acks."""
    columns = record_columns(texts, tier=tier)
    columns["id"], columns["tenant"] = list(ids), [tenant] * len(ids)
    acks = put(node.uri, TOKEN, [batch_of(columns)])
    return [(i, h) for ack in acks for i, h in zip(ack.ids, ack.hlcs, strict=True)]


def content_hashes(texts: list[str], tier: str) -> list[bytes]:
    return record_columns(texts, tier=tier)["content_hash"]


def forget(node: Node, tenant: str, ids: list[str]) -> list[tuple[str, int]]:
    """The forget action; ``(id, hlc)`` of each tombstone written (ids live on ``node``)."""
    body = json.loads(
        action(node.uri, TOKEN, "forget", IdsRequest(tenant=tenant, ids=ids).to_bytes())
    )
    assert body["forgotten"] == len(body["ids"]) == len(body["hlcs"])
    return list(zip(body["ids"], body["hlcs"], strict=True))


def rows_of(node: Node, tenant: str) -> list[dict[str, Any]]:
    """Every stored row of ``tenant`` on ``node``, tombstones included."""
    with MemoryClient(node.uri, TOKEN, timeout=30, tenant=tenant) as client:
        table = client.scan(include_deleted=True)
    return table.select(["id", "tier", "hlc", "origin", "content_hash", "deleted"]).to_pylist()


def live_set(rows: list[dict[str, Any]], tiers: tuple[str, ...] = SYNCED) -> set[tuple]:
    return {
        (r["id"], r["tier"], r["hlc"], r["origin"], r["content_hash"])
        for r in rows
        if not r["deleted"] and r["tier"] in tiers
    }


# -- the model --------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Version:
    """One acknowledged version; ``content_hash`` None is a tombstone."""

    hlc: int
    origin: str
    content_hash: bytes | None = None
    tier: str = ""

    @property
    def deleted(self) -> bool:
        return self.content_hash is None

    @property
    def key(self) -> tuple[int, str]:
        return self.hlc, self.origin


class Model:
    """Every acknowledged write, per id."""

    def __init__(self) -> None:
        self.versions: dict[str, list[Version]] = {}
        self.tier: dict[str, str] = {}  # the tier an id was created in
        self.home: dict[str, str] = {}  # working ids: the device that holds them

    def add(self, memory_id: str, version: Version) -> None:
        self.versions.setdefault(memory_id, []).append(version)

    def winner(self, memory_id: str) -> Version:
        return max(self.versions[memory_id], key=lambda v: v.key)

    def known(self, memory_id: str, row: dict[str, Any]) -> bool:
        """Whether a stored row is one of the acknowledged versions of its id."""
        for v in self.versions.get(memory_id, ()):
            if v.key == (row["hlc"], row["origin"]):
                return v.deleted == row["deleted"] and (
                    v.deleted or (v.content_hash == row["content_hash"] and v.tier == row["tier"])
                )
        return False

    def synced_ids(self) -> list[str]:
        return sorted(i for i, t in self.tier.items() if t in SYNCED)

    def working_ids(self) -> list[str]:
        return sorted(i for i, t in self.tier.items() if t == "working")


def check_valid(model: Model, node: Node, rows: list[dict[str, Any]]) -> None:
    """A store after anything (a cut round included): unique ids, only acknowledged versions."""
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), f"{node.name} holds an id twice"
    for row in rows:
        assert model.known(row["id"], row), f"{node.name} holds a version never acknowledged: {row}"
    if node.name == "cloud":
        strays = [r for r in rows if r["tier"] not in SYNCED]
        assert not strays, f"a device-only tier reached the cloud: {strays}"


def check_converged(model: Model, nodes: dict[str, Node], tenant: str) -> None:
    """After a quiet round: same live records everywhere, each id's survivor is its winner."""
    rows = {name: rows_of(node, tenant) for name, node in nodes.items()}
    for name, node in nodes.items():
        check_valid(model, node, rows[name])
    live = {name: live_set(r) for name, r in rows.items()}
    assert live["d1"] == live["cloud"], "d1 and the cloud differ after a quiet round"
    assert live["d2"] == live["cloud"], "d2 and the cloud differ after a quiet round"
    live_ids = {entry[0]: entry for entry in live["cloud"]}
    for memory_id in model.synced_ids():
        won = model.winner(memory_id)
        if won.deleted:
            assert memory_id not in live_ids, f"{memory_id} was forgotten last but is live"
        else:
            assert live_ids.get(memory_id) == (
                memory_id,
                won.tier,
                won.hlc,
                won.origin,
                won.content_hash,
            ), f"{memory_id}: not its winner"
    assert set(live_ids) <= set(model.synced_ids())
    for memory_id in model.working_ids():
        home = model.home[memory_id]
        won = model.winner(memory_id)
        for name in NODES:
            found = [r for r in rows[name] if r["id"] == memory_id and not r["deleted"]]
            if name == home and not won.deleted:
                assert [(r["hlc"], r["origin"]) for r in found] == [won.key]
            else:
                assert not found, f"working memory {memory_id} is live on {name}"


# -- the state machine ------------------------------------------------------------------------


class SyncConvergence(RuleBasedStateMachine):
    nodes: dict[str, Node]  # set by the test from the module's cluster

    def __init__(self) -> None:
        super().__init__()
        self.tenant = f"t-{uuid.uuid4().hex[:12]}"
        self.model = Model()
        self.seen: dict[tuple[str, str], tuple[int, str, bool]] = {}
        # Ids each replica wrote or received. A replica writes only ids it knows: ids are
        # random, and a replica the hub never heard of could write below a horizon the
        # hub already collected tombstones under (a documented limit of collection).
        # Dicts as ordered sets: rules pick by position, drawn the same way whatever the
        # replicas hold (a cut round may move more or less), so generation stays stable.
        self.known: dict[str, dict[str, None]] = {name: {} for name in NODES}
        for name, node in self.nodes.items():
            set_clock_offset(node, OFFSETS_MS[name])

    def _versions(
        self, node: Node, acked: list[tuple[str, int]], hashes: list[bytes | None], tiers: list[str]
    ) -> None:
        for (memory_id, hlc), digest, tier in zip(acked, hashes, tiers, strict=True):
            self.model.add(memory_id, Version(hlc, node.replica_id, digest, tier))

    @rule(
        where=st.sampled_from(NODES),
        tier=st.sampled_from(("long_term", "shared", "working")),
        n=st.integers(1, 3),
    )
    def remember(self, where: str, tier: str, n: int) -> None:
        node = self.nodes[where]
        ids = [str(uuid.uuid4()) for _ in range(n)]
        texts = [f"memory {next(_texts)} in {self.tenant}" for _ in ids]
        if where == "cloud" and tier == "working":
            with pytest.raises(flight.FlightError) as refused:
                write(node, self.tenant, ids, texts, tier)
            assert isinstance(decode_error(refused.value.extra_info), TierPolicyError)
            return
        acked = write(node, self.tenant, ids, texts, tier)
        assert [i for i, _ in acked] == ids
        self.known[where].update(dict.fromkeys(ids))
        for memory_id in ids:
            self.model.tier[memory_id] = tier
            if tier == "working":
                self.model.home[memory_id] = where
        self._versions(node, acked, content_hashes(texts, tier), [tier] * n)

    @rule(data=st.data(), where=st.sampled_from(NODES), tier=st.sampled_from(SYNCED))
    def update(self, data: st.DataObject, where: str, tier: str) -> None:
        """Write an id this replica knows again, with new text (maybe moving long_term<->shared)."""
        picked = self._pick(data, where, 1)
        if not picked:
            return
        [memory_id] = picked
        if self.model.tier[memory_id] == "working":
            tier = "working"
        node = self.nodes[where]
        text = f"update {next(_texts)} of {memory_id}"
        acked = write(node, self.tenant, [memory_id], [text], tier)
        self._versions(node, acked, content_hashes([text], tier), [tier])

    @rule(data=st.data(), where=st.sampled_from(NODES))
    def forget(self, data: st.DataObject, where: str) -> None:
        ids = self._pick(data, where, 3)
        if not ids:
            return
        done = forget(self.nodes[where], self.tenant, ids)
        assert {i for i, _ in done} <= set(ids)
        tiers = [self._tier_on(where, i) for i, _ in done]
        self._versions(self.nodes[where], done, [None] * len(done), tiers)

    def _pick(self, data: st.DataObject, where: str, most: int) -> list[str]:
        """Up to ``most`` distinct ids ``where`` knows (positions drawn whatever it holds)."""
        spots = data.draw(
            st.lists(st.integers(0, 2**16), min_size=1, max_size=most), label="positions"
        )
        ids = list(self.known[where])
        return list(dict.fromkeys(ids[i % len(ids)] for i in spots)) if ids else []

    def _tier_on(self, where: str, memory_id: str) -> str:
        rows = [r for r in rows_of(self.nodes[where], self.tenant) if r["id"] == memory_id]
        return rows[0]["tier"]

    @rule(device=st.sampled_from(DEVICES), dry_run=st.sampled_from((False, False, False, True)))
    def sync(self, device: str, dry_run: bool) -> None:
        if not dry_run:
            report = sync(self.nodes[device], self.nodes["cloud"], self.tenant)
            event(f"sync moved records: {bool(report.sent or report.received)}")
            event(f"sync conflicts: {bool(report.conflicts)}")
            return
        before = {n: rows_of(self.nodes[n], self.tenant) for n in (device, "cloud")}
        sync(self.nodes[device], self.nodes["cloud"], self.tenant, dry_run=True)
        assert before == {n: rows_of(self.nodes[n], self.tenant) for n in (device, "cloud")}

    @rule(data=st.data(), device=st.sampled_from(DEVICES), where=st.sampled_from(NODES))
    def sync_while_writing(self, data: st.DataObject, device: str, where: str) -> None:
        """A round runs while ``where`` takes new memories, an update and a delete."""
        failed: list[BaseException] = []

        def run() -> None:
            try:
                sync(self.nodes[device], self.nodes["cloud"], self.tenant)
            except BaseException as exc:  # reported below, on the test's thread
                failed.append(exc)

        thread = threading.Thread(target=run, name="sync-round", daemon=True)
        thread.start()
        self.remember(where, "long_term", 2)
        self.update(data, where, "shared")
        self.forget(data, where)
        thread.join(timeout=60)
        assert not thread.is_alive() and not failed, failed

    @rule(where=st.sampled_from(NODES), offset_ms=st.integers(-HOUR_MS, HOUR_MS))
    def skew_clock(self, where: str, offset_ms: int) -> None:
        """Move a server's wall clock (its hybrid clock never goes back, only its source)."""
        set_clock_offset(self.nodes[where], offset_ms)

    @rule(
        device=st.sampled_from(DEVICES),
        link=st.sampled_from(("local", "cloud")),
        direction=st.sampled_from((UP, DOWN)),
        nbytes=st.one_of(st.integers(0, 400), st.integers(400, 12_000)),
    )
    def sync_cut(self, device: str, link: str, direction: str, nbytes: int) -> None:
        """A round through proxies, one link cut after ``nbytes``: an error, both stores valid."""
        proxy = self.nodes[device if link == "local" else "cloud"].proxy
        proxy.cut_after(nbytes, direction)
        try:
            sync(self.nodes[device], self.nodes["cloud"], self.tenant, via_proxy=True)
            event("cut round: finished")
        except AiosMemoryError as exc:
            event(f"cut round: {type(exc).__name__}")
        finally:
            cut = not proxy.disarm()
        if cut:  # a cut after the round's last byte may still let it finish
            for name in (device, "cloud"):
                check_valid(self.model, self.nodes[name], rows_of(self.nodes[name], self.tenant))

    @invariant()
    def stores_are_valid_and_never_go_back(self) -> None:
        for name, node in self.nodes.items():
            rows = rows_of(node, self.tenant)
            check_valid(self.model, node, rows)
            present = {r["id"]: r for r in rows}
            for (where, memory_id), (hlc, origin, deleted) in list(self.seen.items()):
                if where != name:
                    continue
                row = present.get(memory_id)
                if row is not None:
                    assert (row["hlc"], row["origin"]) >= (hlc, origin), (
                        f"{name}: {memory_id} went back to an older version"
                    )
                elif not deleted:  # a live row can only go by a newer tombstone, then collected
                    assert any(
                        v.deleted and v.key > (hlc, origin) for v in self.model.versions[memory_id]
                    ), f"{name}: live {memory_id} vanished"
            for memory_id, row in present.items():
                self.seen[(name, memory_id)] = (row["hlc"], row["origin"], row["deleted"])
            self.known[name].update(dict.fromkeys(present))

    def teardown(self) -> None:
        if sys.exc_info()[0] is not None:
            return  # a step failed already; report that, not a consequence of it
        quiet_round(self.nodes, self.tenant)
        check_converged(self.model, self.nodes, self.tenant)
        dead = [i for i in self.model.synced_ids() if self.model.winner(i).deleted]
        event(f"forgotten winners: {min(len(dead), 3)}+")
        origins = [len({v.origin for v in vs}) for vs in self.model.versions.values()]
        event(f"an id written on several replicas: {max(origins, default=0) > 1}")
        rounds = settle(self.nodes, self.tenant)
        event(f"rounds to collect every tombstone: {rounds}")
        check_converged(self.model, self.nodes, self.tenant)


@pytest.mark.slow
def test_sync_converges_under_random_writes_deletes_and_cuts(cluster: dict[str, Node]) -> None:
    SyncConvergence.nodes = cluster
    run_state_machine_as_test(
        SyncConvergence,
        settings=settings(
            max_examples=20,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


# -- scenarios ----------------------------------------------------------------------------------


@pytest.fixture
def star(tmp_path: Path) -> Iterator[dict[str, Node]]:
    """A fresh d1 (on time), d2 (an hour behind) and cloud (ten minutes ahead)."""
    with cluster_of(tmp_path) as nodes:
        yield nodes


def version_on(node: Node, tenant: str, memory_id: str) -> tuple[int, str, bool] | None:
    rows = [r for r in rows_of(node, tenant) if r["id"] == memory_id]
    assert len(rows) <= 1
    return (rows[0]["hlc"], rows[0]["origin"], rows[0]["deleted"]) if rows else None


def shared_memory(nodes: dict[str, Node], tenant: str) -> str:
    """One long_term memory written on d1 and synced to the cloud and d2."""
    memory_id = str(uuid.uuid4())
    write(nodes["d1"], tenant, [memory_id], ["Ada's flat is on the third floor"], "long_term")
    quiet_round(nodes, tenant)
    assert all(version_on(n, tenant, memory_id) for n in nodes.values())
    return memory_id


@pytest.mark.parametrize("deleter", DEVICES)
@pytest.mark.parametrize("wins", ["delete", "update"])
def test_a_delete_on_one_device_while_the_other_updates_resolves_by_hlc_everywhere(
    star: dict[str, Node], deleter: str, wins: str
) -> None:
    """The device whose clock runs two hours ahead writes the higher hlc and wins everywhere."""
    tenant, updater = "scenario", "d2" if deleter == "d1" else "d1"
    memory_id = shared_memory(star, tenant)
    set_clock_offset(star[deleter if wins == "delete" else updater], 2 * HOUR_MS)
    [(_, tombstone)] = forget(star[deleter], tenant, [memory_id])
    [(_, update)] = write(
        star[updater], tenant, [memory_id], ["moved to the fifth floor"], "long_term"
    )
    quiet_round(star, tenant)
    expected = max(
        (tombstone, star[deleter].replica_id, True), (update, star[updater].replica_id, False)
    )
    assert expected[2] == (wins == "delete")
    for node in star.values():
        assert version_on(node, tenant, memory_id) in (expected, None)
    live = [r for node in star.values() for r in rows_of(node, tenant) if not r["deleted"]]
    if wins == "delete":
        assert not live
    else:
        with MemoryClient(star["cloud"].uri, TOKEN, tenant=tenant) as cloud:
            assert [m.text for m in cloud.get(memory_id)] == ["moved to the fifth floor"]
    settle(star, tenant)  # and once collected, the delete stays a delete
    for node in star.values():
        assert version_on(node, tenant, memory_id) == (None if expected[2] else expected)


@pytest.mark.parametrize("same_clock", [False, True], ids=["skewed", "same-millisecond"])
def test_the_same_id_written_on_both_devices_keeps_the_highest_version_everywhere(
    star: dict[str, Node], same_clock: bool
) -> None:
    """Concurrent updates: the highest (hlc, origin) wins; with equal hlcs, the origin decides."""
    tenant = "scenario"
    memory_id = shared_memory(star, tenant)
    if same_clock:  # both wall clocks stopped at the same millisecond, ahead of every hlc
        frozen = int(time.time() * 1000) + 2 * HOUR_MS
        for name in DEVICES:
            star[name].running.store.clock._wall_ms = lambda: frozen
    acked = {}
    for name in DEVICES:
        [(_, hlc)] = write(star[name], tenant, [memory_id], [f"written on {name}"], "shared")
        acked[name] = (hlc, star[name].replica_id)
    if same_clock:
        assert acked["d1"][0] == acked["d2"][0]
    winner = max(DEVICES, key=lambda name: acked[name])
    quiet_round(star, tenant)
    for node in star.values():
        assert version_on(node, tenant, memory_id) == (*acked[winner], False)
        with MemoryClient(node.uri, TOKEN, tenant=tenant) as client:
            [memory] = client.get(memory_id)
            assert (memory.text, memory.tier) == (f"written on {winner}", "shared")
    report = sync(star["d1"], star["cloud"], tenant)
    assert report.sent == report.received == 0


def test_a_device_joining_with_a_clock_behind_the_horizon_keeps_its_deletes(
    star: dict[str, Node],
) -> None:
    """Found by the state machine: d2 joined after collection began, an hour behind; its
    delete was born below the hub's horizon, counted as settled, never sent, then purged."""
    tenant, d1, d2, hub = "scenario", star["d1"], star["d2"], star["cloud"]
    memory_id = str(uuid.uuid4())
    write(d1, tenant, [memory_id], ["Ada's old phone number"], "long_term")
    sync(d1, hub, tenant)
    assert sync(d1, hub, tenant).horizon > 0  # d1 is the only peer: collection may begin
    sync(d2, hub, tenant)  # d2 joins, an hour behind
    [(_, tombstone)] = forget(d2, tenant, [memory_id])
    quiet_round(star, tenant)
    quiet_round(star, tenant)
    for name, node in star.items():
        assert version_on(node, tenant, memory_id) in (None, (tombstone, d2.replica_id, True)), (
            f"{name} still holds the memory d2 forgot"
        )


def seed_both(nodes: dict[str, Node], tenant: str, n: int) -> Model:
    """``n`` memories on d1 and ``n // 2`` on the cloud, forty of d1's forgotten; the model."""
    model = Model()
    for where, count in (("d1", n), ("cloud", n // 2)):
        ids = [str(uuid.uuid4()) for _ in range(count)]
        texts = [f"{where} memory {i} of {tenant}" for i in range(count)]
        node = nodes[where]
        for (memory_id, hlc), digest in zip(
            write(node, tenant, ids, texts, "long_term"),
            content_hashes(texts, "long_term"),
            strict=True,
        ):
            model.tier[memory_id] = "long_term"
            model.add(memory_id, Version(hlc, node.replica_id, digest, "long_term"))
    for memory_id, hlc in forget(nodes["d1"], tenant, list(model.tier)[:40]):
        model.add(memory_id, Version(hlc, nodes["d1"].replica_id, None, "long_term"))
    return model


@pytest.mark.slow
@pytest.mark.parametrize("link", ["local", "cloud"])
@pytest.mark.parametrize("direction", [UP, DOWN])
def test_a_round_cut_at_any_byte_leaves_both_stores_valid_and_the_next_round_finishes(
    cluster: dict[str, Node], link: str, direction: str
) -> None:
    d1, hub = cluster["d1"], cluster["cloud"]
    proxy = d1.proxy if link == "local" else hub.proxy
    probe = f"probe-{uuid.uuid4().hex[:8]}"
    seed_both(cluster, probe, 300)
    before = proxy.relayed[direction]
    sync(d1, hub, probe, via_proxy=True)
    total = proxy.relayed[direction] - before
    for fraction in (0.0, 0.02, 0.1, 0.3, 0.5, 0.7, 0.9):
        tenant = f"cut-{uuid.uuid4().hex[:8]}"
        model = seed_both(cluster, tenant, 300)
        proxy.cut_after(int(total * fraction), direction)
        try:
            sync(d1, hub, tenant, via_proxy=True)
            finished = True
        except AiosMemoryError:
            finished = False
        cut = not proxy.disarm()
        # At byte 0 gRPC may retry the call on a new connection (nothing reached the server).
        assert cut and (fraction == 0 or not finished)
        for node in (d1, hub):
            check_valid(model, node, rows_of(node, tenant))
        sync(d1, hub, tenant)
        assert live_set(rows_of(d1, tenant)) == live_set(rows_of(hub, tenant))
        assert len(live_set(rows_of(hub, tenant))) == 300 + 150 - 40
