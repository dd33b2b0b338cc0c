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
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from aios_memory.schemas.errors import CodecUnavailableError, InvalidValueError

from .scene_model import ObjectState, SceneObject

__all__ = ["render_frame", "render_strip", "render_gif", "world_poses", "StateAt",
           "DEFAULT_SIZE_PX", "MAX_TRAIL_POINTS"]

StateAt = Callable[[float], Mapping[str, ObjectState]]
DEFAULT_SIZE_PX = (800, 600)
MAX_TRAIL_POINTS = 60
# kind -> (marker, colour, points^2): people stand out, joints are small, furniture is square.
_STYLES = {"person": ("o", "tab:blue", 80.0), "joint": ("o", "tab:red", 12.0),
           "end": ("o", "tab:orange", 16.0), "room": ("", "dimgray", 0.0),
           "lamp": ("*", "gold", 120.0)}
_FURNITURE_STYLE = ("s", "tab:brown", 60.0)
_SKELETON = ("joint", "end")


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
    bounds: np.ndarray | None = None  # (2, 3) fixed limits, plot axes; None: fit each frame
    trail_cache: dict[float, dict[str, np.ndarray]] | None = None


def render_frame(objects: Sequence[SceneObject], state_at: StateAt, t: float, path: str | Path,
                 *, name: str = "", frame_rate: float = 10.0, trail_seconds: float = 2.0,
                 size_px: tuple[int, int] = DEFAULT_SIZE_PX, dpi: int = 100,
                 up: str | None = None) -> Path:
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

    Returns
    -------
    Path
        ``path``.
    """
    view = _view(objects, state_at, name, frame_rate, trail_seconds, size_px, dpi, up)
    return _save_png(_draw(view, t), path)


def render_strip(objects: Sequence[SceneObject], state_at: StateAt, t_from: float, t_to: float,
                 path: str | Path, *, frames: int = 6, name: str = "", frame_rate: float = 10.0,
                 trail_seconds: float = 2.0, size_px: tuple[int, int] = (400, 300),
                 dpi: int = 100, up: str | None = None) -> Path:
    """``frames`` moments evenly from ``t_from`` to ``t_to``, side by side in one PNG.

    Each panel is ``size_px``; the strip is ``frames * width`` by ``height``.
    All panels share one set of axis limits so motion reads across them.
    Other parameters as ``render_frame``.
    """
    view = _view(objects, state_at, name, frame_rate, trail_seconds, size_px, dpi, up)
    times = _moments(t_from, t_to, frames)
    view.bounds = _bounds(view, times)
    return _save_png(np.concatenate([_draw(view, t) for t in times], axis=1), path)


def render_gif(objects: Sequence[SceneObject], state_at: StateAt, t_from: float, t_to: float,
               path: str | Path, *, fps: float = 5.0, frames: int | None = None, name: str = "",
               frame_rate: float = 10.0, trail_seconds: float = 2.0,
               size_px: tuple[int, int] = (480, 360), dpi: int = 100,
               up: str | None = None) -> Path:
    """An animated GIF from ``t_from`` to ``t_to``, looping, shown at ``fps`` frames per second.

    ``frames`` moments evenly spaced (both ends included); by default
    ``round((t_to - t_from) * fps) + 1``, which plays in real time. Other
    parameters as ``render_frame``.
    """
    if not fps > 0:
        raise InvalidValueError("fps must be > 0", field="fps")
    view = _view(objects, state_at, name, frame_rate, trail_seconds, size_px, dpi, up)
    count = int(round((t_to - t_from) * fps)) + 1 if frames is None else frames
    times = _moments(t_from, t_to, count)
    view.bounds = _bounds(view, times)
    image = _pillow()
    pictures = [image.fromarray(_draw(view, t)).convert("RGB") for t in times]
    pictures[0].save(path, save_all=True, append_images=pictures[1:], loop=0,
                     duration=int(round(1000 / fps)))
    return Path(path)


def world_poses(objects: Sequence[SceneObject],
                states: Mapping[str, ObjectState]) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """World position and rotation of every present object, composing parent-relative poses.

    A child's world position is ``parent_position + R(parent_rotation) @ position``
    and its rotation ``parent_rotation * rotation`` (a parent without rotation
    only translates). An object whose parent is absent is left out.
    """
    parents = {obj.id: obj.parent for obj in objects}
    world: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}

    def place(object_id: str, depth: int) -> tuple[np.ndarray, np.ndarray | None] | None:
        if object_id in world or object_id not in states or depth > len(parents):
            return world.get(object_id)
        state, parent = states[object_id], parents.get(object_id)
        pose = (np.asarray(state.position, dtype=float), state.rotation)
        if parent is not None:
            base = place(parent, depth + 1)
            if base is None:
                return None
            pose = _compose(base, pose)
        world[object_id] = pose
        return pose

    for object_id in states:
        place(object_id, 0)
    return world


def _compose(base: tuple[np.ndarray, np.ndarray | None],
             local: tuple[np.ndarray, np.ndarray | None]) -> tuple[np.ndarray, np.ndarray | None]:
    (at, turn), (offset, own) = base, local
    if turn is None:
        return at + offset, own
    w, x, y, z = np.asarray(turn, dtype=float)
    matrix = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                       [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                       [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])
    if own is None:
        return at + matrix @ offset, turn
    a, b = np.asarray(turn, dtype=float), np.asarray(own, dtype=float)
    product = [a[0] * b[0] - a[1:] @ b[1:], *(a[0] * b[1:] + b[0] * a[1:] + np.cross(a[1:], b[1:]))]
    return at + matrix @ offset, np.array(product)


def _view(objects: Sequence[SceneObject], state_at: StateAt, name: str, frame_rate: float,
          trail_seconds: float, size_px: tuple[int, int], dpi: int, up: str | None) -> _View:
    if up is None:
        up = "y" if any(obj.kind == "joint" for obj in objects) else "z"
    if up not in ("y", "z") or not frame_rate > 0 or trail_seconds < 0:
        raise InvalidValueError("up must be 'y' or 'z', frame_rate > 0, trail_seconds >= 0",
                                field="up")
    if len(size_px) != 2 or min(size_px) < 16 or dpi < 10:
        raise InvalidValueError(f"size_px {size_px} must be two sizes >= 16 pixels, dpi >= 10",
                                field="size_px")
    return _View(objects, state_at, name, frame_rate, trail_seconds, up,
                 (int(size_px[0]), int(size_px[1])), int(dpi))


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
    frames = np.unique(np.linspace(frames[0], frames[-1], min(len(frames), MAX_TRAIL_POINTS)).round())
    tracked = {obj.id for obj in view.objects if obj.parent is None or obj.kind == "end"}
    trails: dict[str, list[np.ndarray]] = {}
    for f in frames:
        for key, at in _positions(view, f / view.frame_rate).items():
            if key in tracked:
                trails.setdefault(key, []).append(at)
    return {key: np.array(points) for key, points in trails.items() if len(points) > 1}


def _bounds(view: _View, times: Sequence[float]) -> np.ndarray:
    """Axis limits that hold every position at ``times`` and in their trails."""
    return _fit(np.concatenate([_extent(view, _poses(view, t), _trails(view, t)) for t in times]))


def _extent(view: _View, poses: dict[str, tuple[np.ndarray, np.ndarray | None]],
            trails: dict[str, np.ndarray]) -> np.ndarray:
    """The plot points a picture must hold: objects, trails and the room's walls."""
    points = [_to_plot(view, np.array([pose[0] for pose in poses.values()]).reshape(-1, 3))]
    points += [_footprint(view, obj, *poses[obj.id]) for obj in view.objects
               if obj.kind == "room" and obj.id in poses]
    return np.concatenate(points + list(trails.values()))


