"""Scene importers (UCY tracks, BVH motion capture) and the seeded scene generator."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from aios_memory.client.scenes import importers as scene_import
from aios_memory.client.scenes.importers import (
    check_generated,
    generate_scene,
    read_bvh,
    read_ucy,
    scene_hash,
)
from aios_memory.client.scenes.model import EVENT_TYPES, Scene
from aios_memory.schemas.errors import CorruptDataError, InvalidValueError

# Frames step by 10 (2.5 Hz). Agent 1: frames 100..150 with 120 missing (a short gap, filled).
# Agent 2: 110..130. Agent 3: 100, 110, then gone 120..170 (5 frames: a long gap), back at 180.
UCY = """\
100\t1\t1.0\t2.0
110\t1\t2.0\t2.0
130\t1\t4.0\t2.0
140\t1\t5.0\t2.0
150\t1\t6.0\t2.0
110 2 0.0 0.0
120 2 0.5 0.5
130 2 1.0 1.0

100 3 9.0 9.0
110 3 9.0 8.0
180 3 9.0 1.0
"""

# Hips (6 channels, Z X Y rotation order), Spine (Z Y X), Head with an End Site.
BVH = """\
HIERARCHY
ROOT Hips
{
  OFFSET 0.0 0.0 0.0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT Spine
  {
    OFFSET 0.0 0.5 0.0
    CHANNELS 3 Zrotation Yrotation Xrotation
    JOINT Head
    {
      OFFSET 0.0 0.3 0.1
      CHANNELS 3 Zrotation Yrotation Xrotation
      End Site
      {
        OFFSET 0.0 0.2 0.0
      }
    }
  }
}
MOTION
Frames: 5
Frame Time: 0.0333333
1.0 0.9 2.0   90.0 90.0 0.0    0.0 0.0 0.0      0.0 0.0 0.0
1.1 0.9 2.0   10.0 20.0 30.0   10.0 20.0 30.0   0.0 0.0 179.0
1.2 0.9 2.0   10.0 20.0 30.0   190.0 160.0 210.0  0.0 0.0 -179.0
1.3 0.9 2.0   -35.0 50.0 120.0  0.0 0.0 0.0      0.0 0.0 -170.0
1.4 0.9 2.0   0.0 0.0 0.0      0.0 0.0 0.0      0.0 0.0 0.0
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def elementary(axis: str, degrees: float) -> np.ndarray:
    """The rotation matrix about one axis, built independently of the importer."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return {
        "X": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "Y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "Z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


def matrix(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


# --- UCY ------------------------------------------------------------------------------------


def test_ucy_frames_map_to_indices_at_the_detected_step(tmp_path: Path) -> None:
    scene = read_ucy(write(tmp_path, "plaza.txt", UCY))
    assert (scene.name, scene.frame_rate, scene.n_frames) == ("plaza", 2.5, 9)  # 100..180 by 10
    assert scene.source == {
        "format": "ucy",
        "file": "plaza.txt",
        "first_frame": 100,
        "frame_step": 10,
    }
    assert [o.id for o in scene.objects] == ["person_1", "person_2", "person_3"]
    assert all(o.kind == "person" and o.size[2] > 1 for o in scene.objects)
    walker = scene.tracks["person_2"].positions
    assert walker.shape == (9, 3) and scene.tracks["person_2"].rotations is None
    np.testing.assert_array_equal(walker[1:4], [[0, 0, 0], [0.5, 0.5, 0], [1, 1, 0]])
    assert np.isnan(walker[0]).all() and np.isnan(walker[4:]).all()


def test_ucy_short_gap_is_interpolated_long_gap_despawns(tmp_path: Path) -> None:
    scene = read_ucy(write(tmp_path, "plaza.txt", UCY), max_gap=3)
    np.testing.assert_allclose(scene.tracks["person_1"].positions[2], [3.0, 2.0, 0.0])
    away = scene.tracks["person_3"].positions
    assert np.isnan(away[2:8]).all() and not np.isnan(away[[0, 1, 8]]).any()
    spans = [(e.frame, e.type) for e in scene.events if e.object_id == "person_3"]
    assert spans == [(0, "spawn"), (1, "despawn"), (8, "spawn"), (8, "despawn")]
    ones = [(e.frame, e.type) for e in scene.events if e.object_id == "person_1"]
    assert ones == [(0, "spawn"), (5, "despawn")]
    assert [e.frame for e in scene.events] == sorted(e.frame for e in scene.events)


def test_ucy_gap_longer_than_max_gap_is_not_filled(tmp_path: Path) -> None:
    scene = read_ucy(write(tmp_path, "plaza.txt", UCY), max_gap=0, frame_rate=5.0)
    assert scene.frame_rate == 5.0
    assert np.isnan(scene.tracks["person_1"].positions[2]).all()
    assert sum(e.type == "spawn" for e in scene.events if e.object_id == "person_1") == 2


@pytest.mark.parametrize(
    "line, why",
    [
        ("100 1 2.0", "4 finite"),
        ("100 1 x 2.0", "not a number"),
        ("105.5 1 2.0 2.0", "integers"),
        ("100 1 nan 2.0", "4 finite"),
        ("100 1 7.0 7.0", "twice"),
    ],
)
def test_ucy_malformed_line_is_refused_by_number(tmp_path: Path, line: str, why: str) -> None:
    path = write(tmp_path, "bad.txt", UCY.replace("130\t1\t4.0\t2.0", line))
    with pytest.raises(InvalidValueError, match=why) as caught:
        read_ucy(path)
    assert caught.value.detail["line"] == 3 and f"{path}:3" in str(caught.value)


def test_ucy_empty_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidValueError, match="no 'frame agent x y'"):
        read_ucy(write(tmp_path, "empty.txt", "# nothing\n\n"))


# --- BVH ------------------------------------------------------------------------------------


def test_bvh_skeleton_becomes_joint_and_end_objects(tmp_path: Path) -> None:
    scene = read_bvh(write(tmp_path, "walk.bvh", BVH))
    assert (scene.n_frames, scene.frame_rate, scene.events) == (5, 30.0, [])
    assert scene.source == {"format": "bvh", "file": "walk.bvh", "up": "y"}
    shape = [(o.id, o.kind, o.parent) for o in scene.objects]
    assert shape == [
        ("Hips", "joint", None),
        ("Spine", "joint", "Hips"),
        ("Head", "joint", "Spine"),
        ("Head_end", "end", "Head"),
    ]
    assert scene.objects[0].attributes["channels"][:3] == ["Xposition", "Yposition", "Zposition"]
    assert scene.objects[2].attributes["offset"] == [0.0, 0.3, 0.1]
    assert scene.tracks["Head_end"].rotations is None


def test_bvh_positions_are_offset_plus_position_channels(tmp_path: Path) -> None:
    scene = read_bvh(write(tmp_path, "walk.bvh", BVH), scale=2.0)
    np.testing.assert_allclose(scene.tracks["Hips"].positions[:, 0], [2.0, 2.2, 2.4, 2.6, 2.8])
    np.testing.assert_allclose(scene.tracks["Head"].positions, np.tile([0, 0.6, 0.2], (5, 1)))
    np.testing.assert_allclose(scene.tracks["Head_end"].positions[0], [0, 0.4, 0])


def test_bvh_known_quaternion_and_intrinsic_order(tmp_path: Path) -> None:
    scene = read_bvh(write(tmp_path, "walk.bvh", BVH))
    hips = scene.tracks["Hips"].rotations
    # Z 90 then X 90 (intrinsic): q_z(90) * q_x(90) = (1/2, 1/2, 1/2, 1/2).
    np.testing.assert_allclose(hips[0], [0.5, 0.5, 0.5, 0.5], atol=1e-12)
    expected = elementary("Z", -35) @ elementary("X", 50) @ elementary("Y", 120)
    np.testing.assert_allclose(matrix(hips[3]), expected, atol=1e-12)
    spine = scene.tracks["Spine"].rotations  # Z Y X order on this joint
    expected = elementary("Z", 10) @ elementary("Y", 20) @ elementary("X", 30)
    np.testing.assert_allclose(matrix(spine[1]), expected, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(hips, axis=1), 1.0)


def test_bvh_euler_flip_keeps_quaternion_sign_continuous(tmp_path: Path) -> None:
    scene = read_bvh(write(tmp_path, "walk.bvh", BVH))
    spine = scene.tracks["Spine"].rotations
    # (10, 20, 30) and (190, 160, 210) in Z Y X are one rotation: the same quaternion, same sign.
    np.testing.assert_allclose(spine[2], spine[1], atol=1e-12)
    head = scene.tracks["Head"].rotations
    # X 179 then X -179: a 2-degree turn, not a jump to the other sign.
    assert head[2] @ head[1] == pytest.approx(math.cos(math.radians(1)))
    for track in scene.tracks.values():
        if track.rotations is not None:
            assert (np.einsum("ij,ij->i", track.rotations[1:], track.rotations[:-1]) > 0).all()
    assert head[0][0] > 0


BAD_BVH = [
    ("OFFSET 0.0 0.5 0.0", "OFFSET 0.0 zero 0.0", 8, "not a number"),
    ("OFFSET 0.0 0.3 0.1", "OFFSET 0.0 0.3", 12, "3 numbers"),
    (
        "CHANNELS 3 Zrotation Yrotation Xrotation\n      End",
        "CHANNELS 2 Zrotation Yrotation Xrotation\n      End",
        13,
        "CHANNELS",
    ),
    (
        "CHANNELS 3 Zrotation Yrotation Xrotation\n    JOINT",
        "CHANNELS 3 Zrotation Yrotation Wrotation\n    JOINT",
        9,
        "CHANNELS",
    ),
    ("Frames: 5", "Frames: 6", 28, "Frames: 6 but 5"),
    ("Frame Time: 0.0333333", "Frame Time: 0", 22, "Frame Time > 0"),
    ("1.2 0.9 2.0   10.0", "1.2 0.9   10.0", 26, "values, the channels need 12"),
    ("        OFFSET 0.0 0.2 0.0\n      }\n", "        OFFSET 0.0 0.2 0.0\n", 20, "before the"),
    ("MOTION", "MOTIONS", 21, "unexpected"),
    ("HIERARCHY", "HIERARCHIES", 1, "starts with HIERARCHY"),
    ("JOINT Head", "JOINT Spine", 10, "used twice"),
]


@pytest.mark.parametrize("old, new, line, why", BAD_BVH)
def test_bvh_malformed_file_is_refused_naming_the_line(
    tmp_path: Path, old: str, new: str, line: int, why: str
) -> None:
    assert old in BVH
    path = write(tmp_path, "bad.bvh", BVH.replace(old, new, 1))
    with pytest.raises(InvalidValueError, match=why) as caught:
        read_bvh(path)
    assert caught.value.detail["line"] == line, str(caught.value)
    assert f"{path}:{line}:" in str(caught.value)


# --- the generator --------------------------------------------------------------------------


def test_generator_is_deterministic_for_a_seed() -> None:
    one, again, other = generate_scene(7), generate_scene(7), generate_scene(8)
    assert one.source["hash"] == again.source["hash"] == scene_hash(again)
    assert one.source["hash"] != other.source["hash"]
    assert one.events == again.events
    for object_id, track in one.tracks.items():
        np.testing.assert_array_equal(track.positions, again.tracks[object_id].positions)
    assert one.source == {
        "generator": "walkers",
        "version": 1,
        "seed": 7,
        "hash": scene_hash(one),
        "params": {"n_objects": 8, "seconds": 20.0, "frame_rate": 10.0},
    }


def test_generated_scene_is_a_valid_room_with_people_and_events() -> None:
    scene = generate_scene(3, n_objects=9, seconds=30.0, frame_rate=5.0)
    assert scene.n_frames == 151 and scene.frame_rate == 5.0
    kinds = [o.kind for o in scene.objects]
    assert kinds[0] == "room" and kinds.count("person") == 3 and len(kinds) == 10
    width, depth, _ = scene.objects[0].size
    for object_id, track in scene.tracks.items():
        assert track.positions.shape == (151, 3) and track.rotations is not None
        present = ~np.isnan(track.positions[:, 0])
        assert present[-1] and (track.positions[present, :2] >= 0).all()
        assert (track.positions[present, :2] <= [width, depth]).all(), object_id
        np.testing.assert_allclose(np.linalg.norm(track.rotations[present], axis=1), 1.0)
    types = {e.type for e in scene.events}
    assert {"spawn", "waypoint", "attribute"} <= types <= set(EVENT_TYPES)
    assert all(0 <= e.frame < scene.n_frames for e in scene.events)
    assert all(e.params["name"] and e.params["item"] for e in scene.events if e.type == "action")


def test_scene_hash_ignores_noise_below_a_nanometre_but_not_a_micrometre() -> None:
    scene = generate_scene(5)
    before = scene_hash(scene)
    track = scene.tracks["person_1"]
    track.positions[10, 0] += 1e-12
    assert scene_hash(scene) == before
    track.positions[10, 0] += 1e-6
    assert scene_hash(scene) != before


def test_check_generated_passes_then_detects_a_changed_hash() -> None:
    scene = generate_scene(11, n_objects=4, seconds=5.0)
    check_generated(scene)
    scene.source["hash"] = "0" * 64
    with pytest.raises(CorruptDataError, match="generator changed"):
        check_generated(scene)


def test_check_generated_detects_a_changed_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    scene = generate_scene(11, n_objects=4, seconds=5.0)
    original = scene_import._GENERATORS[("walkers", 1)]

    def nudged(*args: object) -> Scene:  # the same generator, one table moved by a centimetre
        made = original(*args)  # type: ignore[arg-type]
        made.tracks[made.objects[1].id].positions[:, 0] += 0.01
        return made

    monkeypatch.setitem(scene_import._GENERATORS, ("walkers", 1), nudged)
    with pytest.raises(CorruptDataError):
        check_generated(scene)


def test_unknown_generator_and_missing_source_are_refused() -> None:
    with pytest.raises(InvalidValueError, match="unknown generator"):
        generate_scene(1, generator="walkers", version=99)
    with pytest.raises(InvalidValueError, match="no generator source"):
        check_generated(Scene("x", 10.0, 1, [], {}, source={"format": "ucy"}))
