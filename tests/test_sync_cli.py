"""`aimem sync` as a user runs it: one round, a dry run, the loop, a wrong token, a dead cloud."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aios_memory.client import MemoryClient
from aios_memory.flight_server import RunningServer

AIMEM = [sys.executable, "-c", "from aios_memory.client.cli import main; main()"]
REPORT_KEYS = {
    "sent",
    "received",
    "tombstones_sent",
    "tombstones_received",
    "conflicts",
    "bytes_sent",
    "bytes_received",
    "round_trips",
    "seconds",
}
SYNCED = ("long_term", "shared")


@pytest.fixture
def device(server_factory: Callable[..., Any], tmp_path: Path) -> Iterator[RunningServer]:
    with server_factory(data_dir=tmp_path / "device", token="device-token") as running:
        yield running


@pytest.fixture
def cloud(server_factory: Callable[..., Any], tmp_path: Path) -> Iterator[RunningServer]:
    with server_factory(data_dir=tmp_path / "cloud", token="cloud-token", role="cloud") as running:
        yield running


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AIMEM_")}


def link(device: RunningServer, cloud: RunningServer, **override: str) -> list[str]:
    """The options that point `aimem sync` at the two servers."""
    options = {
        "--local": device.uri,
        "--local-token": device.token,
        "--cloud": cloud.uri,
        "--cloud-token": cloud.token,
        **override,
    }
    return [part for pair in options.items() for part in pair]


def aimem_sync(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*AIMEM, "sync", *args], env=env(), capture_output=True, text=True, timeout=120
    )


def remember(server: RunningServer, texts: list[str], tier: str = "long_term") -> list[str]:
    with MemoryClient(server.uri, server.token) as client:
        return client.remember(texts, tier=tier)


def state(server: RunningServer) -> tuple[Any, ...]:
    """What a dry run must not change: counts per tier and every stored row's version."""
    with MemoryClient(server.uri, server.token) as client:
        tiers = client.stats()["tiers"]
        table = client.scan(include_deleted=True)
    rows = table.select(["id", "hlc", "origin", "deleted"]).to_pylist()
    return tiers, sorted((r["id"], r["hlc"], r["origin"], r["deleted"]) for r in rows)


def live_ids(server: RunningServer) -> set[str]:
    with MemoryClient(server.uri, server.token) as client:
        return set(client.scan(tier=list(SYNCED)).column("id").to_pylist())


def one_json_object(stdout: str) -> dict[str, Any]:
    lines = stdout.splitlines()
    assert len(lines) == 1, stdout
    report = json.loads(lines[0])
    assert isinstance(report, dict) and set(report) >= REPORT_KEYS, report
    return report


def test_once_json_prints_one_report_and_moves_both_ways(device, cloud) -> None:
    mine = remember(device, ["Ada prefers tea", "Ada's flat is on the third floor"])
    local_only = remember(device, ["scratch of this session"], tier="working")
    theirs = remember(cloud, ["Bob shared the train times"], tier="shared")
    done = aimem_sync(*link(device, cloud), "--once", "--json")
    assert done.returncode == 0, done.stderr
    report = one_json_object(done.stdout)
    assert (report["sent"], report["received"]) == (2, 1)
    assert report["tombstones_sent"] == report["tombstones_received"] == report["conflicts"] == 0
    assert report["bytes_sent"] > 0 and report["bytes_received"] > 0
    assert report["round_trips"] >= 1 and report["seconds"] >= 0
    assert live_ids(device) == live_ids(cloud) == set(mine + theirs)
    assert not set(local_only) & live_ids(cloud)
    again = one_json_object(aimem_sync(*link(device, cloud), "--once", "--json").stdout)
    assert again["sent"] == again["received"] == 0


def test_once_without_json_prints_a_summary_line(device, cloud) -> None:
    remember(device, ["Ada prefers tea"])
    done = aimem_sync(*link(device, cloud), "--once")
    assert done.returncode == 0, done.stderr
    assert re.search(r"sent 1 \(0 deletions\), received 0", done.stdout), done.stdout


def test_dry_run_reports_the_difference_and_changes_nothing(device, cloud) -> None:
    remember(device, ["Ada prefers tea", "Ada's flat is on the third floor", "Ada runs"])
    remember(cloud, ["Bob shared the train times", "Bob's cat is Tom"], tier="shared")
    with MemoryClient(device.uri, device.token) as client:
        client.forget(remember(device, ["a note to forget"]))
    before = state(device), state(cloud)
    done = aimem_sync(*link(device, cloud), "--dry-run", "--json")
    assert done.returncode == 0, done.stderr
    report = one_json_object(done.stdout)
    assert report["dry_run"] is True
    assert (report["sent"], report["received"]) == (4, 2)  # 3 memories and 1 tombstone
    assert (state(device), state(cloud)) == before
    real = one_json_object(aimem_sync(*link(device, cloud), "--once", "--json").stdout)
    assert (real["sent"], real["received"], real["tombstones_sent"]) == (4, 2, 1)


def test_a_wrong_cloud_token_exits_1_naming_the_cloud_token(device, cloud) -> None:
    remember(device, ["Ada prefers tea"])
    refused = aimem_sync(*link(device, cloud, **{"--cloud-token": "wrong"}), "--once", "--json")
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert "Traceback" not in refused.stderr
    assert "cloud endpoint" in refused.stderr and "--cloud-token" in refused.stderr
    assert cloud.uri in refused.stderr
    assert live_ids(cloud) == set()


def test_a_wrong_local_token_names_the_local_token(device, cloud) -> None:
    refused = aimem_sync(*link(device, cloud, **{"--local-token": "wrong"}), "--once")
    assert refused.returncode == 1
    assert "local server" in refused.stderr and "--local-token" in refused.stderr
    assert "--cloud-token" not in refused.stderr