def _fit(points: np.ndarray) -> np.ndarray:
    """Limits around ``points``, at least 1 m wide, and from the floor to 2 m up at least."""
    if len(points) == 0:
        return np.array([[-1.0, -1.0, 0.0], [1.0, 1.0, 2.0]])
    low, high = points.min(axis=0), points.max(axis=0)
    middle, half = (low + high) / 2, np.maximum((high - low) / 2, 0.5) * 1.1
    bounds = np.stack([middle - half, middle + half])
    bounds[0, 2] = min(low[2], 0.0)
    bounds[1, 2] = max(high[2], bounds[0, 2] + 2.0)
    return bounds


def _draw(view: _View, t: float) -> np.ndarray:
    """The picture at ``t`` as an ``(height, width, 4)`` uint8 RGBA array."""
    figure_class, canvas_class = _matplotlib()
    width, height = view.size_px
    # +0.5 px: Agg truncates width / dpi * dpi to int, and 799.9999 would lose a column.
    figure = figure_class(figsize=((width + 0.5) / view.dpi, (height + 0.5) / view.dpi),
                          dpi=view.dpi)
    canvas = canvas_class(figure)
    figure.subplots_adjust(left=0, right=1, bottom=0, top=0.92)
    axes = figure.add_subplot(projection="3d")
    states = view.state_at(max(t, 0.0))
    poses, trails = _poses(view, t), _trails(view, t)
    positions = {key: _to_plot(view, pose[0])[0] for key, pose in poses.items()}
    _draw_objects(axes, view, poses, positions, states)
    for points in trails.values():
        axes.plot(points[:, 0], points[:, 1], points[:, 2], color="tab:gray", lw=0.8, alpha=0.6)
    bounds = view.bounds if view.bounds is not None else _fit(_extent(view, poses, trails))
    axes.set_xlim(*bounds[:, 0])
    axes.set_ylim(*bounds[:, 1])
    axes.set_zlim(*bounds[:, 2])
    axes.set_box_aspect(tuple(bounds[1] - bounds[0]), zoom=1.1)
    axes.tick_params(labelsize=7)
    figure.suptitle(f"{view.name}  t = {t:.2f} s".strip(), fontsize=9)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())[:height, :width]
    return np.pad(pixels, ((0, height - pixels.shape[0]), (0, width - pixels.shape[1]), (0, 0)),
                  constant_values=255)


