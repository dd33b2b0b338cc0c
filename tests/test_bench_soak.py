"""``bench/soak.py`` end to end in a tiny mode: a real ``aimem serve``, real client processes.

Checks the JSON lines the benchmark prints (not its timings): one line per
window of the asked size for each run, percentiles in order, a summary whose
counts agree with what the server stored, and the git commit it ran on.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aios_memory.flight_server import RunningServer

ROOT = Path(__file__).resolve().parent.parent
SOAK = ROOT / "bench" / "soak.py"
RECALLS = ("vector", "keyword", "hybrid", "filtered", "filtered_hybrid")

pytestmark = pytest.mark.slow


def soak(*args: str) -> list[dict[str, Any]]:
    """Run the soak with ``args``; its stdout as parsed JSON lines (each line must parse)."""
    done = subprocess.run(
        [sys.executable, str(SOAK), *args], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines()]


def of(lines: list[dict[str, Any]], result: str, clients: int | None = None) -> list[Any]:
    return [
        line
        for line in lines
        if line["result"] == result and (clients is None or line["clients"] == clients)
    ]


def check_run(lines: list[dict[str, Any]], clients: int, ops: int, window: int) -> None:
    """Every window whole and in order, its kinds adding up, the summary agreeing."""
    cut = of(lines, "window", clients)
    assert [w["window"] for w in cut] == list(range(ops // window))
    for w in cut:
        assert w["ops"] == window == sum(k["n"] for k in w["kinds"].values())
        assert w["failed"] == 0 and w["loadavg_1min"] >= 0
        for kind in w["kinds"].values():
            assert 0 < kind["p50_ms"] <= kind["p90_ms"] <= kind["p99_ms"]
    [summary] = of(lines, "summary", clients)
    assert summary["ops"] == ops and summary["failed"] == 0
    # Every single write the clients timed was stored, and nothing else was.
    assert summary["memories_after"] - summary["memories_before"] == summary["writes"] > 0
    assert summary["writes"] == sum(w["kinds"].get("write", {}).get("n", 0) for w in cut)
    assert set(summary["p50_ratio_last_to_first"]) >= {"write", "vector", "hybrid", "filtered"}
    first, last = summary["first_window_p50_ms"], summary["last_window_p50_ms"]
    assert summary["p50_ratio_last_to_first"]["vector"] == round(
        last["vector"] / first["vector"], 3
    )
    assert isinstance(summary["target_met"], bool) and summary["target_ratio"] == 1.2
    assert len(summary["loadavg"]) == 3
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    assert summary["commit"] == head.stdout.strip()


def test_soak_tiny_run_prints_windows_and_summaries() -> None:
    lines = soak(
        *["--memories", "300", "--ops", "120", "--window", "40", "--clients", "2", "--seed", "3"]
    )
    [preload] = of(lines, "preload")
    assert preload["memories"] == 300 and preload["memories_per_s"] > 0
    check_run(lines, clients=1, ops=120, window=40)
    check_run(lines, clients=2, ops=120, window=40)
    one, two = of(lines, "summary", 1)[0], of(lines, "summary", 2)[0]
    assert one["memories_before"] == 300
    assert two["memories_before"] == one["memories_after"]  # same store, restarted server
    seen = {kind for w in of(lines, "window") for kind in w["kinds"]}
    assert seen == {"write", *RECALLS}
    assert all(line["params"]["data"] == "generated" for line in lines)


def test_soak_against_a_running_server_preloads_only_what_is_missing(
    server: RunningServer,
) -> None:
    from aios_memory.client import MemoryClient

    with MemoryClient(server.uri, server.token) as client:
        client.remember(["already here"] * 50, embeddings=[[1.0] + [0.0] * 383] * 50)
    args = f"--uri {server.uri} --token {server.token} --memories 200 --ops 60 --window 30"
    lines = soak(*args.split(), "--clients", "1")
    [preload] = of(lines, "preload")
    assert preload["memories"] == 150  # 200 asked, 50 there
    assert len(of(lines, "summary")) == 1  # --clients 1: one run, not the same one twice
    check_run(lines, clients=1, ops=60, window=30)
    assert of(lines, "summary")[0]["memories_before"] == 200


def test_soak_store_is_kept_and_reused_by_a_later_run(tmp_path: Path) -> None:
    tiny = ["--memories", "200", "--ops", "60", "--window", "30", "--store", str(tmp_path / "s")]
    first = soak(*tiny, "--only", "single")
    assert not of(first, "summary", 2) and of(first, "preload")[0]["memories"] == 200
    second = soak(*tiny, "--only", "concurrent", "--clients", "2")
    assert of(second, "preload")[0]["memories"] == 0  # the store was kept: nothing to add
    assert not of(second, "summary", 1)
    check_run(second, clients=2, ops=60, window=30)
    assert (
        of(second, "summary", 2)[0]["memories_before"]
        == of(first, "summary", 1)[0]["memories_after"]
    )
