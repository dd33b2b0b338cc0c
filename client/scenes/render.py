"""Pictures of a scene at a moment: a PNG frame, a strip of moments, an animated GIF.

Made on demand from ``state_at(t)`` (the replay), never stored. matplotlib is
imported only when a picture is made (the thin client does not need it; it
comes with the ``scenes`` extra). Drawing uses a ``Figure`` on the Agg canvas:
no display, no pyplot state, so pictures can be made from any thread.

Poses of objects with a parent (BVH joints, a cup on a table) are relative to
the parent; ``world_poses`` composes them root to leaf. The vertical axis is
``up`` (``"z"``, or ``"y"`` for BVH: pass ``scene.source.get("up", "z")``;
by default ``"y"`` when there are ``"joint"`` objects). Trails are each root
object's and end site's world positions at frame times in
``[t - trail_seconds, t]`` (at most ``MAX_TRAIL_POINTS`` of them).

Axis limits come from ``bounds``, the whole episode's extent (``scene_bounds``
of the decoded scene): every frame of a strip or GIF, and every frame drawn
separately, then has the same limits, one metre is as long on every axis, and
a margin keeps markers off the edges. Without ``bounds`` the moments drawn
(and their trails) set the limits. A flat scene (the ``up`` coordinate never
changes, as in UCY's ground-plane tracks) is drawn from above on 2D axes; any
other stays 3D with ``up`` vertical.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aios_memory.schemas.errors import CodecUnavailableError, InvalidValueError

from .model import ObjectState, Scene, SceneObject

__all__ = [
    "render_frame",
    "render_strip",
    "render_gif",
    "world_poses",
    "scene_bounds",
    "StateAt",
    "DEFAULT_SIZE_PX",
    "MAX_TRAIL_POINTS",
]

StateAt = Callable[[float], Mapping[str, ObjectState]]
Pose = tuple[np.ndarray, "np.ndarray | None"]
DEFAULT_SIZE_PX = (800, 600)
MAX_TRAIL_POINTS = 60
# kind -> (marker, colour, points^2): people stand out, joints are small, furniture is square.
_STYLES = {
    "person": ("o", "tab:blue", 80.0),
    "joint": ("o", "tab:red", 12.0),
    "end": ("o", "tab:orange", 16.0),
    "room": ("", "dimgray", 0.0),
    "lamp": ("*", "gold", 120.0),
}
_FURNITURE_STYLE = ("s", "tab:brown", 60.0)
_SKELETON = ("joint", "end")
# Limits hold at least a metre on every axis (one still object is not a point), and a
# twentieth of the widest span more on every side, so markers at the edge stay whole.
_MIN_SPAN_M = 1.0
_MARGIN = 0.05
# An up coordinate that varies less than this (below any quantization step) is a flat scene.
_FLAT_M = 1e-3
# Pixels kept free around a 2D plot for its tick labels, as a fraction of a panel at most.
_TICK_ROOM_PX = {"left": 34, "right": 10, "bottom": 18}
_TICK_ROOM_MAX = 0.25
# The top of the figure is the title's.
_PLOT_TOP = 0.92


@dataclass
class _View:
    objects: Sequence[SceneObject]
    state_at: StateAt
    name: str
    frame_rate: float
    trail_seconds: float
    up: str
    size_px: tuple[int, int]
    dpi: int
    bounds: np.ndarray | None = None  # (2, 3) world extent of the episode; None: the moments drawn
    limits: np.ndarray | None = None  # (2, 3) plot-axis limits, the same for every frame drawn
    flat: bool = False  # drawn from above on 2D axes
    trail_cache: dict[float, dict[str, np.ndarray]] | None = None


def render_frame(
    objects: Sequence[SceneObject],
    state_at: StateAt,
    t: float,
    path: str | Path,
    *,
    name: str = "",
    frame_rate: float = 10.0,
    trail_seconds: float = 2.0,
    size_px: tuple[int, int] = DEFAULT_SIZE_PX,
    dpi: int = 100,
    up: str | None = None,
    bounds: np.ndarray | Sequence[Sequence[float]] | None = None,
) -> Path:
    """Draw the scene at time ``t`` into a PNG of exactly ``size_px`` pixels.

    Parameters
    ----------
    objects : sequence of SceneObject
        The episode's objects (kinds choose markers; parents draw skeletons).
    state_at : callable
        ``state_at(t) -> {object_id: ObjectState}`` (absent objects left out).
    t : float
        Seconds from the episode's start.
    path : str or Path
        Where the PNG goes.
    name : str
        The episode's name, in the title.
    frame_rate : float
        The episode's rate: trails are sampled at its frame times.
    trail_seconds : float
        How much of the recent past is drawn as trails (0: none).
    size_px, dpi : (int, int), int
        Image width and height in pixels, and the resolution text is laid out at.
    up : {"z", "y"}, optional
        The scene's vertical axis.
    bounds : array of shape (2, 3), optional
        The whole episode's extent in world coordinates, ``[lowest xyz, highest xyz]``
        (``scene_bounds`` of the decoded scene). It sets the axis limits and whether the
        scene is flat, so every moment of the episode is drawn on the same axes. By
        default the moment drawn and its trails set them.

    Returns
    -------
    Path
        ``path``.
    """
    view = _view(objects, state_at, name, frame_rate, trail_seconds, size_px, dpi, up, bounds)
    _settle(view, [t])
    return _save_png(_draw(view, t), path)


def render_strip(
    objects: Sequence[SceneObject],
    state_at: StateAt,
    t_from: float,
    t_to: float,
    path: str | Path,
    *,
    frames: int = 6,
    name: str = "",
    frame_rate: float = 10.0,
    trail_seconds: float = 2.0,
    size_px: tuple[int, int] = (400, 300),
    dpi: int = 100,
    up: str | None = None,
    bounds: np.ndarray | Sequence[Sequence[float]] | None = None,
) -> Path:
    """``frames`` moments evenly from ``t_from`` to ``t_to``, side by side in one PNG.

    Each panel is ``size_px``; the strip is ``frames * width`` by ``height``.
    All panels share one set of axis limits so motion reads across them: the
    episode's ``bounds``, or by default what every panel shows.
    Other parameters as ``render_frame``.
    """
    view = _view(objects, state_at, name, frame_rate, trail_seconds, size_px, dpi, up, bounds)
    times = _moments(t_from, t_to, frames)
    _settle(view, times)
    return _save_png(np.concatenate([_draw(view, t) for t in times], axis=1), path)


def render_gif(
    objects: Sequence[SceneObject],
    state_at: StateAt,
    t_from: float,
    t_to: float,
    path: str | Path,
    *,
    fps: float = 5.0,
    frames: int | None = None,
    name: str = "",
    frame_rate: float = 10.0,
    trail_seconds: float = 2.0,
    size_px: tuple[int, int] = (480, 360),
    dpi: int = 100,
    up: str | None = None,
    bounds: np.ndarray | Sequence[Sequence[float]] | None = None,
) -> Path:
    """An animated GIF from ``t_from`` to ``t_to``, looping, shown at ``fps`` frames per second.

    ``frames`` moments evenly spaced (both ends included); by default
    ``round((t_to - t_from) * fps) + 1``, which plays in real time. Every frame
    has the same axis limits (as ``render_strip``). Other parameters as
    ``render_frame``.
    """
    if not fps > 0:
        raise InvalidValueError("fps must be > 0", field="fps")
    view = _view(objects, state_at, name, frame_rate, trail_seconds, size_px, dpi, up, bounds)
    count = int(round((t_to - t_from) * fps)) + 1 if frames is None else frames
    times = _moments(t_from, t_to, count)
    _settle(view, times)
    image = _pillow()
    pictures = [image.fromarray(_draw(view, t)).convert("RGB") for t in times]
    pictures[0].save(
        path, save_all=True, append_images=pictures[1:], loop=0, duration=int(round(1000 / fps))
    )
    return Path(path)


def world_poses(
    objects: Sequence[SceneObject], states: Mapping[str, ObjectState]
) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """World position and rotation of every present object, composing parent-relative poses.

    A child's world position is ``parent_position + R(parent_rotation) @ position``
    and its rotation ``parent_rotation * rotation`` (a parent without rotation
    only translates). An object whose parent is absent is left out.
    """
    return _place(
        objects,
        {
            key: (np.asarray(state.position, dtype=float), state.rotation)
            for key, state in states.items()
        },
    )


def scene_bounds(scene: Scene) -> np.ndarray | None:
    """The whole episode's extent: what ``bounds=`` of the render functions takes.

    Returns
    -------
    ndarray of shape (2, 3), or None
        ``[lowest xyz, highest xyz]`` in world coordinates over every object's
        world position (``world_poses``) at every frame, and the outlines drawn
        around furniture and rooms; None if no object is ever present.
    """
    world = _place(
        scene.objects,
        {
            key: (
                np.asarray(track.positions, dtype=float),
                None if track.rotations is None else np.asarray(track.rotations, dtype=float),
            )
            for key, track in scene.tracks.items()
        },
    )
    points = [at for at, _ in world.values()]
    points += [
        _outline(obj, *world[obj.id])
        for obj in scene.objects
        if obj.id in world and _has_outline(obj)
    ]
    stacked = (
        np.concatenate([np.reshape(p, (-1, 3)) for p in points]) if points else np.empty((0, 3))
    )
    stacked = stacked[np.all(np.isfinite(stacked), axis=1)]
    return np.stack([stacked.min(axis=0), stacked.max(axis=0)]) if len(stacked) else None


def _place(objects: Sequence[SceneObject], local: Mapping[str, Pose]) -> dict[str, Pose]:
    """World poses from parent-relative ones: one pose per object, or one row per frame
    (a whole track at once; rows where the object or a parent is absent are NaN)."""
    parents = {obj.id: obj.parent for obj in objects}
    world: dict[str, Pose] = {}

    def place(object_id: str, depth: int) -> Pose | None:
        # depth: a parent cycle in a bad layout must end, not recurse forever.
        if object_id in world or object_id not in local or depth > len(parents):
            return world.get(object_id)
        pose, parent = local[object_id], parents.get(object_id)
        if parent is not None:
            base = place(parent, depth + 1)
            if base is None:
                return None
            pose = _compose(base, pose)
        world[object_id] = pose
        return pose

    for object_id in local:
        place(object_id, 0)
    return world


def _compose(base: Pose, local: Pose) -> Pose:
    """``local`` placed in ``base``'s frame. Arrays broadcast over leading axes, so one call
    places a pose, an object's whole track, or every corner of an outline."""
    (at, turn), (offset, own) = base, local
    if turn is None:
        return at + offset, own
    moved = at + _rotate(turn, offset)
    return moved, turn if own is None else _quaternion_product(turn, own)


