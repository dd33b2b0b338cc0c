"""The five tables of an episode, checked and indexed for decoding (the reader side).

``read_layout`` trusts nothing: schemas, row counts, ranges, and that the
keyframes and motion rows are exactly the ones the objects' presence implies.
Anything else is a ``CorruptDataError`` (a table too big for the limits is a
``LimitExceededError``), never a crash or a wrong picture later.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from aios_memory.schemas.errors import CorruptDataError, LimitExceededError
from aios_memory.schemas.scenes import (
    CHANNEL_GROUPS,
    PREDICTORS,
    PRESENCE_RULES,
    SCENE_SCHEMAS,
    SCENE_TABLES,
    motion_encoding_of,
    rotation_step_of,
)

from ._tables import PRESENCE_TYPES, implied_presence_events, merge_events
from .model import EVENT_TYPES, Event, SceneObject

# Object-frames a decoded scene may hold (its arrays take about 56 bytes each).
DEFAULT_MAX_CELLS = 2**26
# Settings a stored episode may hold (the encoder refuses others too): beyond them the
# arithmetic stops being meaningful (and a damaged step would overflow to inf).
MAX_STEP_M = 1000.0
MAX_STEP_DEG = 10.0
MAX_FRAME_RATE = 1e6


@dataclass
class Segment:
    """One keyframe and the motion that follows it, for the objects active in it."""

    first_frame: int
    n_frames: int
    objects: np.ndarray  # object indices, ascending
    presence: np.ndarray  # (n, n_frames) bool: each object's presence over the segment
    positions: np.ndarray  # (n, 3) int64 keyframe values
    rotating: np.ndarray  # bool mask over ``objects``: has rotations
    rotations: np.ndarray  # (rotating.sum(), 3) int64
    blobs: dict[str, bytes] = field(default_factory=dict)


@dataclass
class Layout:
    """An episode ready to decode: its facts, objects, presence, segments and events."""

    episode: dict[str, Any]
    objects: list[SceneObject]
    has_track: list[bool]
    has_rotation: list[bool]
    toggles: list[list[int]]
    segments: dict[int, Segment]  # by first frame
    events: list[Event]

    @property
    def n_frames(self) -> int:
        return int(self.episode["n_frames"])

    @property
    def keyframe_every(self) -> int:
        return int(self.episode["keyframe_every"])

    @property
    def rotation_step(self) -> float:
        return rotation_step_of(self.episode["step_deg"])


def check_schemas(tables: dict[str, pa.Table]) -> None:
    """Exactly the five tables, each with its schema (metadata included), fully valid."""
    if set(tables) != set(SCENE_TABLES) or not all(
        isinstance(t, pa.Table) for t in tables.values()
    ):
        raise CorruptDataError(
            f"an episode has the tables {sorted(SCENE_TABLES)}, not {sorted(tables)}"
        )
    for name in SCENE_TABLES:
        if not tables[name].schema.equals(SCENE_SCHEMAS[name], check_metadata=True):
            raise CorruptDataError(
                f"table {name!r} does not have the scene schema (version 1)", table=name
            )
        try:
            tables[name].validate(full=True)
        except pa.ArrowException as error:
            raise CorruptDataError(
                f"table {name!r} is not valid Arrow: {error}", table=name
            ) from None


def read_layout(tables: dict[str, pa.Table], max_cells: int = DEFAULT_MAX_CELLS) -> Layout:
    """Check every table and index the episode for decoding."""
    check_schemas(tables)
    episode = _episode(tables["episode"], tables["objects"].num_rows, max_cells)
    n_frames = int(episode["n_frames"])
    objects, flags, toggles = _objects(tables["objects"], n_frames)
    layout = Layout(episode, objects, flags[0], flags[1], toggles, {}, [])
    layout.segments = _segments(tables["keyframes"], tables["motion"], layout)
    stored = _events(tables["events"], n_frames, {o.id for o in objects})
    rule = episode["presence_events"]
    if rule != "none" and any(e.type in PRESENCE_TYPES for e in stored):
        raise _fail("spawn/despawn events stored beside the ones presence implies")
    layout.events = merge_events(implied_presence_events(objects, toggles, n_frames, rule), stored)
    return layout


def _fail(message: str) -> CorruptDataError:
    return CorruptDataError(message)


def _json(text: str, what: str, kind: type = dict) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        raise _fail(f"{what} is not JSON") from None
    if not isinstance(value, kind):
        raise _fail(f"{what} is not a JSON {kind.__name__}")
    return value


def _episode(table: pa.Table, n_objects: int, max_cells: int) -> dict[str, Any]:
    if table.num_rows != 1:
        raise _fail(f"the episode table has {table.num_rows} rows, not 1")
    row = table.to_pylist()[0]
    finite = all(math.isfinite(row[k]) for k in row if isinstance(row[k], float))
    if not (
        finite
        and 0 < row["frame_rate"] <= MAX_FRAME_RATE
        and 0 < row["step_m"] <= MAX_STEP_M
        and 0 < row["step_deg"] <= MAX_STEP_DEG
        and row["keyframe_every"] >= 1
        and row["predictor"] in PREDICTORS
        and row["position_axes"] <= 3
        and row["presence_events"] in PRESENCE_RULES
        and row["n_objects"] == n_objects
    ):
        raise _fail("the episode row holds values out of range")
    if row["n_frames"] * max(n_objects, 1) > max_cells:
        raise LimitExceededError(
            f"an episode of {row['n_frames']} frames x {n_objects} objects "
            f"is more than {max_cells} object-frames",
            limit=max_cells,
        )
    row["source"] = _json(row["source"], "the episode source")
    return row


def _objects(
    table: pa.Table, n_frames: int
) -> tuple[list[SceneObject], tuple[list[bool], list[bool]], list[list[int]]]:
    rows = table.to_pylist()
    ids = [r["object_id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise _fail("two objects share an id")
    objects, toggles = [], []
    for row in rows:
        if row["parent"] is not None and row["parent"] not in ids:
            raise _fail(f"object {row['object_id']!r} names an unknown parent")
        objects.append(
            SceneObject(
                row["object_id"],
                row["kind"],
                row["parent"],
                (row["size_x"], row["size_y"], row["size_z"]),
                _json(row["attributes"], "an object's attributes"),
            )
        )
        toggles.append(_toggles(row, n_frames))
    flags = ([r["has_track"] for r in rows], [r["has_rotation"] for r in rows])
    return objects, flags, toggles


def _toggles(row: dict[str, Any], n_frames: int) -> list[int]:
    frames = row["presence"]
    ordered = all(a < b for a, b in zip(frames, frames[1:], strict=False))
    if not ordered or (frames and frames[-1] >= n_frames) or (frames and not row["has_track"]):
        raise _fail(f"object {row['object_id']!r} has a presence out of order or range")
    if row["has_rotation"] and not row["has_track"]:
        raise _fail(f"object {row['object_id']!r} rotates without a track")
    return [int(f) for f in frames]


def active_segments(toggles: list[int], n_frames: int, every: int) -> set[int]:
    """First frames of the segments in which an object with these toggles is present."""
    bounds = [*toggles, n_frames] if len(toggles) % 2 else toggles
    firsts: set[int] = set()
    for start, end in zip(bounds[::2], bounds[1::2], strict=True):
        firsts.update(range(start // every * every, end, every))
    return firsts


def presence_over(toggles: list[int], first: int, n_frames: int) -> np.ndarray:
    """Presence over frames ``first .. first + n_frames - 1`` of an object with these toggles."""
    out = np.zeros(n_frames, dtype=bool)
    bounds = [*toggles, first + n_frames] if len(toggles) % 2 else toggles
    for start, end in zip(bounds[::2], bounds[1::2], strict=True):
        if end > first and start < first + n_frames:
            out[max(start - first, 0) : end - first] = True
    return out


def _segments(keyframes: pa.Table, motion: pa.Table, layout: Layout) -> dict[int, Segment]:
    every, n_frames = layout.keyframe_every, layout.n_frames
    expected: dict[int, list[int]] = {}
    for index, toggles in enumerate(layout.toggles):
        for first in active_segments(toggles, n_frames, every):
            expected.setdefault(first, []).append(index)
    columns = {
        name: keyframes.column(name).to_numpy(zero_copy_only=False)
        for name in keyframes.column_names
    }
    segments = _keyframe_segments(columns, expected, layout)
    _attach_motion(motion, segments, motion_encoding_of(layout.episode["predictor"]))
    return segments


def _keyframe_segments(
    columns: dict[str, np.ndarray], expected: dict[int, list[int]], layout: Layout
) -> dict[int, Segment]:
    frames, objects = columns["frame"].astype(np.int64), columns["object_index"].astype(np.int64)
    rows_wanted = [(f, i) for f in sorted(expected) for i in expected[f]]
    if len(rows_wanted) != len(frames) or not np.array_equal(
        np.array(rows_wanted, dtype=np.int64).reshape(-1, 2), np.stack([frames, objects], 1)
    ):
        raise _fail("the keyframes are not the ones the objects' presence implies")
    rotation = np.stack([columns[f"r{a}"] for a in "xyz"], 1)
    segments, start = {}, 0
    for first in sorted(expected):
        end = start + len(expected[first])
        segments[first] = _segment(first, slice(start, end), columns, rotation, layout)
        start = end
    return segments


def _segment(
    first: int, rows: slice, columns: dict[str, np.ndarray], rotation: np.ndarray, layout: Layout
) -> Segment:
    objects = columns["object_index"][rows].astype(np.int64)
    rotating = np.array([layout.has_rotation[i] for i in objects], dtype=bool)
    present = columns["present"][rows].astype(bool)
    stored = rotation[rows]
    # Null rotations read as NaN floats: all four null for exactly the non-rotating objects.
    missing = np.isnan(stored.astype(np.float64))
    nulls = missing.all(axis=1)
    n_frames = min(layout.keyframe_every, layout.n_frames - first)
    presence = np.stack([presence_over(layout.toggles[i], first, n_frames) for i in objects])
    if (
        not np.array_equal(nulls, missing.any(axis=1))
        or not np.array_equal(nulls, ~rotating)
        or not np.array_equal(present, presence[:, 0])
    ):
        raise _fail(f"the keyframe at frame {first} does not match the objects")
    positions = np.stack([columns[f"p{a}"][rows] for a in "xyz"], 1).astype(np.int64)
    return Segment(
        first, n_frames, objects, presence, positions, rotating, stored[rotating].astype(np.int64)
    )


def _attach_motion(motion: pa.Table, segments: dict[int, Segment], encoding: str) -> None:
    for row in motion.to_pylist():
        segment = segments.get(row["first_frame"])
        if segment is None or row["group"] not in CHANNEL_GROUPS or row["group"] in segment.blobs:
            raise _fail(f"a motion row at frame {row['first_frame']} has no keyframe or repeats")
        count = len(segment.objects) if row["group"] == "position" else int(segment.rotating.sum())
        if (
            row["n_frames"] != segment.n_frames
            or row["n_objects"] != count
            or row["encoding"] != encoding
        ):
            raise _fail(
                f"the {row['group']} motion at frame {row['first_frame']} does not "
                "match its keyframe"
            )
        segment.blobs[row["group"]] = row["data"]
    for segment in segments.values():
        wanted = {"position"} | ({"rotation"} if segment.rotating.any() else set())
        if set(segment.blobs) != wanted:
            raise _fail(f"the motion of the segment at frame {segment.first_frame} is missing")


def _events(table: pa.Table, n_frames: int, ids: set[str]) -> list[Event]:
    events = []
    for row in table.to_pylist():
        if (
            row["frame"] >= n_frames
            or row["type"] not in EVENT_TYPES
            or (row["object_id"] is not None and row["object_id"] not in ids)
        ):
            raise _fail(
                f"an event at frame {row['frame']} is out of range or names an unknown object"
            )
        events.append(
            Event(
                row["frame"],
                row["type"],
                row["object_id"],
                _json(row["params"], "an event's parameters"),
            )
        )
    if any(a.frame > b.frame for a, b in zip(events, events[1:], strict=False)):
        raise _fail("the events are not in frame order")
    return events
