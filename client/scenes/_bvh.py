"""BVH motion capture (text) to a ``Scene``: the skeleton as objects, local poses as tracks.

Kept apart from ``importers`` (which re-exports ``read_bvh``) for size; the
conventions are written there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aios_memory.schemas import InvalidValueError

from .model import Scene, SceneObject, Track

__all__ = ["read_bvh", "euler_to_quaternion", "continuous_signs", "JOINT_SIZE"]

JOINT_SIZE = (0.05, 0.05, 0.05)
_AXES = {"X": 0, "Y": 1, "Z": 2}
_CHANNELS = {f"{axis}{kind}" for axis in _AXES for kind in ("position", "rotation")}


@dataclass
class _Joint:
    id: str
    parent: str | None
    line: int
    end: bool = False
    offset: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    channels: list[str] = field(default_factory=list)


def read_bvh(path: str | Path, *, name: str | None = None, scale: float = 1.0) -> Scene:
    """Read a text BVH file: HIERARCHY (ROOT, JOINT, End Site) then MOTION.

    Parameters
    ----------
    path : str or Path
        The file. Joint declarations, braces, ``OFFSET`` and ``CHANNELS``
        each on their own line; channels are any of X/Y/Z ``position`` and
        ``rotation`` in any order (rotations in degrees).
    name : str, optional
        The scene's name; the file's stem by default.
    scale : float
        Multiplies offsets and position channels (to metres; 1 if the file
        already is in metres, as the CMU conversions are).

    Returns
    -------
    Scene
        One ``SceneObject`` per joint (kind ``"joint"``, id = the joint's name,
        ``parent`` = its parent joint, attributes ``{"offset", "channels"}``) and
        one per End Site (kind ``"end"``, id ``"<joint>_end"``, parent = its
        joint, attributes ``{"offset"}``; its track is the constant offset, no
        rotations). Tracks hold LOCAL poses: position = offset + position
        channels, rotation = ``q_c1 * q_c2 * q_c3`` for rotation channels listed
        c1, c2, c3 (intrinsic, as BVH means them), unit ``(w, x, y, z)`` with
        signs made continuous frame to frame. ``frame_rate = 1 / Frame Time``
        (rounded to a whole number within 0.1%: files print 0.008333 for
        120 Hz). No events. ``source = {"format": "bvh", "file", "up": "y"}``.

    Raises
    ------
    InvalidValueError
        A malformed file, naming the line.
    """
    path = Path(path)
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    joints, motion_line = _parse_hierarchy(lines, path)
    n_values = sum(len(j.channels) for j in joints)
    frame_time, values = _parse_motion(lines, motion_line, n_values, path)
    objects, tracks, column = [], {}, 0
    for joint in joints:
        width = len(joint.channels)
        tracks[joint.id] = _joint_track(joint, values[:, column : column + width], scale)
        objects.append(_joint_object(joint))
        column += width
    rate = 1.0 / frame_time
    if abs(rate - round(rate)) <= 1e-3 * rate:
        rate = float(round(rate))
    source = {"format": "bvh", "file": path.name, "up": "y"}
    return Scene(name or path.stem, rate, len(values), objects, tracks, [], source)


def euler_to_quaternion(axes: str, degrees: np.ndarray) -> np.ndarray:
    """Unit quaternions ``(n, 4)`` of intrinsic rotations about ``axes`` (e.g. ``"ZYX"``).

    ``degrees`` is ``(n, len(axes))``; the result is ``q_a1 * q_a2 * q_a3``,
    the rotation ``R_a1 R_a2 R_a3``.
    """
    degrees = np.asarray(degrees, dtype=np.float64).reshape(-1, len(axes))
    result = np.zeros((len(degrees), 4))
    result[:, 0] = 1.0
    for k, axis in enumerate(axes):
        half = np.radians(degrees[:, k]) / 2
        factor = np.zeros_like(result)
        factor[:, 0], factor[:, 1 + _AXES[axis]] = np.cos(half), np.sin(half)
        result = _multiply(result, factor)
    return result / np.linalg.norm(result, axis=1, keepdims=True)


def continuous_signs(quaternions: np.ndarray) -> np.ndarray:
    """The same rotations with signs chosen so each is on the side of the one before.

    ``q`` and ``-q`` are one rotation; interpolating between neighbours of
    opposite sign would swing the long way round. The first gets ``w >= 0``.
    """
    q = np.array(quaternions, dtype=np.float64)
    if len(q) == 0:
        return q
    if q[0, 0] < 0:
        q[0] = -q[0]
    dots = np.einsum("ij,ij->i", q[1:], q[:-1])
    q[1:] *= np.cumprod(np.where(dots < 0, -1.0, 1.0))[:, None]
    return q


def _multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton products ``a * b`` row by row."""
    aw, ax, ay, az = a.T
    bw, bx, by, bz = b.T
    return np.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        axis=1,
    )


def _joint_track(joint: _Joint, values: np.ndarray, scale: float) -> Track:
    positions = np.tile(np.array(joint.offset) * scale, (len(values), 1))
    for k, channel in enumerate(joint.channels):
        if channel.endswith("position"):
            positions[:, _AXES[channel[0]]] += values[:, k] * scale
    if joint.end:
        return Track(joint.id, positions)
    turns = [k for k, channel in enumerate(joint.channels) if channel.endswith("rotation")]
    axes = "".join(joint.channels[k][0] for k in turns)
    rotations = continuous_signs(euler_to_quaternion(axes, values[:, turns]))
    return Track(joint.id, positions, rotations)