def _rotate(turn: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Unit quaternions ``(w, x, y, z)`` applied to points: ``v + w t + u x t``, ``t = 2 u x v``."""
    turn = np.asarray(turn, dtype=float)
    w, axis = turn[..., :1], turn[..., 1:]
    twice = 2 * np.cross(axis, points)
    return points + w * twice + np.cross(axis, twice)


def _quaternion_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    w = a[..., :1] * b[..., :1] - np.sum(a[..., 1:] * b[..., 1:], axis=-1, keepdims=True)
    vector = a[..., :1] * b[..., 1:] + b[..., :1] * a[..., 1:] + np.cross(a[..., 1:], b[..., 1:])
    return np.concatenate([w, vector], axis=-1)


def _view(
    objects: Sequence[SceneObject],
    state_at: StateAt,
    name: str,
    frame_rate: float,
    trail_seconds: float,
    size_px: tuple[int, int],
    dpi: int,
    up: str | None,
    bounds: np.ndarray | Sequence[Sequence[float]] | None,
) -> _View:
    if up is None:
        up = "y" if any(obj.kind == "joint" for obj in objects) else "z"
    if up not in ("y", "z") or not frame_rate > 0 or trail_seconds < 0:
        raise InvalidValueError(
            "up must be 'y' or 'z', frame_rate > 0, trail_seconds >= 0", field="up"
        )
    if len(size_px) != 2 or min(size_px) < 16 or dpi < 10:
        raise InvalidValueError(
            f"size_px {size_px} must be two sizes >= 16 pixels, dpi >= 10", field="size_px"
        )
    return _View(
        objects,
        state_at,
        name,
        frame_rate,
        trail_seconds,
        up,
        (int(size_px[0]), int(size_px[1])),
        int(dpi),
        _checked_bounds(bounds),
    )


def _checked_bounds(bounds: np.ndarray | Sequence[Sequence[float]] | None) -> np.ndarray | None:
    if bounds is None:
        return None
    try:
        box = np.asarray(bounds, dtype=float)
    except (TypeError, ValueError):
        box = np.empty(0)
    if box.shape != (2, 3) or not np.all(np.isfinite(box)) or np.any(box[0] > box[1]):
        raise InvalidValueError(
            "bounds must be [[lowest x, y, z], [highest x, y, z]], finite", field="bounds"
        )
    return box


def _moments(t_from: float, t_to: float, count: int) -> list[float]:
    if count < 1 or t_to < t_from:
        raise InvalidValueError("need t_from <= t_to and at least one frame", field="frames")
    return [float(t) for t in np.linspace(t_from, t_to, count)]


def _to_plot(view: _View, points: np.ndarray) -> np.ndarray:
    """World to plot axes (plot z is up); Y-up (x, y, z) becomes (x, -z, y), still right-handed."""
    points = np.asarray(points, dtype=float).reshape(-1, 3)
    return points if view.up == "z" else np.stack([points[:, 0], -points[:, 2], points[:, 1]], 1)


def _poses(view: _View, t: float) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """World poses at ``t`` of every present object with a finite position."""
    world = world_poses(view.objects, view.state_at(max(t, 0.0)))
    return {key: pose for key, pose in world.items() if np.all(np.isfinite(pose[0]))}


def _positions(view: _View, t: float) -> dict[str, np.ndarray]:
    """Plot-axis positions of every present object at ``t``."""
    return {key: _to_plot(view, pose[0])[0] for key, pose in _poses(view, t).items()}


def _trails(view: _View, t: float) -> dict[str, np.ndarray]:
    """Recent positions (oldest first) of root objects and end sites (kept per ``t``)."""
    if view.trail_cache is None:
        view.trail_cache = {}
    if t not in view.trail_cache:
        view.trail_cache[t] = _sample_trails(view, t)
    return view.trail_cache[t]


def _sample_trails(view: _View, t: float) -> dict[str, np.ndarray]:
    frame = math.floor(t * view.frame_rate + 1e-9)
    first = max(0, math.ceil((t - view.trail_seconds) * view.frame_rate - 1e-9))
    frames = np.arange(first, frame + 1)
    if len(frames) < 2:
        return {}
    frames = np.unique(
        np.linspace(frames[0], frames[-1], min(len(frames), MAX_TRAIL_POINTS)).round()
    )
    tracked = {obj.id for obj in view.objects if obj.parent is None or obj.kind == "end"}
    trails: dict[str, list[np.ndarray]] = {}
    for f in frames:
        for key, at in _positions(view, f / view.frame_rate).items():
            if key in tracked:
                trails.setdefault(key, []).append(at)
    return {key: np.array(points) for key, points in trails.items() if len(points) > 1}


def _settle(view: _View, times: Sequence[float]) -> None:
    """Choose, once for every frame about to be drawn, the projection and the axis limits."""
    if view.bounds is not None:
        extent = _to_plot(view, view.bounds)
    else:
        extent = np.concatenate([_extent(view, _poses(view, t), _trails(view, t)) for t in times])
    view.flat = len(extent) == 0 or bool(np.ptp(extent[:, 2]) < _FLAT_M)
    view.limits = _limits(view, extent)


def _extent(
    view: _View,
    poses: dict[str, tuple[np.ndarray, np.ndarray | None]],
    trails: dict[str, np.ndarray],
) -> np.ndarray:
    """The plot points a picture must hold: objects, trails and outlines of furniture and rooms."""
    points = [_to_plot(view, np.array([pose[0] for pose in poses.values()]).reshape(-1, 3))]
    points += [
        _footprint(view, obj, *poses[obj.id])
        for obj in view.objects
        if _has_outline(obj) and obj.id in poses
    ]
    return np.concatenate(points + list(trails.values()))


def _limits(view: _View, points: np.ndarray) -> np.ndarray:
    """Plot-axis limits ``[low, high]`` around ``points``, one scale on every axis.

    At least ``_MIN_SPAN_M`` wide on every axis, ``_MARGIN`` of the widest span
    more on each side. Drawn from above, the shorter of x and y is widened to
    the plot's shape on the panel, so equal aspect fills the panel. In 3D,
    people's sticks (their height above their position when z is up) fit too.
    """
    if len(points) == 0:
        points = np.zeros((1, 3))
    low, high = points.min(axis=0), points.max(axis=0)
    if not view.flat and view.up == "z":
        high[2] += max((obj.size[2] for obj in view.objects if obj.kind == "person"), default=0.0)
    middle, span = (low + high) / 2, np.maximum(high - low, _MIN_SPAN_M)
    span += 2 * _MARGIN * span.max()
    if view.flat:
        span[:2] = np.maximum(span[:2], span[1::-1] * [_plot_shape(view), 1 / _plot_shape(view)])
    return np.stack([middle - span / 2, middle + span / 2])


def _plot_area(view: _View) -> dict[str, float]:
    """Where the axes sit on the figure (``subplots_adjust`` fractions)."""
    if not view.flat:
        return {"left": 0.0, "right": 1.0, "bottom": 0.0, "top": _PLOT_TOP}
    width, height = view.size_px
    room = {
        side: min(px / (height if side == "bottom" else width), _TICK_ROOM_MAX)
        for side, px in _TICK_ROOM_PX.items()
    }
    return {
        "left": room["left"],
        "right": 1 - room["right"],
        "bottom": room["bottom"],
        "top": _PLOT_TOP,
    }


def _plot_shape(view: _View) -> float:
    """Width over height, in pixels, of the 2D axes on the panel."""
    area, (width, height) = _plot_area(view), view.size_px
    return (area["right"] - area["left"]) * width / ((area["top"] - area["bottom"]) * height)


def _draw(view: _View, t: float) -> np.ndarray:
    """The picture at ``t`` as an ``(height, width, 4)`` uint8 RGBA array."""
    figure = _figure(view, t)
    figure.canvas.draw()
    width, height = view.size_px
    pixels = np.asarray(figure.canvas.buffer_rgba())[:height, :width]
    return np.pad(
        pixels,
        ((0, height - pixels.shape[0]), (0, width - pixels.shape[1]), (0, 0)),
        constant_values=255,
    )


def _figure(view: _View, t: float) -> Any:
    """The picture at ``t``: a matplotlib ``Figure`` on an Agg canvas, not yet drawn."""
    figure_class, canvas_class = _matplotlib()
    width, height = view.size_px
    # +0.5 px: Agg truncates width / dpi * dpi to int, and 799.9999 would lose a column.
    figure = figure_class(
        figsize=((width + 0.5) / view.dpi, (height + 0.5) / view.dpi), dpi=view.dpi
    )
    canvas_class(figure)
    figure.subplots_adjust(**_plot_area(view))
    axes = figure.add_subplot() if view.flat else figure.add_subplot(projection="3d")
    states = view.state_at(max(t, 0.0))
    poses = _poses(view, t)
    positions = {key: _to_plot(view, pose[0])[0] for key, pose in poses.items()}
    for points in _trails(view, t).values():  # first, so markers cover them on 2D axes
        axes.plot(*_coordinates(view, points), color="tab:gray", lw=0.8, alpha=0.6)
    _draw_objects(axes, view, poses, positions, states)
    _apply_limits(axes, view)
    axes.tick_params(labelsize=7)
    figure.suptitle(f"{view.name}  t = {t:.2f} s".strip(), fontsize=9)
    return figure


def _apply_limits(axes: Any, view: _View) -> None:
    """The view's limits, with one metre as long on every axis."""
    assert view.limits is not None  # _settle ran
    low, high = view.limits
    axes.set_xlim(low[0], high[0])
    axes.set_ylim(low[1], high[1])
    if view.flat:
        # The limits already have the plot's shape, so "box" moves nothing: the limits stay.
        axes.set_aspect("equal", adjustable="box")
        axes.grid(True, lw=0.4, alpha=0.5)
        return
    axes.set_zlim(low[2], high[2])
    axes.set_box_aspect(tuple(high - low), zoom=1.1)  # box sides as long as the limits' spans


def _coordinates(view: _View, points: np.ndarray) -> np.ndarray:
    """What the axes take: rows x, y (drawn from above, height dropped) or x, y, z."""
    rows = np.asarray(points, dtype=float).T
    return rows[:2] if view.flat else rows


def _draw_objects(
    axes: Any,
    view: _View,
    poses: dict[str, tuple[np.ndarray, np.ndarray | None]],
    positions: dict[str, np.ndarray],
    states: Mapping[str, ObjectState],
) -> None:
    """Footprints of furniture, people as standing sticks, joints linked to their parents."""
    shading = {} if view.flat else {"depthshade": False}
    for obj in view.objects:
        at = positions.get(obj.id)
        if at is None:
            continue
        marker, colour, area = _STYLES.get(obj.kind, _FURNITURE_STYLE)
        attributes = states[obj.id].attributes if obj.id in states else obj.attributes
        if attributes.get("light") == "off":
            colour = "lightgray"
        if _has_outline(obj):
            ring = _footprint(view, obj, *poses[obj.id])
            axes.plot(*_coordinates(view, ring), color=colour, lw=0.8)
        if obj.kind == "person" and obj.size[2] > 0 and view.up == "z" and not view.flat:
            axes.plot([at[0]] * 2, [at[1]] * 2, [at[2], at[2] + obj.size[2]], color=colour, lw=2)
            at = at + [0.0, 0.0, obj.size[2]]
        if marker:
            axes.scatter(*_coordinates(view, at), marker=marker, color=colour, s=area, **shading)
        if isinstance(attributes.get("name"), str):
            axes.text(*_coordinates(view, at), f" {attributes['name']}", fontsize=7)
        if obj.kind in _SKELETON and obj.parent in positions:
            line = np.stack([positions[obj.parent], positions[obj.id]])
            axes.plot(*_coordinates(view, line), color="tab:red", lw=1.5)


def _has_outline(obj: SceneObject) -> bool:
    """Furniture and rooms with a floor size are drawn as their outline."""
    return obj.kind not in _SKELETON and obj.kind != "person" and min(obj.size[:2]) > 0


def _outline(obj: SceneObject, at: np.ndarray, turn: np.ndarray | None) -> np.ndarray:
    """World corners (closed, ``(..., 5, 3)``) of the object's x-y extent, turned with it;
    ``at`` and ``turn`` are one pose or one row per frame."""
    half_x, half_y = obj.size[0] / 2, obj.size[1] / 2
    corners = np.array(
        [
            [-half_x, -half_y, 0],
            [half_x, -half_y, 0],
            [half_x, half_y, 0],
            [-half_x, half_y, 0],
            [-half_x, -half_y, 0],
        ]
    )
    at = np.asarray(at, dtype=float)[..., None, :]
    turn = None if turn is None else np.asarray(turn, dtype=float)[..., None, :]
    return _compose((at, turn), (corners, None))[0]


def _footprint(
    view: _View, obj: SceneObject, at: np.ndarray, turn: np.ndarray | None
) -> np.ndarray:
    """The outline of the object's x-y extent around its position, in plot axes."""
    return _to_plot(view, _outline(obj, at, turn))


def _save_png(pixels: np.ndarray, path: str | Path) -> Path:
    _pillow().fromarray(pixels).save(path, format="PNG")
    return Path(path)


def _matplotlib() -> tuple[Any, Any]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise CodecUnavailableError(
            f"pictures of scenes need matplotlib ({exc}); install it with "
            f"pip install 'ai-os-memory[scenes]'",
            missing="matplotlib",
        ) from None
    return Figure, FigureCanvasAgg


def _pillow() -> Any:
    _matplotlib()  # Pillow is a dependency of matplotlib: one install hint covers both
    from PIL import Image

    return Image
