"""The row-at-a-time checks of a small batch refuse exactly what the column-at-a-time ones do.

``validate_record_batch`` checks a batch of up to ``SMALL_BATCH_ROWS`` rows in
plain Python (``schemas._small_batch``) because a compute kernel call costs more
than a few rows' worth of Python. Here both ways run over thousands of valid
batches with one to three cells broken, and must agree on the error class, its
message and its detail (field, row, limit...), or both accept.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest

from aios_memory.schemas import RECORD_SCHEMA, AiosMemoryError, validate_record_batch
from aios_memory.schemas._small_batch import SMALL_BATCH_ROWS, check_rows
from aios_memory.schemas.validate import Limits, _check_metadata, check_columns

# Small limits, so every limit is reachable with small values.
LIMITS = Limits(
    max_text_bytes=64, max_name_chars=8, max_dimension=8, max_metadata_bytes=64, max_json_depth=3
)
_NOW_US = 1_700_000_000_000_000

# Values, good and bad, a mutation may put in a cell of each column.
CELLS: dict[str, list[Any]] = {
    "id": [None, "", "a b", "x" * 64, "x" * 65, "ok\n", "é", "a:b.c-d_e", "DUP"],
    "tenant": [None, "", "a:b", "t\n", "t" * 65, "other", "DUP"],
    "tier": [None, "bogus", "Core", "core", "shared", "long_term"],
    "agent": [None, "x" * 9, "é" * 9, "é" * 8, ""],
    "session": [None, "s" * 9, "s" * 8],
    "kind": [None, "k" * 9, "zstd-dictionary", "scene-data", "episode", "text"],
    "created_at": [
        None,
        -62_135_596_800_000_001,
        -62_135_596_800_000_000,
        0,
        253_402_300_799_999_999,
        253_402_300_800_000_000,
    ],
    "hlc": [None, 0, 1, 2**63, 2**64 - 1],
    "origin": [None, "", "o" * 9, "replica"],
    "privacy": [None, 0, 3, 4, 255],
    "codec": [None, "bogus", "none", "zstd", "zstd-dict", "lm", "sealed"],
    "dict_id": [None, 0, 7],
    "payload": [None, b"", b"  \t", b"\x0b", b" \n ", b"\x0c\r", b"x" * 64, b"x" * 2000, b"\xff"],
    "raw_size": [None, 0, 1, 64, 65, 2**32 - 1],
    "content_hash": [None, b"\x00" * 16],
    "embedding": [None, [], [0, 0, 0], [1] * 8, [1] * 9, [0, -3, 0], [127, -128]],
    "embedding_scale": [
        None,
        float("nan"),
        float("inf"),
        -1.0,
        0.0,
        1e-6,
        9.9e-7,
        1.0,
        1.0000001,
        2.0,
        0.01,
    ],
    "embed_model": [None, "m", "m" * 9],
    "metadata": [
        None,
        "{}",
        "[]",
        "x",
        '{"a": 1}',
        '{"a": {"b": {"c": 1}}}',
        '{"a": {"b": {"c": {"d": 1}}}}',
        '{"k": "' + "v" * 70 + '"}',
        "null",
        '{"aimem:occurred_at": "2023-05-08T13:56:00Z"}',
        '{"aimem:occurred_at": "2023-05-08T13:56:00.250000Z"}',
        '{"aimem:occurred_at": "2023-05-08"}',
        '{"aimem:occurred_at": 1683554160}',
    ],
    "deleted": [None, True, False],
}


def _valid_row(rng: random.Random, n: int) -> dict[str, Any]:
    vector = rng.choice([None, [3, -1, 2]])
    return {
        "id": f"id{n}",
        "tenant": rng.choice(["default", "t2"]),
        "tier": rng.choice(["core", "working", "long_term", "shared"]),
        "agent": rng.choice([None, "bot"]),
        "session": None,
        "kind": "text",
        "created_at": _NOW_US,
        "hlc": rng.choice([0, 5]),
        "origin": "",
        "privacy": rng.randint(0, 3),
        "codec": "none",
        "dict_id": None,
        "payload": b"hello",
        "raw_size": 5,
        "content_hash": b"\x01" * 16,
        "embedding": vector,
        "embedding_scale": None if vector is None else 0.01,
        "embed_model": None if vector is None else "m",
        "metadata": rng.choice([None, '{"a": 1}']),
        "deleted": False,
    }


def _batch(rows: list[dict[str, Any]]) -> pa.RecordBatch:
    arrays = []
    for field in RECORD_SCHEMA:
        values = [r[field.name] for r in rows]
        if field.name == "created_at":
            arrays.append(pa.array(values, pa.int64()).cast(field.type))
        else:
            arrays.append(pa.array(values, field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=RECORD_SCHEMA)


def _mutated(rng: random.Random) -> pa.RecordBatch:
    rows = [_valid_row(rng, n) for n in range(rng.randint(1, SMALL_BATCH_ROWS))]
    for _ in range(rng.choice([0, 1, 1, 1, 2, 3])):
        row, name = rng.choice(rows), rng.choice(list(CELLS))
        value = rng.choice(CELLS[name])
        row[name] = rows[0][name] if value == "DUP" else value
    return _batch(rows)


def _outcome(check: Callable[[], None]) -> tuple[Any, ...] | None:
    try:
        check()
    except AiosMemoryError as exc:
        return type(exc), str(exc), exc.detail
    return None


def test_both_ways_agree_on_thousands_of_mutated_batches() -> None:
    rng = random.Random(16)
    seen: set[tuple[str, Any]] = set()
    for _ in range(3000):
        batch = _mutated(rng)
        by_rows = _outcome(lambda b=batch: check_rows(b, LIMITS, _check_metadata))
        by_columns = _outcome(lambda b=batch: check_columns(b, LIMITS))
        assert by_rows == by_columns, batch.to_pylist()
        if by_rows is not None:
            seen.add((by_rows[0].__name__, by_rows[2].get("field")))
    # Every rule was broken at least once, so every rule was compared.
    expected = (
        {("InvalidValueError", f) for f in ("id", "tenant", "tier", "agent", "session", "kind")}
        | {
            ("InvalidValueError", f)
            for f in ("created_at", "hlc", "origin", "privacy", "codec", "dict_id", "payload")
        }
        | {
            ("InvalidValueError", "raw_size"),
            ("InvalidValueError", "content_hash"),
            ("InvalidValueError", "deleted"),
            ("InvalidValueError", "metadata"),
            ("InvalidValueError", "text"),
            ("LimitExceededError", "metadata"),
            ("UnknownTierError", "tier"),
            ("TextTooLargeError", "raw_size"),
            ("TextTooLargeError", "payload"),
            ("InvalidVectorError", "embedding"),
            ("InvalidVectorError", None),
            ("InvalidVectorError", "embedding_scale"),
            ("DuplicateIdError", "id"),
        }
    )
    assert expected <= seen, expected - seen


@pytest.mark.parametrize("rows", [1, SMALL_BATCH_ROWS, SMALL_BATCH_ROWS + 1])
def test_validate_record_batch_takes_either_way_with_the_same_error(rows: int) -> None:
    rng = random.Random(rows)
    records = [_valid_row(rng, n) for n in range(rows)]
    records[-1]["tier"] = "bogus"
    outcome = _outcome(lambda: validate_record_batch(_batch(records), LIMITS))
    assert outcome is not None
    assert outcome[0].__name__ == "UnknownTierError"
    assert outcome[2] == {"field": "tier", "row": rows - 1, "tier": "bogus"}


def test_a_valid_small_batch_passes_both_ways() -> None:
    rng = random.Random(1)
    batch = _batch([_valid_row(rng, n) for n in range(3)])
    validate_record_batch(batch, LIMITS)
    check_columns(batch, LIMITS)
