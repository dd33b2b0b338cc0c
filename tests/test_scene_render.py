"""Scene pictures: PNG frames of an exact size, strips, GIFs, and world poses of skeletons."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aios_memory.client.scenes import render as scene_render
from aios_memory.client.scenes.importers import generate_scene
from aios_memory.client.scenes.model import ObjectState, Scene, SceneObject, Track
from aios_memory.client.scenes.render import (
    StateAt,
    render_frame,
    render_gif,
    render_strip,
    scene_bounds,
    world_poses,
)
from aios_memory.schemas.errors import InvalidValueError

image = pytest.importorskip("matplotlib.image")
PIL = pytest.importorskip("PIL.Image")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def state_at_of(scene: Scene) -> StateAt:
    """The replay stand-in: every present object at frame floor(t * rate)."""
    attributes = {obj.id: obj.attributes for obj in scene.objects}

    def state_at(t: float) -> dict[str, ObjectState]:
        frame = min(max(math.floor(t * scene.frame_rate + 1e-9), 0), scene.n_frames - 1)
        states = {}
        for object_id, track in scene.tracks.items():
            if not np.isnan(track.positions[frame]).any():
                turn = None if track.rotations is None else track.rotations[frame]
                states[object_id] = ObjectState(
                    track.positions[frame], turn, dict(attributes[object_id])
                )
        return states

    return state_at


def skeleton(n_frames: int = 20) -> Scene:
    """A Y-up arm: a root turning about y, an elbow, a hand (an end site)."""
    yaw = np.linspace(0, math.pi, n_frames)
    turning = np.stack([np.cos(yaw / 2), 0 * yaw, np.sin(yaw / 2), 0 * yaw], axis=1)
    still = np.tile([1.0, 0, 0, 0], (n_frames, 1))
    objects = [
        SceneObject("root", "joint"),
        SceneObject("elbow", "joint", "root"),
        SceneObject("hand", "end", "elbow"),
    ]
    tracks = {
        "root": Track("root", np.tile([0.0, 1.0, 0.0], (n_frames, 1)), turning),
        "elbow": Track("elbow", np.tile([0.3, 0.0, 0.0], (n_frames, 1)), still),
        "hand": Track("hand", np.tile([0.25, 0.0, 0.0], (n_frames, 1))),
    }
    return Scene("arm", 10.0, n_frames, objects, tracks, source={"up": "y"})


def walker(n_frames: int = 30) -> Scene:
    """A Y-up figure walking 3 m along x and turning: hips 0.9 m up, a head 1.6 m, a foot."""
    along = np.linspace(0, 3, n_frames)
    hips = np.stack([along, np.full(n_frames, 0.9), np.zeros(n_frames)], axis=1)
    yaw = np.linspace(0, math.pi / 2, n_frames)
    turning = np.stack([np.cos(yaw / 2), 0 * yaw, np.sin(yaw / 2), 0 * yaw], axis=1)
    still = np.tile([1.0, 0, 0, 0], (n_frames, 1))
    objects = [
        SceneObject("hips", "joint"),
        SceneObject("neck", "joint", "hips"),
        SceneObject("head", "end", "neck"),
        SceneObject("foot", "end", "hips"),
    ]
    tracks = {
        "hips": Track("hips", hips, turning),
        "neck": Track("neck", np.tile([0.0, 0.5, 0.0], (n_frames, 1)), still),
        "head": Track("head", np.tile([0.0, 0.2, 0.0], (n_frames, 1))),
        "foot": Track("foot", np.tile([0.1, -0.9, 0.0], (n_frames, 1))),
    }
    return Scene("walker", 10.0, n_frames, objects, tracks, source={"up": "y"})


def plaza(n_frames: int = 26) -> Scene:
    """UCY-like: two people crossing a 12 m by 7 m ground plane (z = 0), 2.5 Hz, no rotations;
    the second one arrives at frame 5."""

    def walk(start: list[float], end: list[float]) -> np.ndarray:
        return np.linspace(start, end, n_frames)

    second = walk([10.0, 8.0, 0.0], [2.0, 7.0, 0.0])
    second[:5] = np.nan
    objects = [SceneObject(f"person_{k}", "person", size=(0.5, 0.5, 1.7)) for k in (1, 2)]
    tracks = {
        "person_1": Track("person_1", walk([0.0, 1.0, 0.0], [12.0, 2.0, 0.0])),
        "person_2": Track("person_2", second),
    }
    return Scene("plaza", 2.5, n_frames, objects, tracks, source={"format": "ucy"})


@pytest.fixture
def panels(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The axes of every picture drawn from here on: a frame, each panel of a strip or GIF."""
    drawn: list[Any] = []
    figure_of = scene_render._figure

    def recording(view: Any, t: float) -> Any:
        figure = figure_of(view, t)
        drawn.append(figure.axes[0])
        return figure

    monkeypatch.setattr(scene_render, "_figure", recording)
    return drawn


