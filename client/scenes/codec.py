"""The scene codec: a ``Scene`` to five small Arrow tables and back, and replay to any moment.

Positions become integers on a grid of ``step_m`` metres per axis. Rotations
are made sign-continuous (``q`` and ``-q`` are one rotation) and become their
three modified Rodrigues parameters on a grid whose cell turns a rotation by
``step_deg`` degrees (``_quantize``). Motion is stored as residuals of a
predictor on those integers (so nothing drifts), cut into segments of
``keyframe_every`` frames that each start at a keyframe, zigzagged, split into
byte planes and zstd-compressed per segment (``_motion``). Presence (the
NaN rows of a track) is stored as the frames where an object appears and
disappears; spawn/despawn events that only repeat it are not stored twice.

Errors: at half a step per axis, a position is at most ``sqrt(axes) * step_m / 2``
away (``axes``: the axes with any non-zero coordinate, 2 for ground-plane
data), a rotation at most ``sqrt(3) / 2 * step_deg`` degrees. These are the
declared bounds unless the caller declares others. The encoder decodes what it
made, measures the largest and the mean error against the input (Euclidean
metres; the angle of the rotation between input and output, in degrees), stores
both, and refuses (``SceneErrorBoundError``) when the measured maximum exceeds
the declared bound.

Replay: frame ``f`` covers ``[f / rate, (f + 1) / rate)``; ``state_at(t)`` is the
state at frame ``floor(t * rate)`` clamped to the scene (no interpolation
between frames), reached from the keyframe at or before it by decoding one
segment; it equals sequential decoding (``decode_scene``) exactly: the same
integers, turned into floats by the same element-wise arithmetic.

>>> encoded = encode_scene(scene)                          # doctest: +SKIP
>>> blob = encoded.to_bytes()                              # doctest: +SKIP
>>> Replayer(EncodedScene.from_bytes(blob)).state_at(12.5)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa

from aios_memory.schemas.errors import (
    CorruptDataError,
    InvalidValueError,
    LimitExceededError,
    SceneErrorBoundError,
)
from aios_memory.schemas.scenes import EPISODE_SCHEMA, PREDICTORS, rotation_step_of

from . import _quantize as quantize
from ._decode import quant_scene, quant_tracks
from ._encoded import EncodedScene
from ._knots import simplify
from ._layout import DEFAULT_MAX_CELLS, MAX_FRAME_RATE, MAX_STEP_DEG, MAX_STEP_M
from ._replay import Replayer
from ._tables import (
    Knots,
    QuantScene,
    build_tables,
    canonical_events,
    canonical_json,
    scene_hash_of,
    toggles_of,
)
from .model import EVENT_TYPES, Event, Scene, Track

__all__ = [
    "encode_scene",
    "decode_scene",
    "EncodedScene",
    "Replayer",
    "scene_hash",
    "default_keyframe_every",
    "DEFAULT_STEP_M",
    "DEFAULT_STEP_DEG",
    "default_predictor",
    "DEFAULT_MAX_CELLS",
]

DEFAULT_STEP_M = 0.01
DEFAULT_STEP_DEG = 0.05
# Constant acceleration at and above this rate (``default_predictor``).
ACCELERATION_FROM_HZ = 30.0
DEFAULT_KEYFRAME_SECONDS = 2.0
DEFAULT_KEYFRAME_MIN_FRAMES = 256
# Floating-point slack when comparing a measured error with its bound.
_RELATIVE_SLACK = 1e-9


def default_keyframe_every(frame_rate: float) -> int:
    """About 2 s of frames, but never fewer than 256: a seek decodes up to one segment,
    whose cost grows with frames, not seconds, and a 2.5 Hz scene keyframed every 2 s
    (5 frames) was 2.1x bigger than every 256 frames (UCY zara01)."""
    return max(round(DEFAULT_KEYFRAME_SECONDS * frame_rate), DEFAULT_KEYFRAME_MIN_FRAMES)


def default_predictor(frame_rate: float) -> str:
    """Constant acceleration for fast sampling, constant velocity for slow: at 120 Hz
    (CMU motion capture) acceleration was 7% smaller, at 2.5 Hz (UCY pedestrians) 11%
    bigger; 30 Hz splits the difference (video rates and up count as fast)."""
    return "acceleration" if frame_rate >= ACCELERATION_FROM_HZ else "velocity"


def encode_scene(
    scene: Scene,
    *,
    step_m: float = DEFAULT_STEP_M,
    step_deg: float = DEFAULT_STEP_DEG,
    keyframe_every: int | None = None,
    predictor: str | None = None,
    max_error_m: float | None = None,
    max_error_deg: float | None = None,
    max_cells: int = DEFAULT_MAX_CELLS,
) -> EncodedScene:
    """Encode ``scene``; measure the error by decoding; refuse to exceed the declared bound.

    Parameters
    ----------
    scene : Scene
        What to encode. Tracks' NaN rows mark absence; quaternions are normalized.
    step_m, step_deg : float
        The grids: metres per position step, degrees per rotation step.
    keyframe_every : int, optional
        Frames per segment; ``default_keyframe_every(frame_rate)`` by default.
    predictor : {"velocity", "delta", "acceleration", "knots"}, optional
        Constant velocity (episodes 1.2-1.3x smaller than with ``delta`` on
        pedestrians and motion capture), the previous value, or constant acceleration
        (a further 7% smaller on 120 Hz motion capture, 11% bigger on 2.5 Hz
        pedestrians); by default ``default_predictor(frame_rate)``. ``knots``:
        error-bounded adaptive keyframes, only the frames where a straight line would
        leave the declared bounds are stored (``_knots``); it pays with bounds above the
        quantization bounds.
    max_error_m, max_error_deg : float, optional
        Declared bounds; by default the quantization bounds (module docstring).
        With ``knots``, the bounds the simplification may use up.

    Raises
    ------
    InvalidValueError
        A setting out of range, or a scene that does not hold together.
    SceneErrorBoundError
        The measured error exceeds a declared bound (it names both).
    """
    predictor = predictor or default_predictor(scene.frame_rate)
    _check_settings(scene, step_m, step_deg, keyframe_every, predictor, max_error_m, max_error_deg)
    every = keyframe_every or default_keyframe_every(scene.frame_rate)
    quant, inputs = _quantize(scene, step_m, step_deg, max_cells)
    axes = quantize.used_axes([(inputs[i][0], t.present) for i, t in quant.tracks.items()])
    declared_m = math.sqrt(axes) * step_m / 2 if max_error_m is None else float(max_error_m)
    declared_deg = math.sqrt(3) * step_deg / 2 if max_error_deg is None else float(max_error_deg)
    knots = None
    if predictor == "knots":
        knots = _simplify(quant, inputs, every, declared_m, declared_deg)
    episode = {
        "name": scene.name,
        "frame_rate": float(scene.frame_rate),
        "n_frames": int(scene.n_frames),
        "n_objects": len(scene.objects),
        "step_m": float(step_m),
        "step_deg": float(step_deg),
        "keyframe_every": int(every),
        "predictor": predictor,
        "presence_events": quant.presence_events,
        "position_axes": axes,
        "declared_max_error_m": declared_m,
        "declared_max_error_deg": declared_deg,
        "source": canonical_json(quant.source, "the scene source"),
        "scene_hash": scene_hash_of(quant),
        **dict.fromkeys(
            [
                "measured_max_error_m",
                "measured_mean_error_m",
                "measured_max_error_deg",
                "measured_mean_error_deg",
            ],
            0.0,
        ),
    }
    tables = build_tables(quant, episode, every, predictor, knots)
    episode.update(_measure(EncodedScene(tables, max_cells=max_cells), quant, inputs))
    _refuse_beyond_bound(episode, inputs)
    tables["episode"] = pa.Table.from_pylist([episode], schema=EPISODE_SCHEMA)
    return EncodedScene(tables, max_cells=max_cells)


def _simplify(
    quant: QuantScene,
    inputs: dict[int, tuple[np.ndarray, np.ndarray | None]],
    every: int,
    bound_m: float,
    bound_deg: float,
) -> Knots:
    """Knots within the declared bounds, errors measured as ``_measure`` measures them."""
    step, rotation_step = quant.step_m, rotation_step_of(quant.step_deg)
    error_of = {
        "position": lambda rows, ints: quantize.position_errors(
            rows, quantize.position_floats(ints, step)
        ),
        "rotation": lambda rows, ints: quantize.rotation_errors_deg(
            rows, quantize.rotation_floats(ints, rotation_step)
        ),
    }
    return simplify(
        quant.tracks, inputs, error_of, {"position": bound_m, "rotation": bound_deg}, every
    )


def _check_settings(
    scene: Scene,
    step_m: float,
    step_deg: float,
    every: int | None,
    predictor: str,
    max_error_m: float | None,
    max_error_deg: float | None,
) -> None:
    checks = [
        (
            math.isfinite(step_m) and 0 < step_m <= MAX_STEP_M,
            f"step_m must be in (0, {MAX_STEP_M}] metres, not {step_m}",
        ),
        (
            math.isfinite(step_deg) and 0 < step_deg <= MAX_STEP_DEG,
            f"step_deg must be in (0, {MAX_STEP_DEG}], not {step_deg}",
        ),
        (
            every is None or (isinstance(every, (int, np.integer)) and 1 <= every < 2**31),
            f"keyframe_every must be an integer >= 1, not {every}",
        ),
        (predictor in PREDICTORS, f"predictor must be one of {PREDICTORS}, not {predictor!r}"),
        (
            all(b is None or (math.isfinite(b) and b >= 0) for b in (max_error_m, max_error_deg)),
            "a declared maximum error must be a number >= 0",
        ),
        (
            math.isfinite(scene.frame_rate) and 0 < scene.frame_rate <= MAX_FRAME_RATE,
            f"frame_rate must be in (0, {MAX_FRAME_RATE:g}], not {scene.frame_rate}",
        ),
        (
            isinstance(scene.name, str) and isinstance(scene.source, dict),
            "a scene needs a str name and a dict source",
        ),
        (
            isinstance(scene.n_frames, (int, np.integer)) and 0 <= scene.n_frames < 2**32,
            f"n_frames must be an integer >= 0, not {scene.n_frames}",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise InvalidValueError(message)


def _quantize(
    scene: Scene, step_m: float, step_deg: float, max_cells: int
) -> tuple[QuantScene, dict[int, tuple[np.ndarray, np.ndarray | None]]]:
    """The scene on the grid, and each track's input (positions, unit quaternions)."""
    index = _object_index(scene)
    n = int(scene.n_frames)
    if n * max(len(scene.objects), 1) > max_cells:
        raise LimitExceededError(
            f"a scene of {n} frames x {len(scene.objects)} objects is more "
            f"than {max_cells} object-frames: split it",
            limit=max_cells,
        )
    tracks, inputs = {}, {}
    rotation_step = rotation_step_of(step_deg)
    for object_id, track in scene.tracks.items():
        positions, rotations = _track_arrays(track, object_id, n)
        present = quantize.presence_of(positions, object_id)
        unit = (
            None if rotations is None else quantize.unit_quaternions(rotations, present, object_id)
        )
        tracks[index[object_id]] = quantize.QuantTrack(
            present,
            quantize.quantize_positions(positions, present, step_m, object_id),
            None if unit is None else quantize.quantize_rotations(unit, present, rotation_step),
        )
        inputs[index[object_id]] = (positions, unit)
    toggles = [toggles_of(tracks[i].present) if i in tracks else [] for i in range(len(index))]
    events, rule = canonical_events(
        [_checked_event(e, n, index) for e in scene.events], list(scene.objects), toggles, n
    )
    quant = QuantScene(
        scene.name,
        float(scene.frame_rate),
        n,
        list(scene.objects),
        tracks,
        events,
        dict(scene.source),
        float(step_m),
        float(step_deg),
        rule,
    )
    return quant, inputs


