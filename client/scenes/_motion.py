"""Motion segments: grid integers of many objects over a run of frames, as one small blob.

Within a segment, each active object's values at the frames where it is
present form one sequence (absent frames are skipped: a pedestrian who walks
in halfway costs nothing before). The keyframe holds each sequence's first
value; the blob holds the residuals of the rest. The predictor guesses each
value from the ones before it in the sequence; only the residual is stored:

- ``delta``: the previous value (residual = first difference);
- ``velocity``: constant velocity, ``2 * previous - the one before`` (residual =
  second difference);
- ``acceleration``: constant acceleration (third difference).

Near the start, where there are too few earlier values, the residual is the
difference of the highest order those values allow.

Residuals are zigzagged (small magnitudes to small unsigned numbers), laid out
component-major (all x residuals, then all y, ...: a flat axis such as z of
ground-plane data becomes one run of zeros), split into little-endian byte
planes (the high planes of small numbers are runs of zeros, yet one big jump
costs only its own bytes), and compressed as one zstd frame. Integer arithmetic
throughout: decoding gives back exactly the integers encoded.

Sequences of different lengths are handled padded: ``(channels, n_objects,
n_frames)`` arrays whose rows hold each sequence left-aligned; ``mask`` marks
the residuals that exist (row ``i`` has ``length_i - 1``).

The encoding's name, which the motion table stores, is the contract's
(``aios_memory.schemas.scenes.motion_encoding_of``).
"""

from __future__ import annotations

import functools

import numpy as np
import zstandard

from aios_memory.schemas.errors import CorruptDataError

ZSTD_LEVEL = 19
# Residuals of int32 values under the acceleration predictor need at most 36 bits.
MAX_PLANES = 5


ORDERS = {"delta": 1, "velocity": 2, "acceleration": 3}


def residuals(values: np.ndarray, predictor: str) -> np.ndarray:
    """Residuals ``(channels, n_objects, n_frames - 1)`` of ``values`` ``(channels, n_objects,
    n_frames)``: frames on the last axis, so every sum runs over contiguous memory."""
    out = np.diff(values, axis=-1)
    for order in range(1, ORDERS[predictor]):
        out[..., order:] = np.diff(out[..., order - 1 :], axis=-1)
    return out


def reconstruct(first: np.ndarray, residual: np.ndarray, predictor: str) -> np.ndarray:
    """Values ``(channels, n_objects, n_frames)`` from the first values ``(channels,
    n_objects)`` and the residuals (consumed: summed in place)."""
    for order in range(ORDERS[predictor] - 1, 0, -1):
        np.cumsum(residual[..., order - 1 :], axis=-1, out=residual[..., order - 1 :])
    out = np.empty(residual.shape[:-1] + (residual.shape[-1] + 1,), dtype=np.int64)
    out[..., 0] = first
    np.cumsum(residual, axis=-1, out=out[..., 1:])
    out[..., 1:] += first[..., None]
    return out


# Weight tables of segments up to this many frames are kept (a 256-frame one is 0.5 MB).
MAX_WEIGHTED_FRAMES = 1024


def values_at(
    first: np.ndarray, residual: np.ndarray, columns: np.ndarray, n_frames: int, predictor: str
) -> np.ndarray:
    """Each object's value at its own column ``(channels, n_objects)``: what ``reconstruct``
    gives there, as one weighted sum of the residuals (a seek needs one column, not all)."""
    if n_frames > MAX_WEIGHTED_FRAMES:
        values = reconstruct(first, residual, predictor)
        return values[:, np.arange(len(columns)), columns]
    weights = _weight_table(predictor, n_frames)[columns, : residual.shape[-1]]
    return first + np.einsum("cnw,nw->cn", residual, weights)


