"""Sync scenarios between real servers on loopback, seeded as in negentropy's tests.

Only on one side, only on the other, interleaved, identical; updates on both
sides; a delete racing an update; tiers that must not travel; tombstones
collected only once every known replica has them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow.flight as flight
import pytest
from support.wire import batch_of, put, record_columns, scan_all

from aios_memory.client import MemoryClient
from aios_memory.flight_server import RunningServer
from aios_memory.schemas import TierPolicyError, decode_error
from aios_memory.sync import FlightReplica, SyncReport, sync_once

HOUR_MS = 3_600_000


@pytest.fixture
def device(start: Callable[..., Any]) -> RunningServer:
    return start("device")


@pytest.fixture
def cloud(start: Callable[..., Any]) -> RunningServer:
    return start("cloud", role="cloud")


def sync(local: RunningServer, remote: RunningServer, **options: Any) -> SyncReport:
    with FlightReplica(local.uri, local.token) as a, FlightReplica(remote.uri, remote.token) as b:
        return sync_once(a, b, **options)


def client(server: RunningServer) -> MemoryClient:
    return MemoryClient(server.uri, server.token)


def live(server: RunningServer, tiers: tuple[str, ...] = ("long_term", "shared")) -> set[tuple]:
    """(id, hlc, origin, content_hash, payload) of every live record in ``tiers``."""
    table = scan_all(server.uri, server.token, include_deleted=False)
    rows = table.select(["id", "tier", "hlc", "origin", "content_hash", "payload"]).to_pylist()
    return {
        (r["id"], r["hlc"], r["origin"], r["content_hash"], r["payload"])
        for r in rows
        if r["tier"] in tiers
    }


def rows_of(server: RunningServer, memory_id: str) -> list[dict[str, Any]]:
    table = scan_all(server.uri, server.token, include_deleted=True)
    return [r for r in table.to_pylist() if r["id"] == memory_id]


def write(server: RunningServer, memory_id: str, text: str, tier: str = "long_term") -> int:
    """Write ``text`` as a new version of ``memory_id``; returns the hlc the server gave it."""
    columns = record_columns([text], tier=tier)
    columns["id"] = [memory_id]
    return put(server.uri, server.token, [batch_of(columns)])[0].hlcs[0]


def remember(server: RunningServer, n: int, prefix: str, tier: str = "long_term") -> list[str]:
    with client(server) as mem:
        return mem.remember([f"{prefix} memory number {i}" for i in range(n)], tier=tier)


# -- negentropy's scenarios ----------------------------------------------------------------


def test_only_on_the_device_travels_to_the_cloud_and_a_rerun_sends_nothing(device, cloud):
    remember(device, 300, "device")
    first = sync(device, cloud)
    assert (first.sent, first.received, first.tombstones_sent) == (300, 0, 0)
    assert live(cloud) == live(device) and len(live(cloud)) == 300
    again = sync(device, cloud)
    assert (again.sent, again.received, again.round_trips) == (0, 0, 1)
    assert again.bytes_sent + again.bytes_received == again.reconcile_bytes


def test_only_on_the_cloud_travels_to_the_device(device, cloud):
    remember(cloud, 200, "cloud", tier="shared")
    report = sync(device, cloud)
    assert (report.sent, report.received) == (0, 200)
    assert live(device) == live(cloud) and len(live(device)) == 200


def test_interleaved_sets_meet_in_the_union(device, cloud):
    remember(device, 500, "both")
    sync(device, cloud)
    remember(device, 40, "device")
    remember(cloud, 30, "cloud")
    report = sync(device, cloud)
    assert (report.sent, report.received) == (40, 30)
    assert live(device) == live(cloud) and len(live(device)) == 570


def test_identical_sets_exchange_only_fingerprints(device, cloud):
    remember(device, 5000, "same")
    sync(device, cloud)
    report = sync(device, cloud)
    assert (report.sent, report.received, report.round_trips) == (0, 0, 1)
    assert report.reconcile_bytes < 2048, "identical sets must cost one small message each way"


def test_payloads_travel_as_stored(device, cloud):
    text = "a long memory that compresses well " * 20
    [memory_id] = client(device).remember([text], tier="long_term")
    sync(device, cloud)
    [there] = rows_of(cloud, memory_id)
    [here] = rows_of(device, memory_id)
    assert there["codec"] == "zstd" and there["payload"] == here["payload"]
    assert (there["hlc"], there["origin"]) == (here["hlc"], here["origin"])


# -- conflicts -----------------------------------------------------------------------------


def test_updates_on_both_sides_keep_the_later_version_on_both(start):
    device = start("device")
    cloud = start("cloud", role="cloud", clock_offset_ms=HOUR_MS)  # the cloud's clock is ahead
    [memory_id] = remember(device, 1, "shared")
    sync(device, cloud)
    write(device, memory_id, "device's edit")
    cloud_hlc = write(cloud, memory_id, "cloud's edit")
    report = sync(device, cloud)
    assert report.conflicts == 1
    for server in (device, cloud):
        [row] = rows_of(server, memory_id)
        assert (row["hlc"], row["payload"]) == (cloud_hlc, b"cloud's edit")
    assert live(device) == live(cloud)


@pytest.mark.parametrize("later", ["delete", "update"])
def test_a_delete_racing_an_update_resolves_the_same_on_both(start, later):
    # The device's clock is an hour behind or ahead: whichever version has the higher hlc wins.
    skew = -HOUR_MS if later == "update" else HOUR_MS
    device = start("device", clock_offset_ms=skew)
    cloud = start("cloud", role="cloud")
    [memory_id] = remember(device, 1, "racy")
    sync(device, cloud)
    assert client(device).forget(memory_id) == 1
    write(cloud, memory_id, "edited on the cloud")
    sync(device, cloud)
    for server in (device, cloud):
        [row] = rows_of(server, memory_id)
        assert row["deleted"] is (later == "delete")
    assert live(device) == live(cloud)


# -- tiers ---------------------------------------------------------------------------------


def test_core_and_working_never_leave_the_device(device, cloud):
    remember(device, 3, "private", tier="core")
    remember(device, 3, "scratch", tier="working")
    remember(device, 3, "keep", tier="long_term")
    report = sync(device, cloud)
    assert report.tiers == ["long_term", "shared"] and report.sent == 3
    tiers = set(scan_all(cloud.uri, cloud.token).column("tier").to_pylist())
    assert tiers == {"long_term"}


def test_asking_for_a_tier_that_does_not_sync_is_refused(device, cloud):
    remember(device, 2, "private", tier="core")
    with pytest.raises(TierPolicyError, match="--sync-tier core"):
        sync(device, cloud, tiers=["core"])
    assert scan_all(cloud.uri, cloud.token).num_rows == 0


def test_the_cloud_refuses_core_even_when_the_device_offers_it(start):
    device = start("device", sync_tiers=("core", "long_term", "shared"))
    cloud = start("cloud", role="cloud")
    remember(device, 2, "private", tier="core")
    with pytest.raises(TierPolicyError, match="core"):
        sync(device, cloud)
    assert scan_all(cloud.uri, cloud.token).num_rows == 0
    assert sync(device, cloud, tiers=["long_term", "shared"]).sent == 0


def test_a_memory_cannot_move_from_a_synced_tier_to_a_local_one(device):
    [memory_id] = remember(device, 1, "kept")
    with pytest.raises(flight.FlightServerError) as refused:
        write(device, memory_id, "now private", tier="core")
    error = decode_error(refused.value.extra_info)
    assert isinstance(error, TierPolicyError) and "Forget it" in error.message
    [row] = rows_of(device, memory_id)
    assert row["tier"] == "long_term"


def test_a_dry_run_reports_the_difference_and_changes_nothing(device, cloud):
    remember(device, 25, "device")
    remember(cloud, 7, "cloud")
    before = (scan_all(device.uri, device.token), scan_all(cloud.uri, cloud.token))
    report = sync(device, cloud, dry_run=True)
    assert (report.dry_run, report.sent, report.received) == (True, 25, 7)
    assert scan_all(device.uri, device.token).equals(before[0])
    assert scan_all(cloud.uri, cloud.token).equals(before[1])


def test_the_shared_tier_merges_writes_of_several_agents(start):
    laptop, phone, cloud = start("laptop"), start("phone"), start("cloud", role="cloud")
    for name, server in (("laptop", laptop), ("phone", phone), ("cloud", cloud)):
        with MemoryClient(server.uri, server.token) as mem:
            mem.remember([f"{name} note {i}" for i in range(10)], tier="shared", agent=name)
    for local in (laptop, phone, laptop):
        sync(local, cloud)
    assert live(laptop) == live(phone) == live(cloud) and len(live(cloud)) == 30


# -- tombstones ----------------------------------------------------------------------------


def _tombstone_ids(server: RunningServer) -> set[str]:
    table = scan_all(server.uri, server.token, include_deleted=True)
    return {r["id"] for r in table.select(["id", "deleted"]).to_pylist() if r["deleted"]}


def test_tombstones_are_collected_only_after_every_known_replica_has_them(start):
    laptop, phone, cloud = start("laptop"), start("phone"), start("cloud", role="cloud")
    ids = remember(laptop, 5, "short lived")
    for local in (laptop, phone):
        sync(local, cloud)
    assert client(laptop).forget(ids[:2]) == 2
    for _ in range(3):  # the phone stays away: the cloud must keep the tombstones
        sync(laptop, cloud)
    assert set(ids[:2]) <= _tombstone_ids(cloud)
    assert {r[0] for r in live(phone)} == set(ids)  # the phone still has them live
    for _ in range(3):
        for local in (phone, laptop):
            sync(local, cloud)
    for server in (laptop, phone, cloud):
        assert not _tombstone_ids(server) & set(ids[:2]), "settled tombstones are collected"
        assert {r[0] for r in live(server)} == set(ids[2:]), "nothing deleted comes back"
    report = sync(phone, cloud)
    assert (report.sent, report.received) == (0, 0)


def test_rounds_over_some_tiers_do_not_settle_tombstones_of_the_others(start):
    laptop, phone, cloud = start("laptop"), start("phone"), start("cloud", role="cloud")
    [memory_id] = remember(laptop, 1, "shared between devices", tier="shared")
    for local in (laptop, phone):
        sync(local, cloud)
    assert client(laptop).forget(memory_id) == 1
    sync(laptop, cloud)
    for _ in range(3):  # the phone only ever syncs long_term: it never receives the tombstone
        sync(phone, cloud, tiers=["long_term"])
        sync(laptop, cloud)
    assert memory_id in _tombstone_ids(cloud), "the cloud must keep what the phone lacks"
    sync(phone, cloud)
    for server in (laptop, phone, cloud):
        assert memory_id not in {r[0] for r in live(server, ("shared",))}


def test_a_new_device_with_a_slow_clock_cannot_delete_below_the_hub_horizon(start):
    laptop = start("laptop")
    phone = start("phone", clock_offset_ms=-HOUR_MS)  # joins late, its clock an hour behind
    cloud = start("cloud", role="cloud")
    [memory_id] = remember(laptop, 1, "old news")
    with client(laptop) as mem:  # a settled tombstone moves the hub's horizon up to now
        [gone] = mem.remember(["settled"], tier="long_term")
        mem.forget(gone)
    for _ in range(3):
        sync(laptop, cloud)
    assert sync(laptop, cloud).horizon > 0
    sync(phone, cloud)
    assert client(phone).forget(memory_id) == 1
    for _ in range(2):
        for local in (phone, laptop):
            sync(local, cloud)
    for server in (laptop, phone, cloud):
        assert memory_id not in {r[0] for r in live(server)}, "the phone's delete was lost"
