"""Binary codes for embeddings: one bit per dimension, Hamming search, asymmetric rescoring.

A 384-dimension embedding packs into 48 bytes, against 384 for int8 and 1,536
for float32. Bit ``j`` of a code is 1 where component ``j`` of ``vector - mean``
is positive. Centering matters: embedding models put every vector in a narrow
cone, so without it many bits are nearly constant and carry little. The mean
is an argument, never computed here, because every code that is compared with
another (on every replica, and every query) must be made with the same one.

Dimensions that are not a multiple of 8 are padded at the end with zero bits
(``np.packbits``); the padding is the same in every code, so it adds nothing to
a Hamming distance, and ``rescore`` drops it.

Search is two steps: ``hamming_top`` picks candidates by Hamming distance from
the query's own code, then ``rescore`` ranks them by the float query against
each candidate's ±1 code ("asymmetric": only the stored side is quantized).
bench/embedding_bytes.py measures the recall of each step on LoCoMo.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aios_memory.schemas import InvalidVectorError

__all__ = ["binary_codes", "code_bytes", "hamming_distances", "hamming_top", "rescore"]


def code_bytes(dim: int) -> int:
    """Bytes of one code for ``dim`` dimensions: ``ceil(dim / 8)``.

    >>> code_bytes(384), code_bytes(100)
    (48, 13)
    """
    if dim < 1:
        raise InvalidVectorError(f"a vector needs at least one dimension, not {dim}", got=dim)
    return (dim + 7) // 8


def binary_codes(unit: Any, mean: Any = None) -> np.ndarray:
    """Packed sign bits of ``unit - mean``: rows in, ``(n, ceil(dim / 8))`` uint8 out.

    Parameters
    ----------
    unit : array_like
        ``(n, dim)`` vectors, or one ``(dim,)`` vector (the result is then 1-D).
        Only the signs count, so the rows need not be normalized.
    mean : array_like, optional
        ``(dim,)`` subtracted before taking signs; the same for every code compared.

    Raises
    ------
    InvalidVectorError
        A value is NaN or inf, the array is not 1-D or 2-D, or ``mean`` has another dimension.

    Examples
    --------
    >>> binary_codes(np.array([1.0, -1, 1, 1, -1, -1, -1, 1, 1]))
    array([177, 128], dtype=uint8)
    """
    matrix = _finite(unit, "vectors")
    if matrix.ndim not in (1, 2) or matrix.shape[-1] == 0:
        raise InvalidVectorError(f"vectors must be (n, dim) or (dim,), got shape {matrix.shape}")
    centered = matrix - _mean(mean, matrix.shape[-1])
    packed: np.ndarray = np.packbits(centered > 0, axis=-1)
    return packed


def hamming_distances(codes: Any, query_code: Any) -> np.ndarray:
    """Bits that differ between each row of ``codes`` and ``query_code``; int32, ``(n,)``.

    Examples
    --------
    >>> hamming_distances(np.array([[0, 0], [255, 1]], np.uint8), np.array([0, 1], np.uint8))
    array([1, 8], dtype=int32)
    """
    table, query = _codes(codes), _code(query_code)
    if query.shape[0] != table.shape[1]:
        raise InvalidVectorError(
            f"the query code has {query.shape[0]} bytes, the codes {table.shape[1]}",
            expected=table.shape[1],
            got=query.shape[0],
        )
    if table.shape[1] % 8 == 0:  # whole 64-bit words: 8x fewer popcounts
        table = np.ascontiguousarray(table).view(np.uint64)
        query = np.ascontiguousarray(query).view(np.uint64)
    counts: np.ndarray = np.bitwise_count(table ^ query).sum(axis=1, dtype=np.int32)
    return counts


def hamming_top(codes: Any, query_code: Any, depth: int) -> np.ndarray:
    """Row numbers of the ``depth`` codes nearest ``query_code``, nearest first.

    Equal distances keep row order (lower row first), so results are deterministic.

    Examples
    --------
    >>> codes = np.array([[0b1111], [0b0001], [0b0000], [0b0011]], np.uint8)
    >>> hamming_top(codes, np.array([0], np.uint8), 3)
    array([2, 1, 3])
    """
    if depth < 0:
        raise ValueError(f"depth must be 0 or more, not {depth}")
    distances = hamming_distances(codes, query_code).astype(np.int64)
    n = distances.shape[0]
    keys = distances * max(n, 1) + np.arange(n)  # unique keys: distance, then row
    if depth < n:
        keys_part = np.argpartition(keys, depth)[:depth]
        top: np.ndarray = keys_part[np.argsort(keys[keys_part])]
        return top
    ordered: np.ndarray = np.argsort(keys)
    return ordered


def rescore(codes: Any, query_unit: Any, mean: Any, candidates: Any) -> np.ndarray:
    """Asymmetric scores of ``candidates``: the float query against each one's ±1 code.

    Parameters
    ----------
    codes : array_like
        ``(n, ceil(dim / 8))`` uint8 from ``binary_codes``.
    query_unit : array_like
        ``(dim,)`` float query; its length gives ``dim``.
    mean : array_like or None
        Subtracted from the query first, as it was from the stored vectors.
    candidates : array_like
        Row numbers into ``codes`` (for example from ``hamming_top``).

    Returns
    -------
    numpy.ndarray
        float32 cosine between the centered query and each candidate's ±1 code, in the
        order of ``candidates``; higher is nearer.

    Examples
    --------
    >>> codes = binary_codes(np.array([[1.0, 1, -1, -1, 1, 1, 1, 1], [-1.0, -1, 1, 1, 1, 1, 1, 1]]))
    >>> rescore(codes, np.array([0.5, 0.5, -0.5, -0.5, 0, 0, 0, 0]), None, [1, 0])
    array([-0.70710677,  0.70710677], dtype=float32)
    """
    query = _finite(query_unit, "query")
    if query.ndim != 1 or query.shape[0] == 0:
        raise InvalidVectorError(f"the query must be one (dim,) vector, got shape {query.shape}")
    dim = query.shape[0]
    table = _codes(codes)
    if table.shape[1] != code_bytes(dim):
        raise InvalidVectorError(
            f"codes of {table.shape[1]} bytes do not fit a {dim}-dimension "
            f"query ({code_bytes(dim)} bytes)",
            expected=code_bytes(dim),
            got=table.shape[1],
        )
    rows = _rows(candidates, table.shape[0])
    signs = np.unpackbits(table[rows], axis=1, count=dim).astype(np.float32) * 2.0 - 1.0
    centered = (query - _mean(mean, dim)).astype(np.float32)
    norm = float(np.linalg.norm(centered)) * np.sqrt(dim)
    scores: np.ndarray = signs @ centered / np.float32(norm if norm > 0 else 1.0)
    return scores


# -- checks -------------------------------------------------------------------------------


def _finite(values: Any, what: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidVectorError(f"the {what} are not numbers") from None
    if not np.isfinite(array).all():
        raise InvalidVectorError(f"the {what} contain NaN or inf")
    return array


def _mean(mean: Any, dim: int) -> np.ndarray | float:
    if mean is None:
        return 0.0
    vector = _finite(mean, "mean")
    if vector.shape != (dim,):
        raise InvalidVectorError(
            f"the mean has shape {vector.shape}; the vectors have dimension {dim}",
            expected=dim,
            got=list(vector.shape),
        )
    return vector


def _codes(codes: Any) -> np.ndarray:
    return _uint8(codes, 2, "codes must be a 2-D uint8 array")


def _code(code: Any) -> np.ndarray:
    return _uint8(code, 1, "a query code must be a 1-D uint8 array")


def _uint8(value: Any, ndim: int, what: str) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype != np.uint8 or array.ndim != ndim:
        raise InvalidVectorError(
            f"{what} (from binary_codes), got {array.dtype} of shape {array.shape}"
        )
    return array


def _rows(candidates: Any, n: int) -> np.ndarray:
    rows = np.asarray(candidates)
    if rows.size == 0:
        return np.empty(0, np.intp)
    if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
        raise ValueError(
            f"candidates must be a 1-D array of row numbers, got {rows.dtype} of shape {rows.shape}"
        )
    if rows.min() < 0 or rows.max() >= n:
        raise IndexError(f"candidate rows must lie in 0..{n - 1}")
    return rows.astype(np.intp)
