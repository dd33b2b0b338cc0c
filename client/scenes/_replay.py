"""Replay: any moment of an encoded episode, from the keyframe at or before it.

A seek decodes the one segment that holds the frame (a zstd frame and two
cumulative sums over at most ``keyframe_every`` frames), never the frames
before it. The last few decoded segments are kept, so drawing a strip or a
trail reads each segment once.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from aios_memory.schemas.errors import InvalidValueError, NotFoundError

from ._decode import AttributeTimeline, segment_column, segment_values, sequence_index
from ._encoded import EncodedScene
from ._layout import Segment
from ._quantize import position_floats, rotation_floats
from .model import ObjectState, SceneObject

__all__ = ["Replayer", "DEFAULT_CACHED_SEGMENTS"]

DEFAULT_CACHED_SEGMENTS = 4
# A time computed as f / rate may come back as f - 1e-15 frames: still frame f.
_FRAME_EPSILON = 1e-9


class Replayer:
    """Every object's pose and attributes at any moment of an encoded episode.

    Parameters
    ----------
    encoded : EncodedScene
        The episode (already checked when it was built).
    cache_segments : int
        Decoded segments kept (0: every seek decodes its segment again, and computes
        only the frame it needs).

    Not thread-safe (the segment cache): use one replayer per thread.
    """

    def __init__(
        self, encoded: EncodedScene, *, cache_segments: int = DEFAULT_CACHED_SEGMENTS
    ) -> None:
        self._layout = encoded.layout
        self._timeline = AttributeTimeline(self._layout)
        self._cache: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        self._cache_size = cache_segments
        self._index = {obj.id: i for i, obj in enumerate(self._layout.objects)}
        self.objects: list[SceneObject] = list(self._layout.objects)
        self.frame_rate: float = float(self._layout.episode["frame_rate"])
        self.n_frames: int = self._layout.n_frames

    @property
    def duration(self) -> float:
        """Seconds from the first frame to the last."""
        return max(self.n_frames - 1, 0) / self.frame_rate

    def frame_at(self, t: float) -> int:
        """The frame shown at ``t`` seconds: ``floor(t * rate)``, clamped to the scene."""
        if not math.isfinite(t):
            raise InvalidValueError(f"t must be a finite number of seconds, not {t}")
        frame = math.floor(t * self.frame_rate + _FRAME_EPSILON)
        return min(max(frame, 0), max(self.n_frames - 1, 0))

    def state_at(self, t: float) -> dict[str, ObjectState]:
        """Every present object's state at ``t`` seconds (absent objects left out)."""
        if not self.n_frames:
            return {}
        return self.seek_frame(self.frame_at(t))

    def seek_frame(self, frame: int) -> dict[str, ObjectState]:
        """Every present object's state at ``frame`` (``0 <= frame < n_frames``)."""
        self._check_frame(frame)
        every = self._layout.keyframe_every
        segment = self._layout.segments.get(frame - frame % every)
        if segment is None:
            return {}
        column = frame - segment.first_frame
        here = segment.presence[:, column]
        ints = self._column(segment, column)
        positions = position_floats(ints["position"], self._layout.episode["step_m"])
        rotations = (
            rotation_floats(ints["rotation"], self._layout.rotation_step)
            if "rotation" in ints
            else None
        )
        rotation_rows = np.cumsum(segment.rotating) - 1
        states = {}
        for row in np.flatnonzero(here).tolist():
            index = int(segment.objects[row])
            rotation = rotations[rotation_rows[row]] if segment.rotating[row] else None  # type: ignore[index]
            states[self.objects[index].id] = ObjectState(
                positions[row], rotation, self._timeline.at(index, frame)
            )
        return states

    def positions(self, object_id: str, first_frame: int, last_frame: int) -> np.ndarray:
        """The object's positions over frames ``first_frame..last_frame`` (both included),
        ``(n, 3)`` metres with NaN rows where it is absent: a trail."""
        if object_id not in self._index:
            raise NotFoundError(f"no object {object_id!r} in this scene", object_id=object_id)
        self._check_frame(first_frame)
        self._check_frame(last_frame)
        index, every = self._index[object_id], self._layout.keyframe_every
        out = np.full((max(last_frame - first_frame + 1, 0), 3), np.nan)
        for start in range(first_frame - first_frame % every, last_frame + 1, every):
            segment = self._layout.segments.get(start)
            row = _row_of(segment, index)
            if segment is None or row is None:
                continue
            frames = np.flatnonzero(segment.presence[row]) + start
            ints = self._values(segment)["position"][:, row, : len(frames)].T
            keep = (frames >= first_frame) & (frames <= last_frame)
            out[frames[keep] - first_frame] = position_floats(
                ints[keep], self._layout.episode["step_m"]
            )
        return out

    def _check_frame(self, frame: int) -> None:
        if not isinstance(frame, (int, np.integer)) or not 0 <= frame < self.n_frames:
            raise InvalidValueError(
                f"frame must be an integer in [0, {self.n_frames}), not {frame!r}"
            )

    def _column(self, segment: Segment, column: int) -> dict[str, np.ndarray]:
        """Each group's integers ``(n_objects, channels)`` at one frame of the segment."""
        if self._cache_size <= 0:
            return segment_column(self._layout, segment, column)
        values = self._values(segment)
        at = np.maximum(sequence_index(segment, column), 0)
        out = {"position": values["position"][:, np.arange(len(at)), at].T}
        if "rotation" in values:
            rotating = at[segment.rotating]
            out["rotation"] = values["rotation"][:, np.arange(len(rotating)), rotating].T
        return out

    def _values(self, segment: Segment) -> dict[str, np.ndarray]:
        """The segment's integers, all frames (kept for the next seeks)."""
        cached = self._cache.get(segment.first_frame)
        if cached is not None:
            self._cache.move_to_end(segment.first_frame)
            return cached
        values = segment_values(self._layout, segment)
        if self._cache_size <= 0:
            return values
        self._cache[segment.first_frame] = values
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return values


def _row_of(segment: Segment | None, index: int) -> int | None:
    if segment is None:
        return None
    row = int(np.searchsorted(segment.objects, index))
    return row if row < len(segment.objects) and segment.objects[row] == index else None