def limits(axes: Any) -> list[tuple[float, float]]:
    spans = [axes.get_xlim(), axes.get_ylim()]
    return spans + [axes.get_zlim()] if axes.name == "3d" else spans


def pixels(path: Path) -> np.ndarray:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    return image.imread(path)


@pytest.mark.parametrize("size, dpi", [((800, 600), 100), ((333, 217), 96), ((640, 480), 100)])
@pytest.mark.parametrize("make", [lambda: generate_scene(2, seconds=6.0), walker, plaza])
def test_frame_is_a_png_of_exactly_the_requested_size(
    tmp_path: Path, size: tuple[int, int], dpi: int, make: Any
) -> None:
    scene = make()  # flat (drawn from above) and 3D alike
    out = render_frame(
        scene.objects,
        state_at_of(scene),
        1.2,
        tmp_path / "frame.png",
        name=scene.name,
        frame_rate=scene.frame_rate,
        size_px=size,
        dpi=dpi,
        bounds=scene_bounds(scene),
    )
    assert out == tmp_path / "frame.png"
    assert pixels(out).shape[:2] == (size[1], size[0])


def test_frame_shows_the_moment_asked_for(tmp_path: Path) -> None:
    scene = generate_scene(4, seconds=10.0)
    draw = {
        "objects": scene.objects,
        "state_at": state_at_of(scene),
        "size_px": (320, 240),
        "frame_rate": scene.frame_rate,
        "trail_seconds": 0.0,
    }
    early = pixels(render_frame(t=1.0, path=tmp_path / "a.png", **draw))  # type: ignore[arg-type]
    late = pixels(render_frame(t=8.0, path=tmp_path / "b.png", **draw))  # type: ignore[arg-type]
    again = pixels(render_frame(t=1.0, path=tmp_path / "c.png", **draw))  # type: ignore[arg-type]
    assert not np.array_equal(early, late)
    np.testing.assert_array_equal(early, again)


def test_skeleton_renders_y_up(tmp_path: Path) -> None:
    scene = skeleton()
    out = render_frame(
        scene.objects,
        state_at_of(scene),
        1.5,
        tmp_path / "arm.png",
        name="arm",
        frame_rate=10.0,
        size_px=(400, 300),
    )
    assert pixels(out).shape[:2] == (300, 400)


def test_strip_is_frames_panels_wide(tmp_path: Path) -> None:
    scene = generate_scene(6, seconds=4.0)
    out = render_strip(
        scene.objects,
        state_at_of(scene),
        0.0,
        4.0,
        tmp_path / "strip.png",
        frames=3,
        size_px=(200, 150),
        frame_rate=scene.frame_rate,
    )
    assert pixels(out).shape[:2] == (150, 3 * 200)


