"""A quantized scene to its five Arrow tables (the writer side of ``codec``).

Motion is cut into segments of ``keyframe_every`` frames. In each segment every
object present at some frame of it is *active*: it gets a keyframe row (its
values at its first present frame in the segment, and whether it is present
at the segment's first frame) and a share of the segment's residuals (its
values at its present frames: ``_motion``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from aios_memory.schemas.errors import InvalidValueError
from aios_memory.schemas.scenes import (
    EPISODE_SCHEMA,
    EVENTS_SCHEMA,
    KEYFRAMES_SCHEMA,
    MOTION_SCHEMA,
    OBJECTS_SCHEMA,
    motion_encoding_of,
)

from . import _knots as knots_codec
from . import _motion as motion
from ._quantize import QuantTrack
from .model import Event, SceneObject, json_value

CHANNELS = {"position": 3, "rotation": 3}
# Knot indices by (segment's first frame, object index, channel group).
Knots = dict[tuple[int, int, str], np.ndarray]


@dataclass
class QuantScene:
    """Everything stored about a scene, with motion as grid integers."""

    name: str
    frame_rate: float
    n_frames: int
    objects: list[SceneObject]
    tracks: dict[int, QuantTrack]  # by object index
    events: list[Event]
    source: dict[str, Any]
    step_m: float
    step_deg: float
    # How presence implies the spawn/despawn events (then they are not stored).
    presence_events: str = "none"


PRESENCE_TYPES = ("spawn", "despawn")


def implied_presence_events(
    objects: list[SceneObject], toggles: list[list[int]], n_frames: int, rule: str
) -> list[Event]:
    """The spawn/despawn events presence implies under ``rule`` (``PRESENCE_RULES``):
    a spawn at each first present frame, a despawn at each last present frame, except,
    under ``open``, for a stretch that lasts to the scene's last frame. In frame order,
    spawns before despawns, then object order."""
    if rule == "none":
        return []
    keyed = []
    for index, frames in enumerate(toggles):
        ends = list(frames[1::2]) + ([n_frames] if len(frames) % 2 and rule == "closed" else [])
        keyed += [(f, 0, index) for f in frames[0::2]] + [(f - 1, 1, index) for f in ends]
    return [
        Event(f, PRESENCE_TYPES[kind], objects[index].id, {}) for f, kind, index in sorted(keyed)
    ]


def merge_events(implied: list[Event], stored: list[Event]) -> list[Event]:
    """Events in frame order; in one frame, implied presence events before stored ones."""
    return sorted([*implied, *stored], key=lambda e: e.frame)


def canonical_events(
    events: list[Event], objects: list[SceneObject], toggles: list[list[int]], n_frames: int
) -> tuple[list[Event], str]:
    """The events as decoding gives them back, and the rule by which presence implies
    the spawns and despawns among them (``none``: they are stored as given)."""
    presence = [e for e in events if e.type in PRESENCE_TYPES]
    facts = sorted((e.frame, e.type, e.object_id or "") for e in presence)
    for rule in ("closed", "open"):
        implied = implied_presence_events(objects, toggles, n_frames, rule)
        if (
            presence
            and all(not e.params for e in presence)
            and facts == sorted((e.frame, e.type, e.object_id or "") for e in implied)
        ):
            others = [e for e in events if e.type not in PRESENCE_TYPES]
            return merge_events(implied, others), rule
    return merge_events([], events), "none"


def canonical_json(value: Any, what: str) -> str:
    """Sorted, compact JSON; numpy values become plain numbers and lists; NaN is refused."""
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), allow_nan=False, default=json_value
        )
    except (TypeError, ValueError) as error:
        raise InvalidValueError(f"{what} is not JSON: {error}", field=what) from None


def toggles_of(present: np.ndarray) -> list[int]:
    """Frames where presence changes, starting with an appearance (the end is implicit)."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], present.astype(np.int8), [0]))))
    return [int(f) for f in edges if f < len(present)]


def scene_hash_of(quant: QuantScene) -> str:
    """BLAKE2b-128 (hex) of the quantized scene: description, events and grid integers."""
    digest = hashlib.blake2b(digest_size=16)
    header = {
        "name": quant.name,
        "frame_rate": quant.frame_rate,
        "n_frames": quant.n_frames,
        "step_m": quant.step_m,
        "step_deg": quant.step_deg,
        "source": quant.source,
        "objects": [_object_facts(o) for o in quant.objects],
        "events": [[e.frame, e.type, e.object_id, e.params] for e in quant.events],
    }
    _update(digest, canonical_json(header, "scene").encode())
    for index in sorted(quant.tracks):
        track = quant.tracks[index]
        _update(digest, np.asarray(toggles_of(track.present), dtype="<i8").tobytes())
        _update(digest, track.positions[track.present].astype("<i8").tobytes())
        if track.rotations is not None:
            _update(digest, track.rotations[track.present].astype("<i8").tobytes())
    return digest.hexdigest()


def _update(digest: Any, chunk: bytes) -> None:
    # A length before each part, so no two different scenes hash the same bytes.
    digest.update(len(chunk).to_bytes(8, "little"))
    digest.update(chunk)


def _object_facts(obj: SceneObject) -> list[Any]:
    return [obj.id, obj.kind, obj.parent, [float(s) for s in obj.size], obj.attributes]


