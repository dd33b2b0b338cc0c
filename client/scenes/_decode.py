"""Decoding a checked episode (``_layout.Layout``): segments to integers to floats.

``segment_values`` is the one place motion is decoded; the sequential decoder
and the replayer both call it, so they see the same integers, and both turn
them into floats with ``_quantize``'s element-wise functions.
"""

from __future__ import annotations

import bisect
import marshal
from collections.abc import Iterator
from typing import Any

import numpy as np

from . import _knots as knots
from . import _motion as motion
from ._layout import Layout, Segment
from ._quantize import QuantTrack
from ._tables import CHANNELS, QuantScene

__all__ = [
    "segment_values",
    "segment_column",
    "sequence_index",
    "quant_tracks",
    "quant_scene",
    "AttributeTimeline",
]


def segment_values(
    layout: Layout, segment: Segment, frames: int | None = None
) -> dict[str, np.ndarray]:
    """Each channel group's sequences of one segment: ``(channels, n_objects, length)``
    grid integers, row ``i`` holding object ``i``'s values at its present frames,
    left-aligned. ``frames`` limits the work to what the first ``frames`` frames need."""
    predictor = layout.episode["predictor"]
    if predictor == "knots":
        return {group: values[..., :frames] for group, _, values in _knot_values(segment, None)}
    return {
        group: motion.reconstruct(first, residual, predictor)
        for group, _, first, residual in _residuals(segment, frames)
    }


def segment_column(layout: Layout, segment: Segment, column: int) -> dict[str, np.ndarray]:
    """Each channel group's values at frame ``column`` of the segment, ``(n_objects,
    channels)`` (meaningful for the objects present there): what ``segment_values``
    gives at the same place, by a weighted sum instead of running sums."""
    predictor = layout.episode["predictor"]
    at = np.maximum(sequence_index(segment, column), 0)
    if predictor == "knots":
        return {group: values.T for group, _, values in _knot_values(segment, at)}
    return {
        group: motion.values_at(first, residual, at[rows], segment.n_frames, predictor).T
        for group, rows, first, residual in _residuals(segment, column + 1)
    }


def _residuals(
    segment: Segment, frames: int | None
) -> Iterator[tuple[str, Any, np.ndarray, np.ndarray]]:
    """Per channel group: its object rows, first values and residuals (``frames`` of them)."""
    firsts = {"position": segment.positions, "rotation": segment.rotations}
    lengths = segment.presence.sum(axis=1)
    for group, blob in segment.blobs.items():
        rows = slice(None) if group == "position" else segment.rotating
        mask = motion.residual_mask(lengths[rows], segment.n_frames)
        yield group, rows, firsts[group].T, motion.unpack(blob, mask, CHANNELS[group], frames)


def _knot_values(segment: Segment, at: np.ndarray | None) -> Iterator[tuple[str, Any, np.ndarray]]:
    """Per channel group: its object rows and their integers ``(channels, n_objects,
    n_frames)`` (each sequence left-aligned, padded by its last value), or only those
    at each object's sequence index ``at``, ``(channels, n_objects)``."""
    firsts = {"position": segment.positions, "rotation": segment.rotations}
    lengths = segment.presence.sum(axis=1)
    for group, blob in segment.blobs.items():
        rows = slice(None) if group == "position" else segment.rotating
        yield (
            group,
            rows,
            knots.unpack(
                blob,
                firsts[group].T,
                lengths[rows],
                segment.n_frames,
                None if at is None else at[rows],
            ),
        )


def sequence_index(segment: Segment, column: int) -> np.ndarray:
    """For each object of the segment, where its value at ``column`` sits in its sequence
    (-1 before its first present frame; meaningful only where it is present)."""
    return segment.presence[:, : column + 1].sum(axis=1) - 1


def quant_tracks(layout: Layout) -> dict[int, QuantTrack]:
    """Every track on the grid, decoded sequentially (zeros at absent frames)."""
    n = layout.n_frames
    tracks = {
        i: QuantTrack(
            _present(toggles, n),
            np.zeros((n, 3), dtype=np.int64),
            np.zeros((n, 3), dtype=np.int64) if layout.has_rotation[i] else None,
        )
        for i, toggles in enumerate(layout.toggles)
        if layout.has_track[i]
    }
    for segment in layout.segments.values():
        values = segment_values(layout, segment)
        rotation_row = np.cumsum(segment.rotating) - 1
        for row, index in enumerate(segment.objects):
            frames = np.flatnonzero(segment.presence[row]) + segment.first_frame
            tracks[index].positions[frames] = values["position"][:, row, : len(frames)].T
            if segment.rotating[row]:
                rotations = tracks[index].rotations
                assert rotations is not None  # has_rotation, checked by read_layout
                rotations[frames] = values["rotation"][:, rotation_row[row], : len(frames)].T
    return tracks


def _present(toggles: list[int], n_frames: int) -> np.ndarray:
    present = np.zeros(n_frames, dtype=bool)
    bounds = [*toggles, n_frames] if len(toggles) % 2 else toggles
    for start, end in zip(bounds[::2], bounds[1::2], strict=True):
        present[start:end] = True
    return present


def quant_scene(layout: Layout, tracks: dict[int, QuantTrack]) -> QuantScene:
    """The decoded scene on the grid, as the encoder saw it (for ``scene_hash``)."""
    episode = layout.episode
    return QuantScene(
        episode["name"],
        episode["frame_rate"],
        layout.n_frames,
        layout.objects,
        tracks,
        layout.events,
        episode["source"],
        episode["step_m"],
        episode["step_deg"],
    )


class AttributeTimeline:
    """Each object's attributes over time: its initial ones, updated by ``attribute`` events.

    Kept marshalled (values from JSON are all types ``marshal`` knows, and the
    bytes never leave this object): ``marshal.loads`` hands every caller its own
    copy in about a microsecond, ten times faster than ``copy.deepcopy``.
    """

    def __init__(self, layout: Layout) -> None:
        self._frames: list[list[int]] = []
        self._texts: list[list[bytes]] = []
        index = {obj.id: i for i, obj in enumerate(layout.objects)}
        current = [dict(obj.attributes) for obj in layout.objects]
        for obj in layout.objects:
            self._frames.append([-1])
            self._texts.append([marshal.dumps(obj.attributes)])
        for event in layout.events:
            if event.type == "attribute" and event.object_id in index:
                i = index[event.object_id]
                current[i].update(event.params)
                self._frames[i].append(event.frame)
                self._texts[i].append(marshal.dumps(current[i]))

    def at(self, index: int, frame: int) -> dict[str, Any]:
        """The attributes of object ``index`` at ``frame`` (a copy the caller may change)."""
        position = bisect.bisect_right(self._frames[index], frame) - 1
        return marshal.loads(self._texts[index][position])
