"""Binary embedding codes (client/_binary.py): packing, Hamming, rescoring, bad input."""

from __future__ import annotations

import doctest
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aios_memory.client.codec import binary as _binary
from aios_memory.client.codec.binary import (
    binary_codes,
    code_bytes,
    hamming_distances,
    hamming_top,
    rescore,
)
from aios_memory.schemas import InvalidVectorError


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _naive_hamming(a: np.ndarray, b: np.ndarray) -> int:
    return sum(bin(int(x) ^ int(y)).count("1") for x, y in zip(a, b, strict=True))


# -- packing ------------------------------------------------------------------------------


@given(st.integers(1, 70), st.integers(1, 5), st.integers(0, 2**32 - 1), st.booleans())
def test_codes_round_trip_to_the_signs(dim, n, seed, centered):
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim))
    mean = rng.standard_normal(dim) * 0.5 if centered else None
    codes = binary_codes(vectors, mean)
    assert codes.shape == (n, code_bytes(dim)) and codes.dtype == np.uint8
    expected = vectors - (0.0 if mean is None else mean) > 0
    assert np.array_equal(np.unpackbits(codes, axis=1, count=dim).astype(bool), expected)
    padding = np.unpackbits(codes, axis=1)[:, dim:]
    assert not padding.any()  # zero bits, so padding never counts in a distance


def test_one_vector_gives_one_code_equal_to_its_row():
    rng = np.random.default_rng(1)
    rows = _unit(rng, 4, 384)
    mean = rows.mean(axis=0)
    assert binary_codes(rows[2], mean).shape == (48,)
    assert np.array_equal(binary_codes(rows[2], mean), binary_codes(rows, mean)[2])


def test_the_mean_changes_the_bits():
    cone = np.ones(16) + np.linspace(-0.1, 0.1, 16)  # all positive: one constant code
    assert np.array_equal(binary_codes(cone), [255, 255])
    assert np.array_equal(binary_codes(cone, np.ones(16)), [0, 255])


# -- Hamming ------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [384, 100, 8])  # 48 bytes (64-bit words), 13 and 1 (bytes)
def test_hamming_equals_a_naive_count(dim):
    rng = np.random.default_rng(dim)
    codes = binary_codes(rng.standard_normal((200, dim)))
    query = binary_codes(rng.standard_normal(dim))
    got = hamming_distances(codes, query)
    assert got.dtype == np.int32
    assert got.tolist() == [_naive_hamming(row, query) for row in codes]


def test_hamming_top_is_nearest_first_with_ties_in_row_order():
    rng = np.random.default_rng(7)
    codes = rng.integers(0, 256, size=(300, 6), dtype=np.uint8)
    query = rng.integers(0, 256, size=6, dtype=np.uint8)
    naive = sorted(range(300), key=lambda r: (_naive_hamming(codes[r], query), r))
    assert hamming_top(codes, query, 25).tolist() == naive[:25]
    assert hamming_top(codes, query, 1000).tolist() == naive
    assert hamming_top(codes, query, 0).tolist() == []


def test_a_code_is_nearest_itself():
    codes = binary_codes(_unit(np.random.default_rng(3), 50, 64))
    for row in (0, 17, 49):
        assert hamming_top(codes, codes[row], 1).tolist() == [row]


# -- rescoring ----------------------------------------------------------------------------


