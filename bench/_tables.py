"""Markdown tables for RESULTS.md from the JSON lines the bench scripts print.

Example::

    .venv/bin/python bench/_tables.py bench/results            # every table
    .venv/bin/python bench/_tables.py bench/results ingest     # one bench
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


def read(folder: Path, name: str) -> list[dict[str, Any]]:
    """The JSON lines of ``folder/name.jsonl`` (empty when missing)."""
    path = folder / f"{name}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def table(header: list[str], rows: Iterable[list[Any]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def recall_table(lines: list[dict[str, Any]], label: Callable[[dict], str]) -> str:
    """Recall overall and recall@10 per category."""
    header = ["method", "R@5", "R@10", "R@10 cat 1", "cat 2", "cat 3", "cat 4"]
    rows = [
        [
            label(d),
            d["recall@5"],
            d["recall@10"],
            *[d["by_category"].get(c, {}).get("recall@10", "") for c in "1234"],
        ]
        for d in lines
        if "recall@5" in d
    ]
    return table(header, rows)


def keyword_engines(lines: list[dict[str, Any]]) -> str:
    """Engines: recall, build, latency, capabilities."""
    head = recall_table(lines, lambda d: d["engine"])
    rows = [
        [
            d["engine"],
            d.get("build_ms_per_conversation", ""),
            d["query"]["p50_ms"],
            d["query"]["p99_ms"],
            d.get("incremental"),
            d.get("persistent"),
        ]
        for d in lines
        if "query" in d
    ]
    return (
        head
        + "\n\n"
        + table(
            [
                "engine",
                "build ms / conversation",
                "query p50 ms",
                "query p99 ms",
                "incremental add",
                "on disk",
            ],
            rows,
        )
    )


def recall_latency(lines: list[dict[str, Any]]) -> str:
    """Per size and method: latency and recall against exact."""
    builds = [
        [
            d["size"],
            d["server_ingest_s"],
            d["server_memories_per_s"],
            d.get("server_graph_catch_up_s", ""),
            d.get("server_memories_per_s_with_graph", ""),
            d["hnswlib_build_s"],
            d.get("int8_exact_recall@10_vs_exact", ""),
        ]
        for d in lines
        if d["method"] == "build"
    ]
    rows = [
        [
            d["size"],
            d["method"],
            d["p50_ms"],
            d["p99_ms"],
            d["mean_ms"],
            d.get("recall@10_vs_exact", ""),
            d.get("loadavg", [""])[0],
        ]
        for d in lines
        if d["method"] != "build"
    ]
    return (
        table(
            [
                "rows",
                "server ingest s (acked)",
                "memories/s acked",
                "graph catch-up s",
                "memories/s in graph",
                "raw hnswlib build s (2 threads)",
                "exact search on int8 vectors: recall@10",
            ],
            builds,
        )
        + "\n\n"
        + table(
            ["rows", "method", "p50 ms", "p99 ms", "mean ms", "recall@10 vs exact", "load 1 min"],
            rows,
        )
    )


def ingest(lines: list[dict[str, Any]]) -> str:
    """Rates per method."""
    rows = [
        [
            d["method"],
            d["rows"],
            d["params"]["embedder"],
            d["memories_per_s_median"],
            ", ".join(f"{r:,.0f}" for r in d["memories_per_s_each_round"]),
            d.get("memories_per_s_with_graph_median", ""),
            d["per_call"]["p50_ms"],
            d["per_call"]["p99_ms"],
        ]
        for d in lines
    ]
    return table(
        [
            "method",
            "rows",
            "server embedder",
            "memories/s acked (median)",
            "each round",
            "memories/s in graph (median)",
            "per call p50 ms",
            "per call p99 ms",
        ],
        rows,
    )


def disk_bytes(lines: list[dict[str, Any]]) -> str:
    """Totals and breakdown."""
    parts = []
    for d in lines:
        parts.append(
            table(
                ["copies", "memories", "total bytes", "bytes / memory", "text bytes / memory"],
                [
                    [
                        d["params"]["copies"],
                        d["memories"],
                        d["total_bytes"],
                        d["bytes_per_memory"],
                        d["text_bytes_per_memory"],
                    ]
                ],
            )
        )
        parts.append(
            table(
                ["entry", "bytes", "bytes / memory"],
                [[name, v["bytes"], v["per_memory"]] for name, v in d["by_entry"].items()],
            )
        )
        if "duckdb" in d:
            db = d["duckdb"]
            parts.append(
                f"memory.duckdb: {db['used_blocks']} used + {db['free_blocks']} free "
                f"blocks of {db['block_size']:,} bytes"
            )
            parts.append(
                table(
                    ["records column", "bytes (estimate)", "bytes / memory"],
                    _columns(db["records_column_bytes"], d["memories"]),
                )
            )
    return "\n\n".join(parts)


def _columns(sizes: dict[str, int], memories: int) -> list[list[Any]]:
    """Columns of at least 1 byte a memory, then the rest summed."""
    big = [[c, b, round(b / memories, 1)] for c, b in sizes.items() if b >= memories]
    rest = [b for b in sizes.values() if b < memories]
    return big + (
        [[f"{len(rest)} other columns", sum(rest), round(sum(rest) / memories, 1)]] if rest else []
    )


def locomo_recall(lines: list[dict[str, Any]]) -> str:
    """Server modes, then fusions re-done on the arms."""
    server = [d for d in lines if d["source"] == "server"]
    fused = [d for d in lines if d["source"] in ("client_fusion", "what_if")]
    latency = table(
        ["mode", "p50 ms", "p99 ms", "mean ms"],
        [
            [d["mode"], d["latency"]["p50_ms"], d["latency"]["p99_ms"], d["latency"]["mean_ms"]]
            for d in server
        ],
    )
    return (
        recall_table(server, lambda d: d["mode"])
        + "\n\n"
        + latency
        + "\n\n"
        + recall_table(fused, lambda d: d["mode"])
    )


def vector_index_bytes(lines: list[dict[str, Any]]) -> str:
    """Index file bytes, build time, latency and recall per index kind."""
    rows = [
        [
            d["index"],
            d["params"]["size"],
            d["bytes_per_vector"],
            d["build_s"],
            d["p50_ms"],
            d["p99_ms"],
            d["recall@10_vs_exact"],
        ]
        for d in lines
    ]
    return table(
        [
            "index",
            "vectors",
            "file bytes / vector",
            "build s (2 threads)",
            "p50 ms",
            "p99 ms",
            "recall@10 vs exact",
        ],
        rows,
    )


def main() -> None:
    """Print every table found in the folder given (or only those of the bench named after it)."""
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results")
    only = sys.argv[2] if len(sys.argv) > 2 else None
    for name, render in (
        ("keyword_engines", keyword_engines),
        ("recall_latency", recall_latency),
        ("ingest", ingest),
        ("disk_bytes", disk_bytes),
        ("locomo_recall", locomo_recall),
        ("vector_index_bytes", vector_index_bytes),
    ):
        lines = read(folder, name)
        if only == name:
            print(render(lines))
        elif lines and only is None:
            print(f"## {name}\n\n{render(lines)}\n")


if __name__ == "__main__":
    main()