def test_gif_has_one_frame_per_tick(tmp_path: Path) -> None:
    scene = skeleton()
    out = render_gif(
        scene.objects,
        state_at_of(scene),
        0.0,
        1.2,
        tmp_path / "arm.gif",
        fps=5,
        size_px=(160, 120),
        frame_rate=10.0,
    )
    with PIL.open(out) as gif:
        assert gif.format == "GIF" and gif.size == (160, 120)
        assert gif.n_frames == 7  # 0.0, 0.2, ..., 1.2
    out = render_gif(
        scene.objects,
        state_at_of(scene),
        0.0,
        1.2,
        tmp_path / "four.gif",
        frames=4,
        size_px=(160, 120),
        frame_rate=10.0,
    )
    with PIL.open(out) as gif:
        assert gif.n_frames == 4


def test_world_poses_compose_parent_rotations() -> None:
    scene = skeleton(3)  # frame 2: the root turned 180 degrees about y
    world = world_poses(scene.objects, state_at_of(scene)(0.2))
    np.testing.assert_allclose(world["elbow"][0], [-0.3, 1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(world["hand"][0], [-0.55, 1.0, 0.0], atol=1e-12)
    assert world["hand"][1] is not None  # an end site takes its parent's orientation
    states = state_at_of(scene)(0.0)
    del states["elbow"]
    assert set(world_poses(scene.objects, states)) == {"root"}  # an orphan is not placed


def test_strip_panels_share_the_whole_episodes_limits(tmp_path: Path, panels: list[Any]) -> None:
    scene = plaza()
    bounds = scene_bounds(scene)
    render_strip(
        scene.objects,
        state_at_of(scene),
        0.0,
        2.0,
        tmp_path / "strip.png",
        frames=4,
        frame_rate=scene.frame_rate,
        size_px=(200, 150),
        bounds=bounds,
    )
    assert len(panels) == 4 and all(limits(axes) == limits(panels[0]) for axes in panels)
    (x_low, x_high), (y_low, y_high) = limits(panels[0])
    # Up to 2 s the first walker is still below x = 2; the limits hold the whole walk anyway.
    assert x_low < 0.0 and x_high > 12.0 and y_low < 1.0 and y_high > 8.0


def test_frames_drawn_apart_and_gif_frames_share_limits(tmp_path: Path, panels: list[Any]) -> None:
    scene = walker()
    draw = {
        "objects": scene.objects,
        "state_at": state_at_of(scene),
        "size_px": (160, 120),
        "frame_rate": scene.frame_rate,
        "bounds": scene_bounds(scene),
    }
    render_frame(t=0.0, path=tmp_path / "a.png", **draw)  # type: ignore[arg-type]
    render_frame(t=2.9, path=tmp_path / "b.png", **draw)  # type: ignore[arg-type]
    render_gif(
        t_from=0.0,
        t_to=2.9,
        path=tmp_path / "c.gif",
        frames=3,  # type: ignore[arg-type]
        **draw,
    )
    assert len(panels) == 5 and all(limits(axes) == limits(panels[0]) for axes in panels)
    # Without bounds, a strip's panels still share limits: those of what they show.
    del draw["bounds"]
    render_strip(
        t_from=0.0,
        t_to=2.9,
        path=tmp_path / "d.png",
        frames=3,  # type: ignore[arg-type]
        **draw,
    )
    assert all(limits(axes) == limits(panels[5]) for axes in panels[5:])


@pytest.mark.parametrize("make", [plaza, skeleton, lambda: generate_scene(3, seconds=5.0)])
def test_a_flat_scene_is_drawn_from_above_at_equal_aspect(
    tmp_path: Path, panels: list[Any], make: Any
) -> None:
    scene = make()  # z = 0 throughout; the arm turns about y, its y stays 1 m
    render_frame(
        scene.objects,
        state_at_of(scene),
        1.0,
        tmp_path / "flat.png",
        frame_rate=scene.frame_rate,
        size_px=(640, 480),
        bounds=scene_bounds(scene),
    )
    axes = panels[0]
    assert axes.name == "rectilinear" and axes.get_aspect() == 1.0
    (x_low, x_high), (y_low, y_high) = limits(axes)
    box = axes.get_window_extent()  # drawn: the box equal aspect left
    assert (x_high - x_low) / box.width == pytest.approx((y_high - y_low) / box.height, rel=1e-3)
    assert box.width > 0.8 * 640 and box.height > 0.75 * 480  # the plot fills its panel


def test_y_up_flat_scene_is_seen_from_above_y(tmp_path: Path, panels: list[Any]) -> None:
    scene = skeleton()  # plot x, y are world x, -z
    render_frame(
        scene.objects,
        state_at_of(scene),
        1.0,
        tmp_path / "arm.png",
        frame_rate=scene.frame_rate,
        bounds=scene_bounds(scene),
    )
    world = np.array(
        [
            pose[0]
            for f in range(scene.n_frames)
            for pose in world_poses(scene.objects, state_at_of(scene)(f / 10)).values()
        ]
    )
    (x_low, x_high), (y_low, y_high) = limits(panels[0])
    assert x_low < world[:, 0].min() and world[:, 0].max() < x_high
    assert y_low < -world[:, 2].max() and -world[:, 2].min() < y_high


def test_a_3d_scene_keeps_up_vertical_at_equal_aspect(tmp_path: Path, panels: list[Any]) -> None:
    scene = walker()
    render_frame(
        scene.objects,
        state_at_of(scene),
        1.0,
        tmp_path / "walker.png",
        frame_rate=scene.frame_rate,
        bounds=scene_bounds(scene),
    )
    axes = panels[0]
    assert axes.name == "3d"
    spans = np.array([high - low for low, high in limits(axes)])
    (x_low, x_high), _, (z_low, z_high) = limits(axes)
    assert x_low < 0.0 and x_high > 3.0  # the whole walk, not the moment drawn
    assert z_low < 0.0 and z_high > 1.6  # world y, from the foot to the head, is vertical
    box = np.asarray(axes._box_aspect)  # the box's sides (no public getter for 3D axes)
    np.testing.assert_allclose(box / np.linalg.norm(box), spans / np.linalg.norm(spans))


def test_scene_bounds_are_world_poses_over_every_frame() -> None:
    scene = walker()
    world = np.array(
        [
            pose[0]
            for f in range(scene.n_frames)
            for pose in world_poses(scene.objects, state_at_of(scene)(f / 10)).values()
        ]
    )
    np.testing.assert_allclose(
        scene_bounds(scene), [world.min(axis=0), world.max(axis=0)], atol=1e-12
    )
    # A 4 m by 3 m room turned 90 degrees about z: its walls count, not only its centre.
    quarter = [math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)]
    room = Scene(
        "room",
        10.0,
        2,
        [SceneObject("room", "room", size=(4.0, 3.0, 2.6))],
        {"room": Track("room", np.tile([2.0, 1.5, 0.0], (2, 1)), np.tile(quarter, (2, 1)))},
    )
    np.testing.assert_allclose(scene_bounds(room), [[0.5, -0.5, 0.0], [3.5, 3.5, 0.0]], atol=1e-12)
    assert scene_bounds(Scene("empty", 10.0, 0, [], {})) is None


@pytest.mark.parametrize(
    "bad",
    [
        {"size_px": (8, 8)},
        {"up": "x"},
        {"frame_rate": 0.0},
        {"bounds": [[0.0, 0.0, 0.0], [1.0, 1.0]]},
        {"bounds": [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]},
        {"bounds": [[0.0, 0.0, 0.0], [np.nan, 1.0, 1.0]]},
    ],
)
def test_bad_picture_settings_are_refused(tmp_path: Path, bad: dict[str, object]) -> None:
    scene = skeleton()
    with pytest.raises(InvalidValueError):
        render_frame(scene.objects, state_at_of(scene), 0.0, tmp_path / "x.png", **bad)  # type: ignore[arg-type]
    assert not (tmp_path / "x.png").exists()
