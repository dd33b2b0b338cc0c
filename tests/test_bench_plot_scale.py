"""``bench/plot_scale.py``: the sizes it reads from server_scale lines, and the picture it draws."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "plot_scale.py"


def lines(rows: int, p99: float, bytes_: float) -> list[str]:
    params = {"rows": rows}
    out = [
        {
            "bench": "server_scale",
            "step": "bytes",
            "params": params,
            "bytes_per_memory": bytes_,
            "parts": {"memory.duckdb": bytes_ - 10, "keyword": 10},
        }
    ]
    for method in ("vector", "hybrid"):
        out.append(
            {
                "bench": "server_scale",
                "step": "recall",
                "method": method,
                "params": params,
                "p50_ms": p99 / 2,
                "p99_ms": p99,
            }
        )
    out.append({"bench": "other", "step": "bytes", "params": params})  # ignored
    return [json.dumps(x) for x in out]  # fmt: skip


def test_it_draws_one_point_per_size_and_the_last_run_of_a_size_wins(tmp_path: Path):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text("\n".join(lines(10_000, 4.0, 700) + lines(1_000_000, 9.0, 600)) + "\n")
    second.write_text("\n".join(lines(10_000, 3.0, 650)) + "\n")
    out = tmp_path / "scale.png"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(first), str(second), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    printed = [json.loads(line) for line in done.stdout.splitlines()]
    assert [p["rows"] for p in printed] == [10_000, 1_000_000]
    assert printed[0]["bytes_per_memory"] == 650 and printed[0]["p99_ms"]["vector"] == 3.0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_files_without_sizes_are_refused(tmp_path: Path):
    empty = tmp_path / "none.jsonl"
    empty.write_text(json.dumps({"bench": "ingest", "step": "x", "params": {"rows": 1}}) + "\n")
    done = subprocess.run([sys.executable, str(SCRIPT), str(empty)], capture_output=True, text=True)
    assert done.returncode != 0 and "no server_scale results" in done.stderr
