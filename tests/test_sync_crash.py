"""kill -9 in the middle of a sync round: real `aimem serve` processes, restarted on their data.

The device holds tens of thousands of records the cloud lacks (or the other
way round), so a round streams for seconds. A thread runs ``sync_once``; the
test polls the receiving server's stats and SIGKILLs it once part of the
records arrived, restarts it on the same data directory and port, syncs again
and checks: what was committed before the kill is still there, both sides hold
the same live records, every acknowledged write is on both, a further round
moves nothing, and both data directories reopen cleanly after a clean stop.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aios_memory.client import MemoryClient
from aios_memory.schemas import AiosMemoryError
from aios_memory.sync import FlightReplica, SyncReport, sync_once

pytestmark = pytest.mark.slow

AIMEM = [sys.executable, "-c", "from aios_memory.client.cli import main; main()"]
TOKEN = "crash-token"
SYNCED = ("long_term", "shared")
SEED_BATCH = 5000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Served:
    """An `aimem serve` process on a fixed port and data directory; restartable."""

    def __init__(self, data: Path, role: str) -> None:
        self.data, self.role, self.port = data, role, free_port()
        self.uri = f"grpc://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self, seconds: float = 60) -> None:
        self.starts += 1
        log = self.data.parent / f"{self.data.name}.{self.starts}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIMEM_")}
        with open(log, "w") as stderr:
            self.process = subprocess.Popen(
                [
                    *AIMEM,
                    "serve",
                    "--data",
                    str(self.data),
                    "--port",
                    str(self.port),
                    "--embedder",
                    "none",
                    "--token",
                    TOKEN,
                    "--role",
                    self.role,
                ],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=env,
            )
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if re.search(r"serving .* on grpc://", log.read_text()):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"`aimem serve` did not start:\n{log.read_text()}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM: a clean stop exits 0."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=60) == 0
        self.process = None

    def client(self) -> MemoryClient:
        return MemoryClient(self.uri, TOKEN, timeout=120)

    def synced_count(self) -> int:
        with self.client() as client:
            tiers = client.stats()["tiers"]
        return sum(tiers[t]["memories"] for t in SYNCED)

    def live(self) -> set[tuple]:
        with self.client() as client:
            table = client.scan(tier=list(SYNCED))
        ids = table.column("id").to_pylist()
        assert len(ids) == len(set(ids)), f"{self.role} holds an id twice"
        return set(
            zip(
                ids,
                *(table.column(c).to_pylist() for c in ("tier", "hlc", "origin", "content_hash")),
                strict=True,
            )
        )

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[dict[str, Served]]:
    pair = {
        "device": Served(tmp_path / "device", "device"),
        "cloud": Served(tmp_path / "cloud", "cloud"),
    }
    try:
        for served in pair.values():
            served.start()
        yield pair
    finally:
        for served in pair.values():
            served.close()


def seed(served: Served, n: int, prefix: str) -> list[str]:
    """``n`` long_term memories (every tenth shared) written through the SDK; their ids."""
    ids: list[str] = []
    with served.client() as client:
        for start in range(0, n, SEED_BATCH):
            texts = [
                f"{prefix} memory {i}: a note long enough to look like one, with words"
                for i in range(start, min(n, start + SEED_BATCH))
            ]
            ids += client.remember(texts[: len(texts) * 9 // 10], tier="long_term")
            ids += client.remember(texts[len(texts) * 9 // 10 :], tier="shared")
    return ids


def sync(device: Served, cloud: Served) -> SyncReport:
    with (
        FlightReplica(device.uri, TOKEN, timeout=120) as local,
        FlightReplica(cloud.uri, TOKEN, timeout=120) as hub,
    ):
        return sync_once(local, hub)


@contextlib.contextmanager
def round_in_thread(device: Served, cloud: Served) -> Iterator[dict[str, Any]]:
    """Run one round in a thread; after the block, ``outcome`` holds its report or error."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["report"] = sync(device, cloud)
        except AiosMemoryError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="sync-round", daemon=True)
    thread.start()
    try:
        yield outcome
    finally:
        thread.join(timeout=120)
        assert not thread.is_alive(), "the sync round hung after a server died"


def kill_mid_round(
    victim: Served, device: Served, cloud: Served, before: int, incoming: int
) -> tuple[bool, int]:
    """Run a round and SIGKILL ``victim`` once a quarter of ``incoming`` records reached it.

    Returns whether the kill came mid-round, and the records ``victim`` had committed
    (counted by its stats) just before it died.
    """
    seen = before
    with round_in_thread(device, cloud) as outcome:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not outcome:
            seen = victim.synced_count()
            if seen - before >= incoming // 4:
                break
            time.sleep(0.01)
        victim.kill()
    mid_round = "error" in outcome and seen - before < incoming
    return mid_round, seen


def check_after_restart(device: Served, cloud: Served, acked: list[str]) -> None:
    """Sync to a quiet state and check both sides; then stop, reopen and check again."""
    first = sync(device, cloud)
    again = sync(device, cloud)
    assert again.sent == again.received == 0, (first.to_json(), again.to_json())
    live = device.live()
    assert live == cloud.live(), "device and cloud differ after the crash and a round"
    missing = set(acked) - {entry[0] for entry in live}
    assert not missing, f"{len(missing)} acknowledged memories lost, e.g. {sorted(missing)[:3]}"
    for served in (device, cloud):
        served.stop()
        served.start()
    assert device.live() == cloud.live() == live, "a data directory reopened differently"
    with device.client() as client:  # the keyword index caught up with what the crash left
        hits = client.recall("device memory 7:", k=3, mode="keyword")
    assert hits
    report = sync(device, cloud)
    assert report.sent == report.received == 0


def crash_round(
    servers: dict[str, Served], victim_name: str, sender_name: str, counts: tuple[int, ...]
) -> None:
    """Seed the sender (more each retry) until a kill lands mid-round; then check recovery."""
    device, cloud = servers["device"], servers["cloud"]
    victim, sender = servers[victim_name], servers[sender_name]
    acked = seed(device, 2000, "device") + seed(cloud, 2000, "cloud")
    sync(device, cloud)
    attempts = []
    for n in counts:
        acked += seed(sender, n, f"{sender_name} batch {len(attempts)}")
        before = victim.synced_count()
        mid_round, committed = kill_mid_round(victim, device, cloud, before, n)
        victim.start()
        assert victim.synced_count() >= committed, "records committed before kill -9 were lost"
        attempts.append(mid_round)
        if mid_round:
            break
    assert attempts[-1], f"no kill landed mid-round in {len(attempts)} tries"
    check_after_restart(device, cloud, acked)


def test_kill_9_of_the_cloud_mid_round_loses_nothing(servers: dict[str, Served]) -> None:
    crash_round(servers, "cloud", "device", (30_000, 40_000))


def test_kill_9_of_the_device_mid_round_loses_nothing(servers: dict[str, Served]) -> None:
    crash_round(servers, "device", "cloud", (30_000, 40_000))
