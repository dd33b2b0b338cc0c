"""Scenes from files and seeds: UCY/ETH pedestrian tracks, BVH motion capture, a generator.

Units and conventions (those of ``model``): metres, seconds, unit
quaternions ``(w, x, y, z)``; frame ``f`` is at ``f / frame_rate`` seconds.

- UCY/ETH (``read_ucy``): the ground plane is x, y (the file's metres), z = 0,
  Z up. An object is present from its ``spawn`` frame through its ``despawn``
  frame, both inclusive (its positions are NaN elsewhere).
- BVH (``read_bvh``): Y up, as the format has it (``source["up"] = "y"``).
  Poses are LOCAL, relative to the parent joint: a joint's position is its
  offset (plus its position channels), its rotation the one its Euler channels
  give. World poses are composed root to leaf (``render.world_poses``).
- The generator (``generate_scene``): a room on the floor z = 0, Z up; yaw
  rotations about z.

Errors: a malformed file raises ``InvalidValueError`` naming the file and line.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from aios_memory.schemas import InvalidValueError
from aios_memory.schemas.errors import CorruptDataError

from ._bvh import read_bvh
from .model import Event, Scene, SceneObject, Track, json_value

__all__ = [
    "read_ucy",
    "read_bvh",
    "generate_scene",
    "scene_hash",
    "check_generated",
    "DEFAULT_UCY_FRAME_RATE",
    "DEFAULT_MAX_GAP",
    "PERSON_SIZE",
]

DEFAULT_UCY_FRAME_RATE = 2.5  # UCY/ETH annotations: every 10th video frame of 25 Hz
DEFAULT_MAX_GAP = 3  # missing frames inside a track filled by linear interpolation
PERSON_SIZE = (0.5, 0.5, 1.7)


def read_ucy(
    path: str | Path,
    *,
    name: str | None = None,
    frame_rate: float = DEFAULT_UCY_FRAME_RATE,
    max_gap: int = DEFAULT_MAX_GAP,
) -> Scene:
    """Read UCY/ETH pedestrian tracks: lines ``frame agent x y`` (tabs or spaces).

    The file's frame numbers step by a constant (10 in UCY): the step is the
    gcd of the differences between the frame numbers seen, and frame numbers
    map to indices ``0 .. n_frames - 1``. Gaps inside one agent's track of up
    to ``max_gap`` missing frames are filled by linear interpolation; a longer
    gap ends the track with a ``despawn`` and starts it again with a ``spawn``.

    Parameters
    ----------
    path : str or Path
        The text file. Blank lines and lines starting with ``#`` are skipped.
    name : str, optional
        The scene's name; the file's stem by default.
    frame_rate : float
        Frames per second of the file's frame step (2.5 Hz for UCY and ETH).
    max_gap : int
        The longest run of missing frames inside a track that is interpolated.

    Returns
    -------
    Scene
        One ``SceneObject`` per agent (kind ``"person"``, id ``"person_<agent>"``),
        positions ``(n_frames, 3)`` with z = 0, no rotations, and ``spawn`` and
        ``despawn`` events at each present stretch's first and last frame.
        ``source`` is ``{"format": "ucy", "file", "first_frame", "frame_step"}``.

    Raises
    ------
    InvalidValueError
        A line that is not four finite numbers, a frame or agent that is not
        an integer, one agent twice in one frame, or a file without tracks.
    """
    path = Path(path)
    if not frame_rate > 0 or max_gap < 0:
        raise InvalidValueError("frame_rate must be > 0 and max_gap >= 0", field="frame_rate")
    rows, lines = _ucy_rows(path)
    first, step = _frame_grid(rows[:, 0])
    index = ((rows[:, 0] - first) // step).astype(np.int64)
    _refuse_duplicates(path, index, rows[:, 1], lines)
    n_frames = int(index.max()) + 1
    objects, tracks, events = [], {}, []
    for agent in np.unique(rows[:, 1]):
        mine = rows[:, 1] == agent
        order = np.argsort(index[mine])
        obj = SceneObject(
            f"person_{int(agent)}", "person", size=PERSON_SIZE, attributes={"agent": int(agent)}
        )
        positions, stretches = _ucy_track(
            index[mine][order], rows[mine][order, 2:], n_frames, max_gap
        )
        objects.append(obj)
        tracks[obj.id] = Track(obj.id, positions)
        for start, end in stretches:
            events += [Event(start, "spawn", obj.id), Event(end, "despawn", obj.id)]
    events.sort(key=lambda e: e.frame)  # stable: one agent's spawn stays before its despawn
    source = {
        "format": "ucy",
        "file": path.name,
        "first_frame": int(first),
        "frame_step": int(step),
    }
    return Scene(name or path.stem, float(frame_rate), n_frames, objects, tracks, events, source)


def _ucy_rows(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The file's numbers as ``(n, 4)`` floats, and each row's line number."""
    rows: list[list[float]] = []
    lines: list[int] = []
    with open(path, encoding="utf-8") as text:
        for number, line in enumerate(text, 1):
            words = line.split()
            if not words or words[0].startswith("#"):
                continue
            values = _floats(words, path, number)
            if len(values) != 4 or not all(math.isfinite(v) for v in values):
                raise InvalidValueError(
                    f"{path}:{number}: expected 4 finite numbers "
                    f"'frame agent x y', got {line.strip()!r}",
                    line=number,
                )
            if not (values[0].is_integer() and values[1].is_integer()):
                raise InvalidValueError(
                    f"{path}:{number}: frame and agent must be integers", line=number
                )
            rows.append(values)
            lines.append(number)
    if not rows:
        raise InvalidValueError(f"{path}: no 'frame agent x y' lines", line=0)
    return np.array(rows, dtype=np.float64), np.array(lines)