def _object_index(scene: Scene) -> dict[str, int]:
    index = {obj.id: i for i, obj in enumerate(scene.objects)}
    if len(index) != len(scene.objects):
        raise InvalidValueError("two objects share an id")
    for obj in scene.objects:
        if (
            not isinstance(obj.id, str)
            or not isinstance(obj.kind, str)
            or not isinstance(obj.attributes, dict)
        ):
            raise InvalidValueError(
                f"object {obj.id!r} needs a str id and kind and a dict of attributes"
            )
        if obj.parent is not None and obj.parent not in index:
            raise InvalidValueError(f"object {obj.id!r} names an unknown parent {obj.parent!r}")
        if len(obj.size) != 3 or not all(math.isfinite(float(s)) for s in obj.size):
            raise InvalidValueError(f"object {obj.id!r} needs a finite (x, y, z) size")
    unknown = set(scene.tracks) - set(index)
    if unknown:
        raise InvalidValueError(f"tracks of unknown objects: {sorted(unknown)[:5]}")
    return index


def _track_arrays(
    track: Track, object_id: str, n_frames: int
) -> tuple[np.ndarray, np.ndarray | None]:
    positions = np.asarray(track.positions, dtype=np.float64)
    rotations = None if track.rotations is None else np.asarray(track.rotations, np.float64)
    if (
        track.object_id != object_id
        or positions.shape != (n_frames, 3)
        or (rotations is not None and rotations.shape != (n_frames, 4))
    ):
        raise InvalidValueError(
            f"the track of {object_id!r} needs positions ({n_frames}, 3) "
            f"and rotations ({n_frames}, 4) or None",
            object_id=object_id,
        )
    return positions, rotations