@functools.lru_cache(maxsize=8)
def _weight_table(predictor: str, n_frames: int) -> np.ndarray:
    """Row ``k``: how much each residual adds to the value at column ``k`` (integers)."""
    impulses = np.eye(max(n_frames - 1, 0), dtype=np.int64)[None]
    values = reconstruct(np.zeros((1, impulses.shape[1]), dtype=np.int64), impulses, predictor)
    table = np.ascontiguousarray(values[0].T)
    table.setflags(write=False)
    return table


def residual_mask(lengths: np.ndarray, n_frames: int) -> np.ndarray:
    """``(n_objects, n_frames - 1)``: True where a sequence of each length has a residual."""
    return np.arange(max(n_frames - 1, 0))[None, :] < (lengths[:, None] - 1)


def pack(residual: np.ndarray, mask: np.ndarray) -> bytes:
    """The residuals that exist (``mask``) as the stored blob (empty when there are none)."""
    if not mask.any():
        return b""
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(
        zigzag_planes(residual[:, mask].ravel())
    )


def zigzag_planes(flat: np.ndarray) -> bytes:
    """Signed integers zigzagged, as the few little-endian byte planes they need."""
    zigzag = ((flat << 1) ^ (flat >> 63)).astype("<u8")
    planes = max(1, (int(zigzag.max(initial=0)).bit_length() + 7) // 8)
    return zigzag.view(np.uint8).reshape(-1, 8)[:, :planes].T.tobytes()


def unpack(blob: bytes, mask: np.ndarray, channels: int, frames: int | None = None) -> np.ndarray:
    """The blob back to padded residuals ``(channels, n_objects, n_frames - 1)``, zeros
    where ``mask`` is False; strict about sizes. With ``frames``, only the residuals of
    the first ``frames`` frames come back (a seek needs no more). The array is new and
    contiguous: the caller may sum in place."""
    count = int(mask.sum())
    width = mask.shape[1] if frames is None else min(max(frames - 1, 0), mask.shape[1])
    if count == 0:
        if blob:
            raise CorruptDataError("a motion segment with no residuals carries data")
        return np.zeros((channels, mask.shape[0], width), dtype=np.int64)
    raw = decompress_exact(blob, count * channels * MAX_PLANES)
    planes, rest = divmod(len(raw), count * channels)
    if rest or not 1 <= planes <= MAX_PLANES:
        raise CorruptDataError(
            f"a motion segment of {len(raw)} bytes does not hold {count * channels} residuals"
        )
    stacked = np.frombuffer(raw, dtype=np.uint8).reshape(planes, channels, count)
    if count == mask.size:  # every object present throughout: a plain grid, cut before decoding
        return integers(stacked.reshape((planes, channels) + mask.shape)[..., :width])
    out = np.zeros((channels,) + mask.shape, dtype=np.int64)
    out[:, mask] = integers(stacked)
    return np.ascontiguousarray(out[..., :width])


def integers(planes: np.ndarray) -> np.ndarray:
    """Little-endian byte planes (first axis) of zigzagged numbers to signed integers."""
    zigzag = planes[0].astype(np.int64)
    for plane in range(1, len(planes)):
        zigzag |= planes[plane].astype(np.int64) << (8 * plane)
    return (zigzag >> 1) ^ -(zigzag & 1)


def decompress_exact(blob: bytes, limit: int) -> bytes:
    """One zstd frame that declares its size (at most ``limit``), with nothing after it."""
    try:
        size = zstandard.frame_content_size(blob)
    except zstandard.ZstdError as error:
        raise CorruptDataError(f"not a zstd frame: {error}") from None
    if size < 0 or size > limit:
        raise CorruptDataError(f"a zstd frame declares {size} bytes (limit {limit})")
    reader = zstandard.ZstdDecompressor().decompressobj()
    try:
        raw = reader.decompress(blob)
    except zstandard.ZstdError as error:
        raise CorruptDataError(f"a zstd frame does not decode: {error}") from None
    if not reader.eof or reader.unused_data or len(raw) != size:
        raise CorruptDataError("a zstd frame is cut short or followed by other bytes")
    return raw
