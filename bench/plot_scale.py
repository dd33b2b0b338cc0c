"""Latency and bytes against store size, from ``server_scale.py``'s JSON lines.

Reads one or more JSONL files (each a run of ``bench/server_scale.py`` at some ``--rows``),
takes per size the last ``bytes`` and ``recall`` results, and draws two panels: p50 and
p99 of each recall method (log-log), and bytes a memory by part. Prints one JSON line per
size with what it drew.

Example::

    .venv/bin/python bench/plot_scale.py bench/results/server_scale_*.jsonl \\
        --out bench/results/scale.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

METHODS = ("vector", "vector_filtered", "hybrid", "hybrid_filtered", "flight_health")


def load(paths: list[str]) -> dict[int, dict[str, Any]]:
    """``rows -> {"bytes": ..., "recall": {method: result}}``, later lines winning."""
    sizes: dict[int, dict[str, Any]] = {}
    for path in paths:
        for line in Path(path).read_text().splitlines():
            result = json.loads(line)
            if result.get("bench") != "server_scale":
                continue
            entry = sizes.setdefault(int(result["params"]["rows"]), {"recall": {}})
            if result["step"] == "bytes":
                entry["bytes"] = result
            elif result["step"] == "recall":
                entry["recall"][result["method"]] = result
    return {rows: entry for rows, entry in sorted(sizes.items()) if "bytes" in entry}


def draw(sizes: dict[int, dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(sizes)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for method in METHODS:
        found = [sizes[n]["recall"].get(method) for n in rows]
        if not all(found):
            continue
        line = left.plot(rows, [f["p50_ms"] for f in found], marker="o", label=f"{method} p50")
        left.plot(rows, [f["p99_ms"] for f in found], marker="x", linestyle="--",
                  color=line[0].get_color(), label=f"{method} p99")  # fmt: skip
    left.set(xscale="log", yscale="log", xlabel="memories in the tenant", ylabel="ms",
             title="recall through Flight, vectors supplied")  # fmt: skip
    left.legend(fontsize=7)
    bottom = [0.0] * len(rows)
    parts = sorted({p for n in rows for p in sizes[n]["bytes"]["parts"]})
    for part in parts:
        values = [sizes[n]["bytes"]["parts"].get(part, 0.0) for n in rows]
        right.bar([str(n) for n in rows], values, bottom=bottom, label=part)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    right.axhline(300, color="black", linestyle=":", label="target 300")
    right.set(xlabel="memories in the tenant", ylabel="bytes a memory, all-in",
              title="bytes a memory")  # fmt: skip
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", help="server_scale.py JSONL files")
    parser.add_argument("--out", default="scale.png", help="the picture to write")
    args = parser.parse_args()
    sizes = load(args.files)
    if not sizes:
        sys.exit("no server_scale results with bytes in those files")
    draw(sizes, Path(args.out))
    for rows, entry in sizes.items():
        summary = {m: entry["recall"][m]["p99_ms"] for m in METHODS if m in entry["recall"]}
        print(json.dumps({"bench": "plot_scale", "rows": rows,
                          "bytes_per_memory": entry["bytes"]["bytes_per_memory"],
                          "p99_ms": summary, "out": args.out}))  # fmt: skip


if __name__ == "__main__":
    main()