def _checked_event(event: Event, n_frames: int, index: dict[str, int]) -> Event:
    if (
        event.type not in EVENT_TYPES
        or not isinstance(event.params, dict)
        or not (isinstance(event.frame, (int, np.integer)) and 0 <= event.frame < n_frames)
        or (event.object_id is not None and event.object_id not in index)
    ):
        raise InvalidValueError(
            f"a {event.type!r} event at frame {event.frame} is out of "
            "range, has no params dict or names an unknown object"
        )
    return Event(int(event.frame), event.type, event.object_id, event.params)


def _measure(
    encoded: EncodedScene,
    quant: QuantScene,
    inputs: dict[int, tuple[np.ndarray, np.ndarray | None]],
) -> dict[str, float]:
    """Decode what was encoded and measure its errors against the input."""
    decoded = quant_tracks(encoded.layout)
    step, rotation_step = quant.step_m, rotation_step_of(quant.step_deg)
    metres, degrees = [np.zeros(0)], [np.zeros(0)]
    for index, track in decoded.items():
        positions, unit = inputs[index]
        present = track.present
        metres.append(
            quantize.position_errors(
                positions[present], quantize.position_floats(track.positions[present], step)
            )
        )
        if unit is not None and track.rotations is not None:
            degrees.append(
                quantize.rotation_errors_deg(
                    unit[present], quantize.rotation_floats(track.rotations[present], rotation_step)
                )
            )
    m, d = np.concatenate(metres), np.concatenate(degrees)
    return {
        "measured_max_error_m": float(m.max(initial=0.0)),
        "measured_mean_error_m": float(m.mean()) if m.size else 0.0,
        "measured_max_error_deg": float(d.max(initial=0.0)),
        "measured_mean_error_deg": float(d.mean()) if d.size else 0.0,
    }


