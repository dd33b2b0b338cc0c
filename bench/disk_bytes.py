"""How many bytes on disk does one memory cost? Every file in the data directory, after close.

Imports the LoCoMo conversations through the real path (``remember_many``,
server embedder ``local``), closes the server (which checkpoints its indexes),
then sums every file under the data directory and divides by the number of
memories. ``--copies`` repeats the import with marked copies of the texts, to
see the cost once the vector index grows past the size the server persists
(``vector_persist_min``, 10,000 by default).

Example::

    .venv/bin/python bench/disk_bytes.py --data PATH/TO/locomo-dev --copies 1,4
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    base_parser,
    connect,
    conversation_files,
    dir_bytes,
    emit,
    locomo_turns,
    log,
    quick,
    running_server,
)

TARGET_BYTES = 1000
TIER = "long_term"


def memories(files: list[Path], copies: int) -> Iterator[Any]:
    """Every turn of every file, ``copies`` times; copies after the first are marked."""
    for copy in range(copies):
        for path in files:
            for item in locomo_turns(path):
                if copy:
                    item.text = f"{item.text} (copy {copy})"
                    item.metadata["conversation"] = f"{item.metadata['conversation']}#{copy}"
                yield item


def import_all(data_dir: Path, files: list[Path], copies: int) -> tuple[int, float, int, dict]:
    """Import into a server on ``data_dir`` and close it; memories, seconds, text bytes, stats."""
    items = list(memories(files, copies))
    text_bytes = sum(len(item.text.encode("utf-8")) for item in items)
    with (
        running_server(data_dir, embedder="local", checkpoint_seconds=0) as running,
        connect(running, timeout=3600.0) as client,
    ):
        start = time.perf_counter()
        client.remember_many(items, tier=TIER, progress=_progress(len(items)))
        seconds = time.perf_counter() - start
        stats = client.stats()
    return len(items), seconds, text_bytes, stats


def _progress(total: int) -> Any:
    done = [0]

    def report(n: int) -> None:
        done[0] += n
        log(f"    {done[0]}/{total}")

    return report


def group(breakdown: dict[str, int], memories_count: int) -> dict[str, dict[str, float]]:
    """Bytes by top-level entry (file or folder) and per memory."""
    sums: dict[str, int] = defaultdict(int)
    for name, size in breakdown.items():
        sums[_top(name)] += size
    return {
        name: {"bytes": size, "per_memory": round(size / memories_count, 1)}
        for name, size in sorted(sums.items(), key=lambda kv: -kv[1])
    }


def _top(relative: str) -> str:
    # Index folders sit under per-tenant folders; keep two levels so they stay apart.
    parts = relative.split("/")
    return "/".join(parts[:3]) + ("/" if len(parts) > 3 else "")


def duckdb_breakdown(path: Path) -> dict[str, Any]:
    """Blocks used and free in a DuckDB file, and an estimate of bytes per column of ``records``.

    A column's bytes are estimated from its segments' places in their blocks
    (a segment runs to the next segment's offset, or to the block's end), so
    the sum is close to, and at most, the used blocks.
    """
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        size = con.execute("PRAGMA database_size").fetchone()
        block = int(size[2])
        rows = con.execute(
            "SELECT column_name, block_id, block_offset, additional_block_ids "
            "FROM pragma_storage_info('records') WHERE block_id >= 0"
        ).fetchall()
    finally:
        con.close()
    return {
        "block_size": block,
        "total_blocks": size[3],
        "used_blocks": size[4],
        "free_blocks": size[5],
        "records_column_bytes": _column_bytes(rows, block),
    }


def _column_bytes(rows: list[tuple], block: int) -> dict[str, int]:
    by_block: dict[int, list[tuple[int, str]]] = defaultdict(list)
    sizes: dict[str, int] = defaultdict(int)
    for column, block_id, offset, extra in rows:
        by_block[block_id].append((offset, column))
        sizes[column] += block * len(extra or [])
    for segments in by_block.values():
        segments.sort()
        ends = [offset for offset, _ in segments[1:]] + [block]
        for (offset, column), end in zip(segments, ends, strict=True):
            sizes[column] += end - offset
    return dict(sorted(sizes.items(), key=lambda kv: -kv[1]))


def measure(files: list[Path], copies: int, keep: str | None) -> None:
    """One import into a fresh data directory; print totals and the breakdown."""
    with tempfile.TemporaryDirectory(prefix="aimem-disk-", dir=keep) as folder:
        data_dir = Path(folder) / "data"
        count, seconds, text_bytes, stats = import_all(data_dir, files, copies)
        total, breakdown = dir_bytes(data_dir)
        database = duckdb_breakdown(data_dir / "memory.duckdb")
    per_memory = total / count
    params = {
        "conversations": [p.stem for p in files],
        "copies": copies,
        "tier": TIER,
        "embedder": "local",
    }
    emit(
        "disk_bytes",
        params,
        memories=count,
        total_bytes=total,
        bytes_per_memory=round(per_memory, 1),
        meets_target=per_memory < TARGET_BYTES,
        text_bytes_per_memory=round(text_bytes / count, 1),
        import_s=round(seconds, 1),
        by_entry=group(breakdown, count),
        duckdb=database,
        files=breakdown,
        server_stats=stats,
    )


def main() -> None:
    """Measure each ``--copies`` value."""
    parser = base_parser(__doc__.split("\n")[0], data=True)
    parser.add_argument(
        "--copies",
        default="1,4",
        help="comma-separated: how many times to import the conversations",
    )
    parser.add_argument("--tmp", default=None, help="where to make the data directory")
    args = parser.parse_args()
    files = conversation_files(args.data)
    copies = [1] if quick() else [int(c) for c in args.copies.split(",")]
    for count in copies:
        log(f"importing {len(files)} conversations x {count}")
        measure(files, count, args.tmp)


if __name__ == "__main__":
    main()
