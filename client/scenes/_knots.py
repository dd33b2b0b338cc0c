"""Error-bounded adaptive keyframes (the ``knots`` predictor): store only the frames
where a straight line would leave the declared error bound.

Within a segment, each object's sequence of grid integers (one per present
frame, as ``_motion`` lays them out) is cut into spans. Only the ends of
the spans, the knots, are stored; a frame between two knots takes the integer
on the straight line between them, rounded half up in integer arithmetic, so a
seek and a sequential decode agree bit for bit. The encoder chooses the knots
greedily: from each knot, the farthest next knot whose span keeps every frame
within the bound, measured against the input with the same functions that
measure the stored episode (``_quantize``). The bound covers a group's
channels together: Euclidean metres for positions, the rotation angle for
rotations.

This is where a bound above the quantization error pays: pedestrians walk in
nearly straight lines, so at a few centimetres most of their frames are
interpolated. At the quantization bound itself a span can only absorb frames
whose rounding happens to agree with the line.

A segment's blob, per object in keyframe order: the knot count minus one, the
gaps between knots, then per channel the differences of the knot values; all
zigzagged into byte planes behind a count, one zstd frame.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import numpy as np
import zstandard

from aios_memory.schemas.errors import CorruptDataError

from . import _motion as motion
from ._quantize import QuantTrack

_COUNT = struct.Struct("<I")

# An error function: the input rows of a span and their decoded integers -> errors.
ErrorOf = Callable[[np.ndarray, np.ndarray], np.ndarray]


def interpolate(knots: np.ndarray, values: np.ndarray, length: int) -> np.ndarray:
    """The integers ``(channels, length)`` on the lines between ``knots`` (ascending
    indices, the first 0) holding ``values`` ``(channels, len(knots))``."""
    at = np.arange(length)
    span = np.searchsorted(knots, at, side="right") - 1
    following = np.minimum(span + 1, len(knots) - 1)
    return on_lines(
        values[:, span], values[:, following], at - knots[span], knots[following] - knots[span]
    )


def on_lines(
    low: np.ndarray, high: np.ndarray, offset: np.ndarray, width: np.ndarray
) -> np.ndarray:
    """``low + (high - low) * offset / width`` rounded half up, exactly, in integers (the
    value ``low`` where ``width`` is 0: at a sequence's last knot, or past it)."""
    return low + np.floor_divide(2 * (high - low) * offset + width, 2 * np.maximum(width, 1))


def choose_knots(
    inputs: np.ndarray, ints: np.ndarray, error_of: ErrorOf, bound: float
) -> np.ndarray:
    """Knot indices for one sequence: ``inputs`` its input rows, ``ints`` ``(length,
    channels)`` their integers. Each span is the longest one found by doubling, then
    bisecting, that keeps every frame within ``bound`` (a span of 1 always does: its
    frames are knots)."""
    length = len(ints)
    knots = [0]
    while knots[-1] < length - 1:
        start = knots[-1]
        good, step = start + 1, 1
        while good + step < length and _fits(inputs, ints, start, good + step, error_of, bound):
            good, step = good + step, step * 2
        low, high = good, min(good + step, length)  # ``high`` fails or is past the end
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (
                (middle, high)
                if _fits(inputs, ints, start, middle, error_of, bound)
                else (low, middle)
            )
        knots.append(low)
    return np.array(knots, dtype=np.int64)


def _fits(
    inputs: np.ndarray, ints: np.ndarray, start: int, end: int, error_of: ErrorOf, bound: float
) -> bool:
    line = interpolate(np.array([0, end - start]), ints[[start, end]].T, end - start + 1).T
    return bool(error_of(inputs[start : end + 1], line).max() <= bound)


def pack(sequences: list[tuple[np.ndarray, np.ndarray]]) -> bytes:
    """One segment's blob from each object's ``(knots, values (channels, n_knots))``."""
    parts = []
    for knots, values in sequences:
        parts += [
            [len(knots) - 1],
            np.diff(knots),
            *np.diff(values, n=2, prepend=values[:, :1], axis=1),
        ]
    flat = np.concatenate([np.asarray(p, dtype=np.int64) for p in parts])
    return zstandard.ZstdCompressor(level=motion.ZSTD_LEVEL).compress(
        _COUNT.pack(len(flat)) + motion.zigzag_planes(flat)
    )


def unpack(
    blob: bytes,
    firsts: np.ndarray,
    lengths: np.ndarray,
    n_frames: int,
    columns: np.ndarray | None = None,
) -> np.ndarray:
    """A blob back to padded integers ``(channels, n_objects, n_frames)``: object ``i``'s
    ``lengths[i]`` values left-aligned from its keyframe value ``firsts[:, i]``, then
    its last value repeated; or with ``columns``, only object ``i``'s value at
    ``columns[i]``, ``(channels, n_objects)`` (a seek needs no more). Strict: every
    number must be used and make sense."""
    channels, n_objects = firsts.shape
    counts, knots, values = _read_knots(
        _numbers(blob, n_objects * (1 + (channels + 1) * n_frames)), firsts, lengths
    )
    # Every object's knots on one axis, object i's shifted by i * n_frames: one search
    # finds the span of every cell (a seek decodes a segment; a loop per object was 9 ms).
    owner = np.repeat(np.arange(n_objects), counts)
    shifted = knots + owner * n_frames
    last = np.repeat(np.cumsum(counts) - 1, counts)
    wanted = np.arange(n_frames)[None, :] if columns is None else columns[:, None]
    cells = (
        np.arange(n_objects)[:, None] * n_frames + np.minimum(wanted, lengths[:, None] - 1)
    ).ravel()
    span = np.searchsorted(shifted, cells, side="right") - 1
    following = np.minimum(span + 1, last[span])
    out = on_lines(
        values[:, span],
        values[:, following],
        cells - shifted[span],
        shifted[following] - shifted[span],
    )
    return out.reshape(channels, n_objects, -1) if columns is None else out


def _read_knots(
    flat: np.ndarray, firsts: np.ndarray, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every object's knot count, then all knot indices and values ``(channels, knots)``
    one object after another, from the numbers of a blob."""
    channels, n_objects = firsts.shape
    starts, counts, at = [], [], 0
    numbers = flat.tolist()  # walking from count to count: Python ints are faster here
    for _ in range(n_objects):
        count = numbers[at] + 1 if at < len(numbers) else 0
        if count < 1 or at + count + channels * (count - 1) > len(numbers):
            raise CorruptDataError("a knot segment is cut short")
        starts.append(at + 1)
        counts.append(count)
        at += count + channels * (count - 1)
    if at != len(numbers):
        raise CorruptDataError("a knot segment carries numbers after its last object")
    starts_, counts_ = np.array(starts, dtype=np.int64), np.array(counts, dtype=np.int64)
    gaps_per = counts_ - 1
    # Position of each stored difference within its object's run, and where runs begin.
    local = np.arange(int(gaps_per.sum())) - np.repeat(np.cumsum(gaps_per) - gaps_per, gaps_per)
    gaps = flat[np.repeat(starts_, gaps_per) + local]
    rises = np.stack(
        [flat[np.repeat(starts_ + gaps_per * (1 + c), gaps_per) + local] for c in range(channels)]
    )
    if (gaps < 1).any():
        raise CorruptDataError("a knot segment's knots are out of order")
    first_knot = np.cumsum(counts_) - counts_  # where each object's knots begin
    knots = _restarting_cumsum(
        _with_firsts(gaps, np.zeros((1, n_objects), np.int64), counts_)[0], first_knot, counts_
    )
    if not np.array_equal(knots[first_knot + counts_ - 1], lengths - 1):
        raise CorruptDataError("a knot segment's knots do not span its sequence")
    slopes = _restarting_cumsum(
        _with_firsts(rises, np.zeros_like(firsts), counts_), first_knot, counts_
    )
    head = np.zeros(len(knots), dtype=bool)
    head[first_knot] = True
    values = _restarting_cumsum(
        slopes + np.where(head, np.repeat(firsts, counts_, axis=1), 0), first_knot, counts_
    )
    return counts_, knots, values


def _with_firsts(differences: np.ndarray, firsts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``differences`` (per object ``counts - 1`` of them) with each object's first value
    put in front of its run: ``(..., counts.sum())``."""
    differences = np.atleast_2d(differences)
    total = int(counts.sum())
    out = np.empty(differences.shape[:-1] + (total,), dtype=np.int64)
    head = np.cumsum(counts) - counts
    body = np.ones(total, dtype=np.bool_)
    body[head] = False
    out[..., head] = firsts
    out[..., body] = differences
    return out


def _restarting_cumsum(values: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """A running sum along the last axis that starts over at each object's first cell."""
    total = np.cumsum(values, axis=-1)
    before = np.where(starts > 0, total[..., np.maximum(starts - 1, 0)], 0)
    return total - np.repeat(before, counts, axis=-1)


def _numbers(blob: bytes, limit: int) -> np.ndarray:
    raw = motion.decompress_exact(blob, _COUNT.size + limit * motion.MAX_PLANES)
    if len(raw) < _COUNT.size:
        raise CorruptDataError("a knot segment has no count")
    (count,) = _COUNT.unpack_from(raw)
    planes, rest = divmod(len(raw) - _COUNT.size, max(count, 1))
    if count > limit or rest or not 1 <= planes <= motion.MAX_PLANES:
        raise CorruptDataError(f"a knot segment of {len(raw)} bytes does not hold {count} numbers")
    return motion.integers(
        np.frombuffer(raw, dtype=np.uint8, offset=_COUNT.size).reshape(planes, count)
    )


def simplify(
    tracks: dict[int, QuantTrack],
    inputs: dict[int, tuple[np.ndarray, np.ndarray | None]],
    error_of: dict[str, ErrorOf],
    bounds: dict[str, float],
    every: int,
) -> dict[tuple[int, int, str], np.ndarray]:
    """Choose the knots of every object's sequences, segment by segment, and move each
    track's integers onto the lines between them (in place: the stored scene is the
    simplified one, which ``scene_hash`` then covers). Keyed by (first frame, object
    index, channel group)."""
    knots: dict[tuple[int, int, str], np.ndarray] = {}
    for index, track in tracks.items():
        groups = {
            "position": (track.positions, inputs[index][0]),
            "rotation": (track.rotations, inputs[index][1]),
        }
        for first in range(0, len(track.present), every):
            frames = np.flatnonzero(track.present[first : first + every]) + first
            for group, (ints, original) in groups.items():
                if ints is None or original is None or not len(frames):
                    continue
                chosen = choose_knots(
                    original[frames], ints[frames], error_of[group], bounds[group]
                )
                ints[frames] = interpolate(chosen, ints[frames[chosen]].T, len(frames)).T
                knots[(first, index, group)] = chosen
    return knots
