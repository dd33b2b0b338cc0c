"""The soak's figures: latency percentiles per window of operations, and the run's summary.

The clients' operations are merged in the order they finished (one machine-wide
monotonic clock), cut into windows of ``window`` operations, and summarised per
kind: p50/p90/p99 in milliseconds, how many, how many failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from _soak_workload import KINDS, RATIO_KINDS

TARGET_RATIO = 1.2


def merged(results: Sequence[dict[str, Any]]) -> list[list[Any]]:
    """Every client's operations, in the order they finished."""
    return sorted((op for result in results for op in result["ops"]), key=lambda op: op[1])


def windows(ops: list[list[Any]], size: int) -> list[dict[str, Any]]:
    """One summary per ``size`` operations (a shorter last window is kept only if whole-ish)."""
    out = []
    first_start = ops[0][1] - ops[0][2] if ops else 0.0
    writes_before = 0
    for number, first in enumerate(range(0, len(ops), size)):
        chunk = ops[first : first + size]
        if len(chunk) < size // 2 and out:
            break  # a stub at the end would be noise, not a window
        span = chunk[-1][1] - (ops[first - 1][1] if first else first_start)
        out.append(
            {
                "window": number,
                "ops": len(chunk),
                "writes_before": writes_before,
                "seconds": round(span, 3),
                "ops_per_s": round(len(chunk) / span, 1) if span > 0 else None,
                "failed": sum(1 for op in chunk if op[3]),
                "loadavg_1min": round(float(np.mean([op[4] for op in chunk])), 2),
                "kinds": per_kind(chunk),
            }
        )
        writes_before += sum(1 for op in chunk if op[0] == "write")
    return out


def per_kind(chunk: Sequence[list[Any]]) -> dict[str, dict[str, float]]:
    """p50/p90/p99 (ms) and counts of each kind of operation in ``chunk``."""
    found = {}
    for kind in KINDS:
        ms = np.array([op[2] for op in chunk if op[0] == kind], dtype=np.float64) * 1000.0
        if ms.size:
            p50, p90, p99 = np.percentile(ms, [50, 90, 99])
            found[kind] = {
                "p50_ms": round(float(p50), 3),
                "p90_ms": round(float(p90), 3),
                "p99_ms": round(float(p99), 3),
                "n": int(ms.size),
            }
    return found


def summary(runs: list[dict[str, Any]], ops: list[list[Any]]) -> dict[str, Any]:
    """Last window against first: p50 ratios per kind, the target's verdict, totals."""
    first, last = runs[0]["kinds"], runs[-1]["kinds"]
    ratios = {
        kind: round(last[kind]["p50_ms"] / first[kind]["p50_ms"], 3)
        for kind in KINDS
        if kind in first and kind in last and first[kind]["p50_ms"] > 0
    }
    targeted = {kind: ratios.get(kind) for kind in RATIO_KINDS}
    span = ops[-1][1] - (ops[0][1] - ops[0][2]) if ops else 0.0
    return {
        "windows": len(runs),
        "ops": len(ops),
        "writes": sum(1 for op in ops if op[0] == "write"),
        "failed": sum(1 for op in ops if op[3]),
        "seconds": round(span, 2),
        "ops_per_s": round(len(ops) / span, 1) if span > 0 else None,
        "first_window_p50_ms": {kind: first[kind]["p50_ms"] for kind in first},
        "last_window_p50_ms": {kind: last[kind]["p50_ms"] for kind in last},
        "p50_ratio_last_to_first": ratios,
        "target_ratio": TARGET_RATIO,
        "target_met": all(r is not None and r <= TARGET_RATIO for r in targeted.values()),
    }