def _joint_object(joint: _Joint) -> SceneObject:
    attributes: dict[str, object] = {"offset": list(joint.offset)}
    if not joint.end:
        attributes["channels"] = list(joint.channels)
    return SceneObject(
        joint.id, "end" if joint.end else "joint", joint.parent, JOINT_SIZE, attributes
    )


def _refuse(path: Path, number: int, why: str) -> InvalidValueError:
    return InvalidValueError(f"{path}:{number}: {why}", line=number)


def _parse_hierarchy(lines: list[str], path: Path) -> tuple[list[_Joint], int]:
    """The joints in file order (the order of the motion columns), and the MOTION line index."""
    joints: list[_Joint] = []
    stack: list[_Joint] = []
    pending: _Joint | None = None
    started = False
    for index, line in enumerate(lines):
        words, number = line.split(), index + 1
        if not words:
            continue
        head = words[0].upper()
        if not started:
            if head != "HIERARCHY":
                raise _refuse(path, number, "a BVH file starts with HIERARCHY")
            started = True
        elif head == "MOTION":
            if stack or pending or not joints:
                raise _refuse(path, number, "MOTION before the hierarchy is complete")
            return joints, index
        elif head in ("ROOT", "JOINT") or (head == "END" and len(words) == 2):
            pending = _declare(words, number, path, stack, joints, pending)
        elif head == "{":
            if pending is None:
                raise _refuse(path, number, "'{' without a ROOT, JOINT or End Site before it")
            stack.append(pending)
            joints.append(pending)
            pending = None
        elif head == "}":
            if not stack or pending:
                raise _refuse(path, number, "unbalanced '}'")
            stack.pop()
        elif head in ("OFFSET", "CHANNELS") and stack and not pending:
            _read_property(words, number, path, stack[-1])
        else:
            raise _refuse(path, number, f"unexpected {line.strip()!r}")
    raise _refuse(path, len(lines), "no MOTION section" if started else "empty file")


def _declare(
    words: list[str],
    number: int,
    path: Path,
    stack: list[_Joint],
    joints: list[_Joint],
    pending: _Joint | None,
) -> _Joint:
    head = words[0].upper()
    if pending is not None:
        raise _refuse(path, number, "a declaration where '{' was expected")
    if (head == "ROOT") != (not stack) or (stack and stack[-1].end):
        raise _refuse(path, number, f"{words[0]} is not allowed here")
    if head == "END":
        if words[1].upper() != "SITE":
            raise _refuse(path, number, f"unexpected {' '.join(words)!r}")
        taken = {j.id for j in joints}
        name, k = f"{stack[-1].id}_end", 1
        while name in taken:
            k += 1
            name = f"{stack[-1].id}_end{k}"
        return _Joint(name, stack[-1].id, number, end=True)
    name = " ".join(words[1:])
    if not name or name in {j.id for j in joints}:
        raise _refuse(path, number, f"joint name {name!r} is missing or used twice")
    return _Joint(name, stack[-1].id if stack else None, number)


def _read_property(words: list[str], number: int, path: Path, joint: _Joint) -> None:
    if words[0].upper() == "OFFSET":
        offset = _numbers(words[1:], number, path)
        if len(offset) != 3:
            raise _refuse(path, number, "OFFSET needs 3 numbers")
        joint.offset = offset
        return
    if joint.end or not words[1:] or not words[1].isdigit():
        raise _refuse(path, number, "CHANNELS needs a count (and End Site has none)")
    channels = words[2:]
    if (
        int(words[1]) != len(channels)
        or not set(channels) <= _CHANNELS
        or len(set(channels)) != len(channels)
    ):
        raise _refuse(
            path,
            number,
            f"CHANNELS {words[1]} then that many distinct names of {sorted(_CHANNELS)}",
        )
    joint.channels = channels


def _numbers(words: list[str], number: int, path: Path) -> list[float]:
    try:
        values = [float(word) for word in words]
    except ValueError:
        raise _refuse(path, number, f"not a number in {' '.join(words)!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise _refuse(path, number, "not a finite number")
    return values


def _parse_motion(
    lines: list[str], start: int, n_values: int, path: Path
) -> tuple[float, np.ndarray]:
    """Frame Time and the ``(frames, n_values)`` channel values after the MOTION line."""
    rest = [(i + 1, line) for i, line in enumerate(lines[start + 1 :], start + 1) if line.strip()]
    if len(rest) < 2:
        raise _refuse(path, len(lines), "MOTION needs 'Frames:' and 'Frame Time:' lines")
    n_frames = _header(rest[0], "FRAMES:", path)
    frame_time = _header(rest[1], "FRAME TIME:", path)
    if n_frames != int(n_frames) or n_frames < 1 or not frame_time > 0:
        raise _refuse(path, rest[0][0], "Frames must be a whole number >= 1, Frame Time > 0")
    rows = rest[2:]
    if len(rows) != int(n_frames):
        raise _refuse(
            path,
            rows[-1][0] if rows else rest[1][0],
            f"Frames: {int(n_frames)} but {len(rows)} frame lines",
        )
    values = np.empty((len(rows), n_values))
    for k, (number, line) in enumerate(rows):
        row = _numbers(line.split(), number, path)
        if len(row) != n_values:
            raise _refuse(path, number, f"{len(row)} values, the channels need {n_values}")
        values[k] = row
    return frame_time, values


def _header(numbered: tuple[int, str], label: str, path: Path) -> float:
    number, line = numbered
    text = " ".join(line.split())
    if not text.upper().startswith(label):
        raise _refuse(path, number, f"expected '{label.title()} ...', got {line.strip()!r}")
    values = _numbers(text[len(label) :].split(), number, path)
    if len(values) != 1:
        raise _refuse(path, number, f"'{label.title()}' needs one number")
    return values[0]