def _refuse_beyond_bound(
    episode: dict[str, Any], inputs: dict[int, tuple[np.ndarray, np.ndarray | None]]
) -> None:
    largest = max(
        (float(np.nanmax(np.abs(p))) for p, _ in inputs.values() if np.isfinite(p).any()),
        default=0.0,
    )
    # Rounding near a coordinate of size ``largest`` moves a value by a few ulps.
    slack_m = _RELATIVE_SLACK * episode["declared_max_error_m"] + 8 * float(np.spacing(largest))
    slack_deg = _RELATIVE_SLACK * episode["declared_max_error_deg"] + 1e-12
    for unit, slack in (("m", slack_m), ("deg", slack_deg)):
        measured, declared = (
            episode[f"measured_max_error_{unit}"],
            episode[f"declared_max_error_{unit}"],
        )
        if measured > declared + slack:
            raise SceneErrorBoundError(
                f"scene {episode['name']!r}: measured maximum error {measured:.6g} {unit} "
                f"exceeds the declared {declared:.6g} {unit}; declare a larger bound or use a "
                "finer step",
                measured=measured,
                declared=declared,
                unit=unit,
            )


def decode_scene(encoded: EncodedScene) -> Scene:
    """The quantized reconstruction, decoded sequentially (checked against ``scene_hash``)."""
    layout = encoded.layout
    tracks = quant_tracks(layout)
    if scene_hash_of(quant_scene(layout, tracks)) != layout.episode["scene_hash"]:
        raise CorruptDataError(
            f"scene {layout.episode['name']!r} decodes to other content "
            "than it was encoded from (scene_hash differs)"
        )
    step, rotation_step = layout.episode["step_m"], layout.rotation_step
    out = {}
    for index, track in tracks.items():
        positions = quantize.position_floats(track.positions, step)
        positions[~track.present] = np.nan
        rotations = None
        if track.rotations is not None:
            rotations = quantize.rotation_floats(track.rotations, rotation_step)
            rotations[~track.present] = np.nan
        object_id = layout.objects[index].id
        out[object_id] = Track(object_id, positions, rotations)
    episode = layout.episode
    return Scene(
        episode["name"],
        episode["frame_rate"],
        layout.n_frames,
        list(layout.objects),
        out,
        list(layout.events),
        dict(episode["source"]),
    )


def scene_hash(
    scene: Scene, *, step_m: float = DEFAULT_STEP_M, step_deg: float = DEFAULT_STEP_DEG
) -> str:
    """The ``scene_hash`` ``encode_scene`` would store for ``scene`` at these steps."""
    quant, _ = _quantize(scene, step_m, step_deg, DEFAULT_MAX_CELLS)
    return scene_hash_of(quant)