def _clustered(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit vectors in a narrow cone (like a text embedder's), in 20 tight clusters, and
    one query per cluster close to one of its members."""
    rng = np.random.default_rng(seed)
    dim, offset = 128, 3.0 * np.ones(128) / np.sqrt(128)  # every vector shares a direction
    centres = rng.standard_normal((20, dim))
    docs = np.repeat(centres, 25, axis=0) + rng.standard_normal((500, dim))
    docs = docs / np.linalg.norm(docs, axis=1, keepdims=True) + offset
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    targets = rng.choice(500, size=20, replace=False)
    queries = docs[targets] + 0.01 * rng.standard_normal((20, dim))
    return docs, queries / np.linalg.norm(queries, axis=1, keepdims=True), targets


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rescoring_ranks_the_exact_nearest_first(seed):
    docs, queries, _ = _clustered(seed)
    mean = docs.mean(axis=0)
    codes = binary_codes(docs, mean)
    for query in queries:
        nearest = int(np.argmax(docs @ query))
        candidates = hamming_top(codes, binary_codes(query, mean), 50)
        scores = rescore(codes, query, mean, candidates)
        assert int(candidates[np.argmax(scores)]) == nearest
        everything = rescore(codes, query, mean, np.arange(len(docs)))
        assert int(np.argmax(everything)) == nearest


def test_rescoring_finds_more_of_the_exact_top_ten_than_hamming():
    docs, queries, _ = _clustered(5)
    mean = docs.mean(axis=0)
    codes = binary_codes(docs, mean)
    by_hamming = by_rescore = 0
    for query in queries:
        exact = set(np.argsort(-(docs @ query))[:10].tolist())
        candidates = hamming_top(codes, binary_codes(query, mean), 100)
        ranked = candidates[np.argsort(-rescore(codes, query, mean, candidates), kind="stable")]
        by_hamming += len(exact & set(candidates[:10].tolist()))
        by_rescore += len(exact & set(ranked[:10].tolist()))
    assert by_rescore > by_hamming


def test_rescore_is_the_cosine_to_the_sign_code():
    rng = np.random.default_rng(11)
    docs, query = _unit(rng, 30, 20), _unit(rng, 1, 20)[0]
    mean = docs.mean(axis=0)
    codes = binary_codes(docs, mean)
    signs = np.where(docs - mean > 0, 1.0, -1.0)
    centered = query - mean
    expected = signs @ centered / (np.linalg.norm(centered) * np.sqrt(20))
    got = rescore(codes, query, mean, [4, 0, 29])
    assert got.shape == (3,) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected[[4, 0, 29]], rtol=1e-5)
    assert rescore(codes, query, mean, []).shape == (0,)


# -- shapes and bad input -----------------------------------------------------------------


def test_code_bytes():
    assert [code_bytes(d) for d in (1, 8, 9, 384, 1536)] == [1, 1, 2, 48, 192]
    with pytest.raises(InvalidVectorError):
        code_bytes(0)


@pytest.mark.parametrize(
    "vectors",
    [
        [[0.1, float("nan"), 0.3]],
        [[0.1, float("inf"), 0.3]],
        np.zeros((2, 3, 4)),
        np.zeros((2, 0)),
        [["a", "b"]],
    ],
)
def test_bad_vectors_are_refused(vectors):
    with pytest.raises(InvalidVectorError):
        binary_codes(vectors)


@pytest.mark.parametrize("mean", [np.zeros(7), np.zeros((1, 8)), np.full(8, np.nan)])
def test_a_mean_of_another_dimension_or_nan_is_refused(mean):
    with pytest.raises(InvalidVectorError):
        binary_codes(np.ones((3, 8)), mean)


def test_hamming_refuses_codes_that_do_not_match():
    codes = np.zeros((4, 48), np.uint8)
    for query in (np.zeros(47, np.uint8), np.zeros(48, np.int64), np.zeros((1, 48), np.uint8)):
        with pytest.raises(InvalidVectorError):
            hamming_distances(codes, query)
    with pytest.raises(InvalidVectorError):
        hamming_top(np.zeros((4, 48), np.float32), np.zeros(48, np.uint8), 2)


def test_rescore_refuses_a_query_of_another_dimension_or_nan():
    codes = binary_codes(np.ones((4, 384)))
    with pytest.raises(InvalidVectorError):
        rescore(codes, np.ones(376), None, [0])  # 47 bytes
    with pytest.raises(InvalidVectorError):
        rescore(codes, np.ones(392), None, [0])  # 49 bytes
    with pytest.raises(InvalidVectorError):
        rescore(codes, np.full(384, np.nan), None, [0])
    with pytest.raises(InvalidVectorError):
        rescore(codes, np.ones(384), np.ones(10), [0])
    with pytest.raises(IndexError):
        rescore(codes, np.ones(384), None, [4])


def test_docstring_examples_run():
    assert doctest.testmod(_binary, extraglobs={"np": np}).failed == 0


def test_the_module_imports_no_server_code():
    code = (
        "import aios_memory.client.codec.binary, sys; "
        "bad = [m for m in sys.modules if m.startswith(('duckdb', 'hnswlib', 'tantivy', "
        "'aios_memory.flight_server'))]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
