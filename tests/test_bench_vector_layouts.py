"""``bench/vector_layouts.py`` on a small seeded set: every layout answers, and reopens the same.

Speed is not asserted (bench/RESULTS.md has it); what a test can hold is that the faiss
layouts' start-up path (rebuilding from the stored codes) answers as the index it was rebuilt
from, that filters hold, that the exact-rescoring layout finds what exact search finds, and the
byte counts the bench reports.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import vector_layouts as bench  # noqa: E402
from _vectors import exact_top_k, make_dataset  # noqa: E402


@pytest.fixture(scope="module")
def data() -> dict:
    dataset = make_dataset(3000, 20, seed=5)
    allowed = np.flatnonzero(dataset.groups == bench.FILTER_GROUP)
    return {
        "set": dataset,
        "allowed": allowed,
        "plain": exact_top_k(dataset.vectors, dataset.queries, bench.K),
        "filtered": exact_top_k(dataset.vectors, dataset.queries, bench.K, rows=allowed),
    }


@pytest.mark.parametrize("name", sorted(bench.layouts(200)))
def test_every_layout_reopens_to_the_same_answers_and_filters(name: str, data: dict) -> None:
    built = bench.layouts(200)[name](data["set"].vectors, data["set"].vectors)
    built.reopen()  # raises when the rebuilt index answers differently
    found, _ = bench.queries_timed(built.search, data["set"].queries, None)
    assert bench.recall_vs_exact(found, data["plain"]) > 0.5
    built.search.prepare(data["allowed"])
    filtered, _ = bench.queries_timed(built.search, data["set"].queries, data["allowed"])
    allowed = set(data["allowed"].tolist())
    assert all(set(f[f >= 0].tolist()) <= allowed for f in filtered)


def test_binary_int8_finds_what_exact_search_finds(data: dict) -> None:
    built = bench.binary_int8(200)(data["set"].vectors, data["set"].vectors)
    found, _ = bench.queries_timed(built.search, data["set"].queries, None)
    assert bench.recall_vs_exact(found, data["plain"]) >= 0.95
    assert built.stored_bytes == 388  # the int8 column alone: 384 codes and a float32 scale


def test_rabitq_codes_are_the_sizes_reported(data: dict) -> None:
    sizes = {bits: bench.faiss_codes("rabitq_flat", bits)(data["set"].vectors, data["set"].vectors)
             for bits in (1, 4)}  # fmt: skip
    # A bit a dimension and two float32 factors; four bits and three (faiss 1.12 and later).
    assert (sizes[1].stored_bytes, sizes[4].stored_bytes) == (384 / 8 + 8, 384 / 2 + 20)
