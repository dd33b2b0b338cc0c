"""Scene pictures: PNG frames of an exact size, strips, GIFs, and world poses of skeletons."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from aios_memory.client.scene_import import generate_scene
from aios_memory.client.scene_model import ObjectState, Scene, SceneObject, Track
from aios_memory.client.scene_render import (
    StateAt,
    render_frame,
    render_gif,
    render_strip,
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
                states[object_id] = ObjectState(track.positions[frame], turn,
                                                dict(attributes[object_id]))
        return states

    return state_at


def skeleton(n_frames: int = 20) -> Scene:
    """A Y-up arm: a root turning about y, an elbow, a hand (an end site)."""
    yaw = np.linspace(0, math.pi, n_frames)
    turning = np.stack([np.cos(yaw / 2), 0 * yaw, np.sin(yaw / 2), 0 * yaw], axis=1)
    still = np.tile([1.0, 0, 0, 0], (n_frames, 1))
    objects = [SceneObject("root", "joint"), SceneObject("elbow", "joint", "root"),
               SceneObject("hand", "end", "elbow")]
    tracks = {"root": Track("root", np.tile([0.0, 1.0, 0.0], (n_frames, 1)), turning),
              "elbow": Track("elbow", np.tile([0.3, 0.0, 0.0], (n_frames, 1)), still),
              "hand": Track("hand", np.tile([0.25, 0.0, 0.0], (n_frames, 1)))}
    return Scene("arm", 10.0, n_frames, objects, tracks, source={"up": "y"})


def pixels(path: Path) -> np.ndarray:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    return image.imread(path)


@pytest.mark.parametrize("size, dpi", [((800, 600), 100), ((333, 217), 96)])
def test_frame_is_a_png_of_exactly_the_requested_size(tmp_path: Path, size: tuple[int, int],
                                                      dpi: int) -> None:
    scene = generate_scene(2, seconds=6.0)
    out = render_frame(scene.objects, state_at_of(scene), 3.0, tmp_path / "frame.png",
                       name=scene.name, frame_rate=scene.frame_rate, size_px=size, dpi=dpi)
    assert out == tmp_path / "frame.png"
    assert pixels(out).shape[:2] == (size[1], size[0])


def test_frame_shows_the_moment_asked_for(tmp_path: Path) -> None:
    scene = generate_scene(4, seconds=10.0)
    draw = {"objects": scene.objects, "state_at": state_at_of(scene), "size_px": (320, 240),
            "frame_rate": scene.frame_rate, "trail_seconds": 0.0}
    early = pixels(render_frame(t=1.0, path=tmp_path / "a.png", **draw))  # type: ignore[arg-type]
    late = pixels(render_frame(t=8.0, path=tmp_path / "b.png", **draw))  # type: ignore[arg-type]
    again = pixels(render_frame(t=1.0, path=tmp_path / "c.png", **draw))  # type: ignore[arg-type]
    assert not np.array_equal(early, late)
    np.testing.assert_array_equal(early, again)


def test_skeleton_renders_y_up(tmp_path: Path) -> None:
    scene = skeleton()
    out = render_frame(scene.objects, state_at_of(scene), 1.5, tmp_path / "arm.png", name="arm",
                       frame_rate=10.0, size_px=(400, 300))
    assert pixels(out).shape[:2] == (300, 400)


def test_strip_is_frames_panels_wide(tmp_path: Path) -> None:
    scene = generate_scene(6, seconds=4.0)
    out = render_strip(scene.objects, state_at_of(scene), 0.0, 4.0, tmp_path / "strip.png",
                       frames=3, size_px=(200, 150), frame_rate=scene.frame_rate)
    assert pixels(out).shape[:2] == (150, 3 * 200)


def test_gif_has_one_frame_per_tick(tmp_path: Path) -> None:
    scene = skeleton()
    out = render_gif(scene.objects, state_at_of(scene), 0.0, 1.2, tmp_path / "arm.gif", fps=5,
                     size_px=(160, 120), frame_rate=10.0)
    with PIL.open(out) as gif:
        assert gif.format == "GIF" and gif.size == (160, 120)
        assert gif.n_frames == 7  # 0.0, 0.2, ..., 1.2
    out = render_gif(scene.objects, state_at_of(scene), 0.0, 1.2, tmp_path / "four.gif",
                     frames=4, size_px=(160, 120), frame_rate=10.0)
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


@pytest.mark.parametrize("bad", [{"size_px": (8, 8)}, {"up": "x"}, {"frame_rate": 0.0}])
def test_bad_picture_settings_are_refused(tmp_path: Path, bad: dict[str, object]) -> None:
    scene = skeleton()
    with pytest.raises(InvalidValueError):
        render_frame(scene.objects, state_at_of(scene), 0.0, tmp_path / "x.png",
                     **bad)  # type: ignore[arg-type]
    assert not (tmp_path / "x.png").exists()
