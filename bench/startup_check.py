"""What does the start-up integrity check cost? Opening a store with and without it.

Builds a DuckDB store of ``--rows`` records of a realistic size (a 300-byte
incompressible payload as zstd leaves it, a 384-dimension int8 embedding, metadata),
through the store's own schema, then times side by side, alternating, ``--repeat``
times each:

- ``open``: ``DuckDBStore(data)`` and close (the start without the check);
- ``check``: ``integrity.check_data_dir`` alone (reads every block of every table);
- ``open_checked``: the check, then the open (what ``aimem serve`` does).

Prints one JSON line per measure (median seconds) and one with the ratio
``open_checked / open``, with the load average beside them (``emit``).
The page cache is warm after the first run: the figures are of a warm start; a cold
start reads the file once either way, and the check's read warms the open's.

Example::

    .venv/bin/python bench/startup_check.py --rows 100000
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import base_parser, emit, log, quick  # noqa: E402

from aios_memory.flight_server.store._database import connect  # noqa: E402
from aios_memory.flight_server.store.duckdb_store import DB_FILE, DuckDBStore  # noqa: E402
from aios_memory.flight_server.store.integrity import check_data_dir  # noqa: E402

BENCH = "startup_check"

# One row as a put leaves it; random bytes stand in for zstd output (incompressible).
_FILL_SQL = """
INSERT INTO records SELECT
    i, 'm' || lpad(i::VARCHAR, 12, '0'), 'default', 'long_term', 'agent-' || (i % 7),
    'session-' || (i % 97), 'text', now(), i, 'r0123456789abcdef', 1, 'zstd', NULL,
    encode(array_to_string(
        list_transform(range(300), lambda x: chr((random() * 94)::INT + 32)), '')),
    420, sha256(i::VARCHAR)::BLOB,
    list_transform(range(384), lambda x: ((random() * 254)::INT - 127)::TINYINT), 0.01,
    'e5-small', '{"topic": "t' || (i % 50) || '", "n": ' || i || '}', false
FROM range(?, ?) t(i)
"""


def build(data: Path, rows: int) -> int:
    """A store of ``rows`` records; returns the database's size in bytes."""
    data.mkdir(parents=True, exist_ok=True)
    con = connect(data / DB_FILE)
    for start in range(0, rows, 20_000):
        con.execute(_FILL_SQL, [start, min(rows, start + 20_000)])
    con.execute("CHECKPOINT")
    con.close()
    return (data / DB_FILE).stat().st_size


def median_seconds(fn: Callable[[], object], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = base_parser(__doc__ or BENCH)
    parser.add_argument("--rows", type=int, default=10_000 if quick() else 100_000)
    parser.add_argument("--repeat", type=int, default=3 if quick() else 7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aimem-startup-") as tmp:
        data = Path(tmp) / "data"
        log(f"building {args.rows} records ...")
        size = build(data, args.rows)

        def check() -> None:
            check_data_dir(data, DB_FILE)

        def open_store() -> None:
            DuckDBStore(data).close()

        def open_checked() -> None:
            check()
            open_store()

        measures = {"open": open_store, "check": check, "open_checked": open_checked}
        times: dict[str, list[float]] = {name: [] for name in measures}
        for _ in range(args.repeat):  # alternate, so the machine's noise hits all alike
            for name, fn in measures.items():
                times[name] += median_seconds(fn, 1)
        params = {"rows": args.rows, "repeat": args.repeat, "db_bytes": size}
        medians = {name: statistics.median(values) for name, values in times.items()}
        for name, value in medians.items():
            emit(BENCH, params, measure=name, median_s=round(value, 4), runs=times[name])
        emit(
            BENCH,
            params,
            measure="ratio_open_checked_to_open",
            ratio=round(medians["open_checked"] / medians["open"], 2),
            check_ms_per_mib=round(medians["check"] * 1000 / (size / 2**20), 2),
        )


if __name__ == "__main__":
    main()