# -- the loop ---------------------------------------------------------------------------------


@contextlib.contextmanager
def looping(tmp_path: Path, *args: str) -> Iterator[tuple[subprocess.Popen, Path, Path]]:
    """`aimem sync` in loop mode, stdout and stderr to files; killed if the test fails."""
    out, err = tmp_path / "sync.out", tmp_path / "sync.err"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        process = subprocess.Popen([*AIMEM, "sync", *args], env=env(), stdout=stdout, stderr=stderr)
    try:
        yield process, out, err
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def wait_for(check: Callable[[], Any], seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def terminate(process: subprocess.Popen, seconds: float = 10) -> float:
    """SIGTERM; assert a clean exit 0; return how long the stop took."""
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=seconds) == 0
    return time.monotonic() - started


def test_the_loop_syncs_a_later_write_and_stops_cleanly_on_sigterm(
    device, cloud, tmp_path: Path
) -> None:
    with looping(tmp_path, *link(device, cloud), "--interval", "0.2", "--json") as (
        process,
        out,
        err,
    ):
        wait_for(lambda: out.read_text().count("\n") >= 2, 30, "two rounds")
        [memory_id] = remember(device, ["written while the daemon runs"])
        wait_for(lambda: memory_id in live_ids(cloud), 30, "the write to reach the cloud")
        assert terminate(process) < 5
        reports = [json.loads(line) for line in out.read_text().splitlines()]
        assert all(set(r) >= REPORT_KEYS for r in reports)
        assert sum(r["sent"] for r in reports) == 1
        assert re.search(r"stopped after \d+ rounds", err.read_text()), err.read_text()


def test_an_unreachable_cloud_is_retried_with_backoff_and_sigterm_still_stops(
    device, tmp_path: Path
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = [
        "--local",
        device.uri,
        "--local-token",
        device.token,
        "--cloud",
        f"grpc://127.0.0.1:{port}",
        "--cloud-token",
        "x",
        "--interval",
        "0.2",
    ]
    with looping(tmp_path, *args) as (process, out, err):
        retries = wait_for(
            lambda: (
                re.findall(r"\(retrying in ([\d.]+) s\)", err.read_text())
                if err.read_text().count("retrying") >= 2
                else None
            ),
            30,
            "two retries",
        )
        waits = [float(w) for w in retries]
        assert 0.5 <= waits[0] <= 1.0 and waits[1] >= waits[0]  # backoff_min 1 s, doubling
        assert terminate(process) < 5
        log = err.read_text()
        assert f"127.0.0.1:{port}" in log and "Traceback" not in log
        assert out.read_text() == ""


# -- consolidation beside the rounds ------------------------------------------------------------


def test_the_daemon_consolidates_idle_sessions_and_syncs_what_they_become(
    device, cloud, llm_server: Any, tmp_path: Path
) -> None:
    session = ["Ada: I moved to Lisbon last week.", "Tom: Nice, Ada! Do you like the tiles?"]
    with MemoryClient(device.uri, device.token) as client:
        client.remember(session, tier="working", session="c1/s1")
    extra = {
        "AIMEM_KEYS": os.environ["AIMEM_KEYS"],  # this test's key store, never the user's
        "AIMEM_LLM_URL": llm_server.url,
        "AIMEM_LLM_MODEL": llm_server.model,
    }
    command = [
        *AIMEM, "sync", *link(device, cloud), "--interval", "0.5",
        "--consolidate-every", "1s", "--consolidate-idle", "0s",
    ]  # fmt: skip
    err = tmp_path / "sync.err"
    with open(err, "w") as stderr:
        process = subprocess.Popen(
            command, env={**env(), **extra}, stdout=subprocess.DEVNULL, stderr=stderr
        )
    try:

        def summaries(server: RunningServer) -> list[str]:
            with MemoryClient(server.uri, server.token) as client:
                return client.scan("long_term", kind="summary").column("session").to_pylist()

        assert wait_for(lambda: summaries(device), 240, "a summary on the device") == ["c1/s1"]
        wait_for(lambda: summaries(cloud), 60, "the summary to sync to the cloud")
        terminate(process, seconds=120)  # exit 0, the session under way finished
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    log = err.read_text()
    assert "consolidation: 1 sessions consolidated" in log, log
    assert re.search(r"stopped after \d+ rounds", log), log


def test_consolidation_is_for_the_loop_only(device, cloud) -> None:
    done = aimem_sync(*link(device, cloud), "--once", "--consolidate-every", "1h")
    assert done.returncode == 2 and "--consolidate-every is for the daemon" in done.stderr
    typo = aimem_sync(
        *link(device, cloud), "--consolidate-every", "1h", "--consolidate-demote", "x"
    )
    assert typo.returncode == 1 and "demotion 'x'" in typo.stderr


def test_periodic_work_backs_off_after_an_error_and_stops_when_told() -> None:
    import threading

    from aios_memory.schemas import StorageError
    from aios_memory.sync.daemon import Schedule, run_periodically

    stop, results, waits = threading.Event(), [], []
    outcomes = iter([StorageError("disk"), "first", "second"])

    def task() -> str:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def on_result(value: str) -> None:
        results.append(value)
        if len(results) == 2:
            stop.set()

    schedule = Schedule(interval=0.01, backoff_min=0.02, backoff_max=0.02)
    finished = run_periodically(
        task, stop, schedule=schedule, on_result=on_result,
        on_error=lambda exc, wait: waits.append((exc.code, wait)),
    )  # fmt: skip
    assert (finished, results) == (2, ["first", "second"])
    [(code, wait)] = waits
    assert code == "STORAGE_ERROR" and 0.01 <= wait <= 0.02