def build_tables(
    quant: QuantScene,
    episode: dict[str, Any],
    keyframe_every: int,
    predictor: str,
    knots: Knots | None = None,
) -> dict[str, pa.Table]:
    """The five tables of a quantized scene; ``episode`` holds the episode row's values;
    ``knots`` (from ``_knots.simplify``) for the ``knots`` predictor."""
    keyframes, motion_rows = _segments(quant, keyframe_every, predictor, knots or {})
    return {
        "episode": pa.Table.from_pylist([episode], schema=EPISODE_SCHEMA),
        "objects": pa.Table.from_pylist(_object_rows(quant), schema=OBJECTS_SCHEMA),
        "motion": pa.Table.from_pylist(motion_rows, schema=MOTION_SCHEMA),
        "events": pa.Table.from_pylist(_event_rows(_stored_events(quant)), schema=EVENTS_SCHEMA),
        "keyframes": pa.Table.from_pylist(keyframes, schema=KEYFRAMES_SCHEMA),
    }


def _object_rows(quant: QuantScene) -> list[dict[str, Any]]:
    rows = []
    for index, obj in enumerate(quant.objects):
        track = quant.tracks.get(index)
        row: dict[str, Any] = {
            "object_id": obj.id,
            "kind": obj.kind,
            "parent": obj.parent,
            "size_x": float(obj.size[0]),
            "size_y": float(obj.size[1]),
            "size_z": float(obj.size[2]),
            "attributes": canonical_json(obj.attributes, f"attributes of {obj.id!r}"),
            "has_track": track is not None,
            "has_rotation": track is not None and track.rotations is not None,
            "presence": toggles_of(track.present) if track is not None else [],
        }
        rows.append(row)
    return rows


def _stored_events(quant: QuantScene) -> list[Event]:
    if quant.presence_events == "none":
        return quant.events
    return [e for e in quant.events if e.type not in PRESENCE_TYPES]


def _event_rows(events: list[Event]) -> list[dict[str, Any]]:
    return [
        {
            "frame": e.frame,
            "type": e.type,
            "object_id": e.object_id,
            "params": canonical_json(e.params, f"params of a {e.type} event"),
        }
        for e in events
    ]


def _segments(
    quant: QuantScene, keyframe_every: int, predictor: str, knots: Knots
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    keyframes: list[dict[str, Any]] = []
    motion_rows: list[dict[str, Any]] = []
    for first in range(0, quant.n_frames, keyframe_every):
        last = min(first + keyframe_every, quant.n_frames)
        active = {i: t for i, t in sorted(quant.tracks.items()) if t.present[first:last].any()}
        if not active:
            continue
        presence = np.stack([t.present[first:last] for t in active.values()])
        sequences = {i: _sequences(t, first, last) for i, t in active.items()}
        keyframes.extend(_keyframe_rows(first, presence[:, 0], sequences))
        for group in CHANNELS:
            rows = [n for n, seq in enumerate(sequences.values()) if seq[group] is not None]
            if rows:
                values = np.stack(
                    [
                        seq[group].T  # type: ignore[union-attr]
                        for seq in sequences.values()
                        if seq[group] is not None
                    ],
                    axis=1,
                )
                motion_rows.append(
                    {
                        "group": group,
                        "first_frame": first,
                        "n_frames": last - first,
                        "n_objects": len(rows),
                        "encoding": motion_encoding_of(predictor),
                        "data": _motion_blob(
                            values,
                            presence[rows].sum(axis=1),
                            predictor,
                            [knots.get((first, i, group)) for i in active],
                        ),
                    }
                )
    return keyframes, motion_rows


def _motion_blob(
    values: np.ndarray, lengths: np.ndarray, predictor: str, knots: list[np.ndarray | None]
) -> bytes:
    """``values`` ``(channels, n_objects, n_frames)``: the sequences of one group."""
    if predictor == "knots":
        chosen = [k for k in knots if k is not None]
        return knots_codec.pack([(k, values[:, n, k]) for n, k in enumerate(chosen)])
    mask = motion.residual_mask(lengths, values.shape[-1])
    return motion.pack(motion.residuals(values, predictor), mask)


def _sequences(track: QuantTrack, first: int, last: int) -> dict[str, np.ndarray | None]:
    """The values at the present frames of the segment, left-aligned, padded by the last."""
    frames = np.flatnonzero(track.present[first:last]) + first
    frames = frames[np.minimum(np.arange(last - first), len(frames) - 1)]
    rotations = track.rotations
    return {
        "position": track.positions[frames],
        "rotation": None if rotations is None else rotations[frames],
    }


def _keyframe_rows(
    first: int, present: np.ndarray, sequences: dict[int, dict[str, np.ndarray | None]]
) -> list[dict[str, Any]]:
    rows = []
    for (index, sequence), here in zip(sequences.items(), present, strict=True):
        row: dict[str, Any] = {"frame": first, "object_index": index, "present": bool(here)}
        position = sequence["position"]  # every active object has positions
        row.update({f"p{a}": int(v) for a, v in zip("xyz", position[0], strict=True)})  # type: ignore[index]
        rotation = sequence["rotation"]
        if rotation is not None:
            row.update({f"r{a}": int(v) for a, v in zip("xyz", rotation[0], strict=True)})
        rows.append(row)
    return rows