def _draw_objects(axes: Any, view: _View, poses: dict[str, tuple[np.ndarray, np.ndarray | None]],
                  positions: dict[str, np.ndarray], states: Mapping[str, ObjectState]) -> None:
    """Footprints of furniture, people as standing sticks, joints linked to their parents."""
    for obj in view.objects:
        at = positions.get(obj.id)
        if at is None:
            continue
        marker, colour, area = _STYLES.get(obj.kind, _FURNITURE_STYLE)
        attributes = states[obj.id].attributes if obj.id in states else obj.attributes
        if attributes.get("light") == "off":
            colour = "lightgray"
        if obj.kind not in _SKELETON and obj.kind != "person" and min(obj.size[:2]) > 0:
            ring = _footprint(view, obj, *poses[obj.id])
            axes.plot(ring[:, 0], ring[:, 1], ring[:, 2], color=colour, lw=0.8)
        if obj.kind == "person" and obj.size[2] > 0 and view.up == "z":
            axes.plot([at[0]] * 2, [at[1]] * 2, [at[2], at[2] + obj.size[2]], color=colour, lw=2)
            at = at + [0.0, 0.0, obj.size[2]]
        if marker:
            axes.scatter(*at, marker=marker, color=colour, s=area, depthshade=False)
        if isinstance(attributes.get("name"), str):
            axes.text(*at, f" {attributes['name']}", fontsize=7)
        if obj.kind in _SKELETON and obj.parent in positions:
            line = np.stack([positions[obj.parent], positions[obj.id]])
            axes.plot(line[:, 0], line[:, 1], line[:, 2], color="tab:red", lw=1.5)


def _footprint(view: _View, obj: SceneObject, at: np.ndarray,
               turn: np.ndarray | None) -> np.ndarray:
    """The outline of the object's x-y extent around its position, turned with it."""
    half_x, half_y = obj.size[0] / 2, obj.size[1] / 2
    corners = np.array([[-half_x, -half_y, 0], [half_x, -half_y, 0], [half_x, half_y, 0],
                        [-half_x, half_y, 0], [-half_x, -half_y, 0]])
    placed = np.array([_compose((at, turn), (corner, None))[0] for corner in corners])
    return _to_plot(view, placed)


def _save_png(pixels: np.ndarray, path: str | Path) -> Path:
    _pillow().fromarray(pixels).save(path, format="PNG")
    return Path(path)


def _matplotlib() -> tuple[Any, Any]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise CodecUnavailableError(f"pictures of scenes need matplotlib ({exc}); install it with "
                                    f"pip install 'ai-os-memory[scenes]'",
                                    missing="matplotlib") from None
    return Figure, FigureCanvasAgg


def _pillow() -> Any:
    _matplotlib()  # Pillow is a dependency of matplotlib: one install hint covers both
    from PIL import Image
    return Image