def _floats(words: list[str], path: Path, number: int) -> list[float]:
    try:
        return [float(word) for word in words]
    except ValueError:
        raise InvalidValueError(
            f"{path}:{number}: not a number in {' '.join(words)!r}", line=number
        ) from None


def _frame_grid(frames: np.ndarray) -> tuple[int, int]:
    """The first frame number and the step between frames (gcd of their differences)."""
    seen = np.unique(frames.astype(np.int64))
    step = int(np.gcd.reduce(np.diff(seen))) if len(seen) > 1 else 1
    return int(seen[0]), step


def _refuse_duplicates(
    path: Path, index: np.ndarray, agents: np.ndarray, lines: np.ndarray
) -> None:
    order = np.lexsort((index, agents))
    same = (np.diff(index[order]) == 0) & (np.diff(agents[order]) == 0)
    if same.any():
        number = int(lines[order][1:][same][0])
        raise InvalidValueError(
            f"{path}:{number}: agent {int(agents[order][1:][same][0])} appears twice in one frame",
            line=number,
        )


def _ucy_track(
    index: np.ndarray, xy: np.ndarray, n_frames: int, max_gap: int
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Positions with short gaps interpolated, and the present stretches (first, last frame)."""
    positions = np.full((n_frames, 3), np.nan)
    span = np.arange(index[0], index[-1] + 1)
    for axis in (0, 1):
        positions[span, axis] = np.interp(span, index, xy[:, axis])
    positions[span, 2] = 0.0
    breaks = np.nonzero(np.diff(index) - 1 > max_gap)[0]
    for b in breaks:
        positions[index[b] + 1 : index[b + 1]] = np.nan
    starts = [int(index[0])] + [int(index[b + 1]) for b in breaks]
    ends = [int(index[b]) for b in breaks] + [int(index[-1])]
    return positions, list(zip(starts, ends, strict=True))


# --- the procedural generator -------------------------------------------------------------


def generate_scene(
    seed: int,
    *,
    generator: str = "walkers",
    version: int = 1,
    n_objects: int = 8,
    seconds: float = 20.0,
    frame_rate: float = 10.0,
) -> Scene:
    """A procedural scene from a seed: the same arguments always give the same scene.

    ``"walkers"`` version 1: a room (one ``"room"`` object, not counted in
    ``n_objects``) with furniture (static, with sizes, colours and a yaw), a
    lamp whose ``light`` attribute goes ``"on"`` and ``"off"`` (``attribute``
    events), and people (a third of ``n_objects``, at least one) who walk
    between the furniture, with a ``waypoint`` event on each arrival and now
    and then an ``action`` (``{"name": "pick_up", "item": "cup"}`` at a table,
    ``{"name": "take", "item": "book"}`` at a shelf). People turn to face their
    way (yaw quaternions); every object has a ``spawn`` event.

    Parameters
    ----------
    seed : int
        Seed of ``numpy.random.default_rng``.
    generator, version : str, int
        Which generator; each version is kept so old scenes can be re-made.
    n_objects : int
        Furniture plus people (at least 1).
    seconds, frame_rate : float
        Duration and rate: ``round(seconds * frame_rate) + 1`` frames.

    Returns
    -------
    Scene
        With ``source = {"generator", "version", "seed", "params": {n_objects,
        seconds, frame_rate}, "hash": scene_hash(scene)}``.
    """
    make = _GENERATORS.get((generator, version))
    if make is None:
        raise InvalidValueError(
            f"unknown generator {generator!r} version {version}; known: {sorted(_GENERATORS)}",
            field="generator",
        )
    if n_objects < 1 or not seconds > 0 or not frame_rate > 0:
        raise InvalidValueError(
            "n_objects must be >= 1, seconds and frame_rate > 0", field="n_objects"
        )
    n_frames = int(round(seconds * frame_rate)) + 1
    scene = make(np.random.default_rng(seed), n_objects, n_frames, float(frame_rate))
    scene.name = f"{generator}-v{version}-seed{seed}"
    scene.source = {
        "generator": generator,
        "version": version,
        "seed": seed,
        "params": {"n_objects": n_objects, "seconds": seconds, "frame_rate": frame_rate},
    }
    scene.source["hash"] = scene_hash(scene)
    return scene


def scene_hash(scene: Scene) -> str:
    """BLAKE2b (32 bytes, hex) of a scene's content: frame rate and count, objects, tracks, events.

    Track values are rounded to 1e-9 (as integers, NaN as one marker) so the
    hash does not depend on the last bits of floating point; the name and
    ``source`` are left out (``source`` holds the hash).
    """
    digest = hashlib.blake2b(digest_size=32)
    head = {
        "frame_rate": scene.frame_rate,
        "n_frames": scene.n_frames,
        "objects": [asdict(o) for o in scene.objects],
        "events": [asdict(e) for e in scene.events],
    }
    digest.update(
        json.dumps(head, sort_keys=True, separators=(",", ":"), default=json_value).encode()
    )
    for object_id in sorted(scene.tracks):
        track = scene.tracks[object_id]
        digest.update(object_id.encode() + b"\0" + _nano_grid(track.positions))
        digest.update(b"-" if track.rotations is None else b"R" + _nano_grid(track.rotations))
    return digest.hexdigest()


def check_generated(scene: Scene) -> None:
    """Re-make a generated scene from its ``source`` and check the hash it recorded.

    Raises
    ------
    InvalidValueError
        ``source`` does not name a generator, version, seed and parameters.
    CorruptDataError
        The generator now makes a different scene (its code changed).
    """
    source = scene.source
    try:
        again = generate_scene(
            source["seed"],
            generator=source["generator"],
            version=source["version"],
            **source["params"],
        )
        stored = source["hash"]
    except (KeyError, TypeError):
        raise InvalidValueError(
            f"scene {scene.name!r} has no generator source "
            f"(generator, version, seed, params, hash)",
            field="source",
        ) from None
    if again.source["hash"] != stored:
        raise CorruptDataError(
            f"generator {source['generator']!r} version {source['version']} with seed "
            f"{source['seed']} now makes a different scene (hash {again.source['hash'][:16]}... "
            f"!= stored {str(stored)[:16]}...): the generator changed; bump its version",
            generator=source["generator"],
            seed=source["seed"],
        )


def _nano_grid(values: np.ndarray) -> bytes:
    grid = np.rint(np.asarray(values, dtype=np.float64) * 1e9)
    return np.where(np.isnan(grid), np.iinfo(np.int64).min, grid).astype("<i8").tobytes()


_FURNITURE = (
    ("table", (1.6, 0.9, 0.75)),
    ("sofa", (2.0, 0.9, 0.85)),
    ("shelf", (1.0, 0.4, 1.8)),
    ("chair", (0.5, 0.5, 0.9)),
    ("fridge", (0.7, 0.7, 1.8)),
    ("bed", (2.0, 1.6, 0.5)),
)
_COLOURS = ("oak", "white", "black", "grey", "red", "blue")
_NAMES = ("Anna", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana", "Ivo", "Jun")
_ACTIONS = {"table": {"name": "pick_up", "item": "cup"}, "shelf": {"name": "take", "item": "book"}}


def _walkers_v1(
    rng: np.random.Generator, n_objects: int, n_frames: int, frame_rate: float
) -> Scene:
    width, depth = float(rng.uniform(5, 9)), float(rng.uniform(4, 7))
    room = SceneObject("room", "room", size=(width, depth, 2.6))
    objects, tracks = [room], {"room": _static("room", n_frames, (width / 2, depth / 2), 0.0)}
    n_people = max(1, n_objects // 3)
    kinds = [("lamp", (0.4, 0.4, 1.6)), ("table", dict(_FURNITURE)["table"])]
    kinds += [_FURNITURE[int(i)] for i in rng.integers(0, len(_FURNITURE), n_objects)]
    for number, (kind, size) in enumerate(kinds[: n_objects - n_people], 1):
        obj = SceneObject(
            f"{kind}_{number}",
            kind,
            size=size,
            attributes={"colour": _COLOURS[int(rng.integers(len(_COLOURS)))]},
        )
        if kind == "lamp":
            obj.attributes["light"] = "off"
        xy = (float(rng.uniform(0.6, width - 0.6)), float(rng.uniform(0.6, depth - 0.6)))
        objects.append(obj)
        tracks[obj.id] = _static(obj.id, n_frames, xy, float(rng.integers(4)) * math.pi / 2)
    events = [Event(0, "spawn", obj.id) for obj in objects]
    events += _lamp_events(rng, objects, n_frames)
    places = _places(objects[1:], tracks, width, depth, rng)
    for number in range(n_people):
        person = SceneObject(
            f"person_{number + 1}",
            "person",
            size=PERSON_SIZE,
            attributes={"name": _NAMES[number % len(_NAMES)]},
        )
        spawn = 0 if number == 0 else int(rng.integers(0, n_frames // 4 + 1))
        door = (0.3, float(rng.uniform(0.5, depth - 0.5)))
        track, walk_events = _walk(rng, person.id, places, door, spawn, n_frames, frame_rate)
        objects.append(person)
        tracks[person.id] = track
        events += [Event(spawn, "spawn", person.id)] + walk_events
    events.sort(key=lambda e: (e.frame, e.object_id or "", e.type))
    return Scene("", frame_rate, n_frames, objects, tracks, events)


def _static(object_id: str, n_frames: int, xy: tuple[float, float], yaw: float) -> Track:
    """An object that stays where it is, turned by ``yaw`` radians about z."""
    positions = np.tile([xy[0], xy[1], 0.0], (n_frames, 1))
    return Track(object_id, positions, np.tile(_yaw_quaternion(yaw), (n_frames, 1)))


def _yaw_quaternion(yaw: float) -> list[float]:
    return [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]


def _lamp_events(
    rng: np.random.Generator, objects: list[SceneObject], n_frames: int
) -> list[Event]:
    lamps = [obj.id for obj in objects if obj.kind == "lamp"]
    if not lamps or n_frames < 3:
        return []
    frames = np.unique(rng.integers(1, n_frames, int(rng.integers(1, 4))))
    return [
        Event(int(f), "attribute", lamps[0], {"light": ("on", "off")[k % 2]})
        for k, f in enumerate(frames)
    ]


def _places(
    furniture: list[SceneObject],
    tracks: dict[str, Track],
    width: float,
    depth: float,
    rng: np.random.Generator,
) -> list[tuple[str, str, np.ndarray]]:
    """Where people walk to: (name, kind, floor point) beside each piece of furniture."""
    centre = np.array([width / 2, depth / 2])
    places = []
    for obj in furniture:
        at = tracks[obj.id].positions[0, :2]
        away = centre - at
        step = max(obj.size[:2]) / 2 + 0.4
        point = at + away / max(float(np.linalg.norm(away)), 1e-9) * step
        places.append((obj.id, obj.kind, np.clip(point, 0.3, [width - 0.3, depth - 0.3])))
    if not places:
        places = [
            (
                f"spot_{k}",
                "spot",
                np.array([rng.uniform(0.5, width - 0.5), rng.uniform(0.5, depth - 0.5)]),
            )
            for k in range(1, 4)
        ]
    return places


def _walk(
    rng: np.random.Generator,
    person: str,
    places: list[tuple[str, str, np.ndarray]],
    door: tuple[float, float],
    spawn: int,
    n_frames: int,
    frame_rate: float,
) -> tuple[Track, list[Event]]:
    """Walk from the door from place to place, pausing at each, until the scene ends."""
    xy, yaw = [np.array(door)], [0.0]
    events, here, current = [], np.array(door), -1
    while spawn + len(xy) < n_frames:
        current = _next_place(rng, len(places), current)
        name, kind, goal = places[current]
        steps = max(1, math.ceil(np.linalg.norm(goal - here) / rng.uniform(0.9, 1.4) * frame_rate))
        heading = math.atan2(*(goal - here)[::-1]) if np.any(goal != here) else yaw[-1]
        xy += [here + (goal - here) * k / steps for k in range(1, steps + 1)]
        arrive = spawn + len(xy) - 1
        events.append(Event(arrive, "waypoint", person, {"name": name}))
        if kind in _ACTIONS and rng.random() < 0.5:
            events.append(Event(arrive + 1, "action", person, dict(_ACTIONS[kind])))
        pause = int(rng.uniform(1.0, 3.0) * frame_rate)
        xy += [goal] * pause
        yaw += [heading] * (steps + pause)
        here = goal
    positions = np.full((n_frames, 3), np.nan)
    positions[spawn:, :2] = np.array(xy[: n_frames - spawn])
    positions[spawn:, 2] = 0.0
    rotations = np.full((n_frames, 4), np.nan)
    rotations[spawn:] = [_yaw_quaternion(a) for a in yaw[: n_frames - spawn]]
    return Track(person, positions, rotations), [e for e in events if e.frame < n_frames]


def _next_place(rng: np.random.Generator, n_places: int, current: int) -> int:
    """Any place but the current one (when there is another)."""
    if current < 0 or n_places == 1:
        return int(rng.integers(n_places))
    choice = int(rng.integers(n_places - 1))
    return choice + (choice >= current)


_GENERATORS: dict[tuple[str, int], Callable[[np.random.Generator, int, int, float], Scene]] = {
    ("walkers", 1): _walkers_v1,
}
