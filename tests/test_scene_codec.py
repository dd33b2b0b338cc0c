"""The scene codec: exact replay, bounded error, strict containers, sign-flip-proof rotations.

Random scenes (Hypothesis) mix pedestrians and rotating objects, absent stretches,
big jumps, random and smooth rotations, attribute events and every codec setting.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pyarrow as pa
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aios_memory.client.scenes import _container as container
from aios_memory.client.scenes import _knots as knots_codec
from aios_memory.client.scenes.codec import (
    EncodedScene,
    Replayer,
    decode_scene,
    default_keyframe_every,
    default_predictor,
    encode_scene,
    scene_hash,
)
from aios_memory.client.scenes.model import Event, Scene, SceneObject, Track
from aios_memory.schemas import (
    EPISODE_SCHEMA,
    SCENE_SCHEMAS,
    AiosMemoryError,
    CorruptDataError,
    InvalidValueError,
    LimitExceededError,
    SceneErrorBoundError,
    UnsupportedVersionError,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- scenes -------------------------------------------------------------------


def random_quaternions(rng: np.random.Generator, n: int) -> np.ndarray:
    q = rng.normal(size=(n, 4))
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def smooth_quaternions(rng: np.random.Generator, n: int, speed: float) -> np.ndarray:
    """A rotation turning about a slowly changing axis (``speed`` radians a frame)."""
    axes = np.cumsum(rng.normal(scale=0.05, size=(n, 3)), axis=0) + rng.normal(size=3)
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = np.cumsum(np.full(n, speed)) + rng.uniform(0, 2 * np.pi)
    return np.column_stack([np.cos(angles / 2), axes * np.sin(angles / 2)[:, None]])


def presence(rng: np.random.Generator, n: int, gaps: bool) -> np.ndarray:
    if not gaps:
        return np.ones(n, dtype=bool)
    present = np.zeros(n, dtype=bool)
    for _ in range(rng.integers(0, 4)):
        start = int(rng.integers(0, n))
        present[start : start + int(rng.integers(1, n + 1))] = ~present[start]
    return present


def track_for(
    rng: np.random.Generator, object_id: str, n: int, *, gaps: bool, jumps: bool, rotation: str
) -> Track:
    steps = rng.normal(scale=0.05, size=(n, 3)) + rng.normal(scale=0.02, size=3)
    if jumps:
        steps[rng.random(n) < 0.1] += rng.normal(scale=200.0, size=3)
    positions = np.cumsum(steps, axis=0) + rng.uniform(-50, 50, size=3)
    if rng.random() < 0.4:
        positions[:, 2] = 0.0  # ground-plane data
    rotations = None
    if rotation == "random":
        rotations = random_quaternions(rng, n)
    elif rotation == "smooth":
        rotations = smooth_quaternions(rng, n, float(rng.uniform(0, 0.3)))
        rotations[rng.random(n) < 0.3] *= -1  # q and -q: the same rotation
    present = presence(rng, n, gaps)
    positions[~present] = np.nan
    if rotations is not None:
        rotations[~present] = np.nan
    return Track(object_id, positions, rotations)


@st.composite
def scenes(draw: st.DrawFn) -> Scene:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(1, 40))
    objects, tracks, events = [], {}, []
    for i in range(draw(st.integers(1, 4))):
        obj = SceneObject(
            f"thing_{i}",
            draw(st.sampled_from(["person", "cup", "joint"])),
            parent=objects[0].id if objects and rng.random() < 0.5 else None,
            size=(0.5, 0.5, 1.7),
            attributes={"n": i, "tags": ["a", i]},
        )
        objects.append(obj)
        if rng.random() < 0.9:
            tracks[obj.id] = track_for(
                rng,
                obj.id,
                n,
                gaps=draw(st.booleans()),
                jumps=draw(st.booleans()),
                rotation=draw(st.sampled_from(["none", "random", "smooth"])),
            )
        for frame in rng.integers(0, n, size=rng.integers(0, 3)):
            events.append(
                Event(
                    int(frame),
                    "attribute",
                    obj.id,
                    {"lit": bool(rng.random() < 0.5), "level": int(frame)},
                )
            )
    events.append(Event(int(rng.integers(0, n)), "action", None, {"name": "wave"}))
    rate = draw(st.sampled_from([2.5, 10.0, 29.97, 120.0]))
    return Scene("random", rate, n, objects, tracks, events, {"generator": "test", "seed": 1})


codec_settings = st.fixed_dictionaries(
    {
        "step_m": st.sampled_from([0.001, 0.01, 0.05]),
        "step_deg": st.sampled_from([0.05, 0.5, 5.0]),
        "keyframe_every": st.one_of(st.none(), st.integers(1, 12)),
        "predictor": st.sampled_from(["delta", "velocity", "acceleration", "knots", None]),
        # Above the largest quantization bound (0.043 m, 4.3 degrees), or the steps' own.
        "max_error_m": st.sampled_from([None, 0.05, 0.5]),
        "max_error_deg": st.sampled_from([None, 5.0, 30.0]),
    }
)


def walker_scene(n: int = 200, seed: int = 7) -> Scene:
    """Three pedestrians on the ground plane, arriving and leaving, UCY style."""
    rng = np.random.default_rng(seed)
    objects, tracks, events = [], {}, []
    for i in range(3):
        obj = SceneObject(f"person_{i}", "person", size=(0.5, 0.5, 1.7), attributes={"agent": i})
        positions = np.full((n, 3), np.nan)
        start, end = n // 20 * i, n - n // 10 * i
        velocity = rng.normal(scale=0.5, size=2)
        xy = np.cumsum(
            np.tile(velocity, (end - start, 1)) * 0.4
            + rng.normal(scale=0.01, size=(end - start, 2)),
            axis=0,
        )
        positions[start:end, :2], positions[start:end, 2] = xy, 0.0
        objects.append(obj)
        tracks[obj.id] = Track(obj.id, positions)
        events += [Event(start, "spawn", obj.id), Event(end - 1, "despawn", obj.id)]
    return Scene("walkers", 2.5, n, objects, tracks, sorted(events, key=lambda e: e.frame))


# --- helpers ------------------------------------------------------------------


def frame_of(t: float, rate: float, n: int) -> int:
    return min(max(math.floor(t * rate + 1e-9), 0), n - 1)


def attributes_at(scene: Scene, object_id: str, frame: int) -> dict:
    [obj] = [o for o in scene.objects if o.id == object_id]
    current = dict(obj.attributes)
    for event in scene.events:
        if event.type == "attribute" and event.object_id == object_id and event.frame <= frame:
            current.update(event.params)
    return current


def rotation_angles_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    dots = np.clip(np.abs((a * b).sum(axis=1)), 0.0, 1.0)
    return np.degrees(2 * np.arccos(dots))


# --- seek equals sequential decode ------------------------------------------------


@SETTINGS
@given(
    scene=scenes(),
    options=codec_settings,
    cache=st.integers(0, 2),
    times=st.lists(st.floats(-1.0, 20.0, allow_nan=False), max_size=8),
    frames=st.lists(st.integers(0, 39), max_size=4),
)
def test_seek_equals_sequential_decode(
    scene: Scene, options: dict, cache: int, times: list[float], frames: list[int]
) -> None:
    encoded = encode_scene(scene, **options)
    decoded = decode_scene(encoded)
    replayer = Replayer(EncodedScene.from_bytes(encoded.to_bytes()), cache_segments=cache)
    # Times exactly on a frame (f / rate) must land on that frame.
    moments = times + [f / scene.frame_rate for f in frames if f < scene.n_frames]
    for t in moments:
        frame = frame_of(t, scene.frame_rate, scene.n_frames)
        state = replayer.state_at(t)
        present = {k for k, tr in decoded.tracks.items() if np.isfinite(tr.positions[frame, 0])}
        assert set(state) == present
        for object_id, got in state.items():
            track = decoded.tracks[object_id]
            assert np.array_equal(got.position, track.positions[frame])
            if track.rotations is None:
                assert got.rotation is None
            else:
                assert np.array_equal(got.rotation, track.rotations[frame])
            assert got.attributes == attributes_at(decoded, object_id, frame)
    for object_id, track in decoded.tracks.items():
        first, last = sorted(random.Random(len(moments)).choices(range(scene.n_frames), k=2))
        assert np.array_equal(
            replayer.positions(object_id, first, last),
            track.positions[first : last + 1],
            equal_nan=True,
        )


# --- the error bound ----------------------------------------------------------------


@SETTINGS
@given(scene=scenes(), options=codec_settings)
def test_measured_error_never_exceeds_the_declared_bound(scene: Scene, options: dict) -> None:
    encoded = encode_scene(scene, **options)
    decoded = decode_scene(encoded)
    episode = encoded.episode
    worst_m, worst_deg = 0.0, 0.0
    for object_id, track in scene.tracks.items():
        present = np.isfinite(track.positions[:, 0])
        got = decoded.tracks[object_id]
        assert np.array_equal(np.isfinite(got.positions[:, 0]), present)
        errors = np.linalg.norm(track.positions[present] - got.positions[present], axis=1)
        worst_m = max(worst_m, float(errors.max(initial=0.0)))
        if track.rotations is not None:
            angles = rotation_angles_deg(track.rotations[present], got.rotations[present])
            worst_deg = max(worst_deg, float(angles.max(initial=0.0)))
    # arccos loses precision near 0: a looser slack for the independent check.
    assert worst_m <= episode["declared_max_error_m"] * (1 + 1e-9) + 1e-9
    assert worst_deg <= episode["declared_max_error_deg"] + 1e-5
    assert episode["measured_max_error_m"] == pytest.approx(worst_m, rel=1e-6, abs=1e-12)
    assert episode["measured_max_error_deg"] == pytest.approx(worst_deg, abs=1e-5)
    assert episode["measured_mean_error_m"] <= episode["measured_max_error_m"]


def test_the_default_bound_counts_only_the_axes_used() -> None:
    encoded = encode_scene(walker_scene())
    assert encoded.position_axes == 2
    assert encoded.declared_max_error_m == pytest.approx(math.sqrt(2) * 0.005)
    assert encoded.measured_max_error_m <= encoded.declared_max_error_m
    assert encoded.declared_max_error_deg == pytest.approx(math.sqrt(3) / 2 * 0.05)


@pytest.mark.parametrize("bound", [{"max_error_m": 0.001}, {"max_error_deg": 0.001}])
def test_the_encoder_refuses_a_bound_it_cannot_keep(bound: dict) -> None:
    rng = np.random.default_rng(3)
    scene = Scene(
        "tight",
        30.0,
        50,
        [SceneObject("cup", "cup")],
        {"cup": Track("cup", rng.uniform(-1, 1, (50, 3)), random_quaternions(rng, 50))},
    )
    with pytest.raises(SceneErrorBoundError) as caught:
        encode_scene(scene, **bound)
    assert caught.value.code == "SCENE_ERROR_BOUND"
    assert caught.value.detail["measured"] > caught.value.detail["declared"]
    encode_scene(scene, max_error_m=0.01, max_error_deg=0.05)  # a bound it can keep


# --- rotations ------------------------------------------------------------------------


def euler_xyz_to_quaternion(angles: np.ndarray) -> np.ndarray:
    """Intrinsic x-y-z Euler angles (degrees, (n, 3)) to quaternions (w, x, y, z)."""
    half = np.radians(angles) / 2
    cx, cy, cz = np.cos(half).T
    sx, sy, sz = np.sin(half).T
    return np.column_stack(
        [
            cx * cy * cz - sx * sy * sz,
            sx * cy * cz + cx * sy * sz,
            cx * sy * cz - sx * cy * sz,
            cx * cy * sz + sx * sy * cz,
        ]
    )


def one_joint(rotations: np.ndarray) -> Scene:
    n = len(rotations)
    return Scene(
        "joint",
        120.0,
        n,
        [SceneObject("elbow", "joint")],
        {"elbow": Track("elbow", np.zeros((n, 3)), rotations)},
    )


def multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Quaternion products ``a * b`` row by row."""
    aw, ax, ay, az = np.moveaxis(np.broadcast_to(a, b.shape), -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        axis=-1,
    )


@pytest.mark.parametrize("turned_deg", [0.0, 180.0])
def test_sign_flips_and_euler_flips_do_not_blow_up_the_stream(turned_deg: float) -> None:
    """Around the identity and around a half turn (where the sign of w says nothing)."""
    rng = np.random.default_rng(11)
    n = 600
    t = np.arange(n) / 120.0
    euler = np.column_stack([30 * np.sin(t), 20 * np.sin(1.3 * t), 40 * np.cos(0.7 * t)])
    half = math.radians(turned_deg) / 2
    turn = np.array([math.cos(half), 0.0, 0.0, math.sin(half)])
    smooth = multiply(turn, euler_xyz_to_quaternion(euler))
    flipped_signs = smooth * np.where(rng.random(n) < 0.2, -1.0, 1.0)[:, None]
    # The same rotations written as the other Euler triple on single frames, as mocap does.
    other = euler.copy()
    flips = rng.random(n) < 0.05
    other[flips] = np.column_stack(
        [euler[flips, 0] + 180, 180 - euler[flips, 1], euler[flips, 2] + 180]
    )
    euler_flipped = multiply(turn, euler_xyz_to_quaternion(other))
    assert np.allclose(np.abs((euler_flipped * smooth).sum(axis=1)), 1.0)  # same rotations
    assert (np.abs(euler_flipped - smooth).max(axis=1) > 0.5).sum() > 10  # different numbers
    sizes = {
        name: encode_scene(one_joint(q)).byte_counts()["motion"]
        for name, q in [("smooth", smooth), ("signs", flipped_signs), ("euler", euler_flipped)]
    }
    assert sizes["signs"] <= sizes["smooth"] * 1.05 + 16
    assert sizes["euler"] <= sizes["smooth"] * 1.05 + 16


def test_rotations_near_180_degrees_stay_small() -> None:
    # A slow turn through 180 degrees and beyond, hovering at 180: no blow-up, error bounded.
    angles = np.concatenate([np.linspace(0, 3.2, 300), 3.14159 + 0.01 * np.sin(np.arange(300))])
    q = np.column_stack([np.cos(angles / 2), np.zeros(600), np.sin(angles / 2), np.zeros(600)])
    encoded = encode_scene(one_joint(q))
    assert encoded.measured_max_error_deg <= encoded.declared_max_error_deg
    assert encoded.byte_counts()["motion"] < 2000


# --- events and presence ----------------------------------------------------------------


def test_presence_events_are_stored_once() -> None:
    scene = walker_scene()
    encoded = encode_scene(scene)
    assert encoded.tables["events"].num_rows == 0  # implied by presence
    assert encoded.presence_events == "closed"
    decoded = decode_scene(encoded)
    facts = [(e.frame, e.type, e.object_id, e.params) for e in decoded.events]
    assert sorted(facts) == sorted((e.frame, e.type, e.object_id, e.params) for e in scene.events)
    # A spawn that does not match presence keeps every event stored as given.
    scene.events.append(Event(5, "spawn", "person_0", {}))
    encoded = encode_scene(scene)
    assert encoded.presence_events == "none"
    assert encoded.tables["events"].num_rows == len(scene.events)
    assert len(decode_scene(encoded).events) == len(scene.events)


# --- containers -----------------------------------------------------------------------


def test_container_round_trip_and_byte_counts() -> None:
    encoded = encode_scene(walker_scene())
    blob = encoded.to_bytes()
    again = EncodedScene.from_bytes(blob)
    for name, table in encoded.tables.items():
        assert again.tables[name].equals(table)
        assert again.tables[name].schema.metadata[b"aios_memory.version"] == b"1"
    counts = encoded.byte_counts()
    assert counts["total"] == len(blob)
    assert sum(counts[name] for name in SCENE_SCHEMAS) < len(blob)
    assert encode_scene(walker_scene()).to_bytes() == blob  # deterministic
    assert again.scene_hash == scene_hash(walker_scene())
    decoded = decode_scene(again)
    assert decoded.events == decode_scene(encoded).events


def test_cut_or_flipped_containers_are_corrupt_data() -> None:
    blob = encode_scene(walker_scene()).to_bytes()
    rng = random.Random(5)
    cuts = sorted(set(rng.sample(range(len(blob)), 60)) | {0, 1, 4, 5, 26, len(blob) - 1})
    for cut in cuts:
        with pytest.raises(CorruptDataError):
            EncodedScene.from_bytes(blob[:cut])
    for _ in range(150):
        damaged = bytearray(blob)
        at = rng.choice([i for i in range(len(blob)) if i != 4])
        damaged[at] ^= 1 << rng.randrange(8)
        with pytest.raises(CorruptDataError):
            EncodedScene.from_bytes(bytes(damaged))
    with pytest.raises(CorruptDataError):
        EncodedScene.from_bytes(blob + b"\0")
    newer = bytearray(blob)
    newer[4] = 2
    with pytest.raises(UnsupportedVersionError):
        EncodedScene.from_bytes(bytes(newer))


# --- error-bounded adaptive keyframes (the ``knots`` predictor) ----------------------


def test_knot_lines_round_half_up_exactly() -> None:
    values = np.array([[0, 3], [10, -10]])
    line = knots_codec.interpolate(np.array([0, 4]), values, 5)
    # 0.75 steps a frame: 0, 0.75, 1.5, 2.25, 3; -5 a frame from 10.
    assert line.tolist() == [[0, 1, 2, 2, 3], [10, 5, 0, -5, -10]]
    assert knots_codec.interpolate(np.array([0]), values[:, :1], 3).tolist() == [[0] * 3, [10] * 3]


def test_a_straight_walk_needs_two_knots_and_a_turn_three() -> None:
    frames = np.arange(50, dtype=float)
    walk = np.stack([frames * 0.1, frames * 0.05, np.zeros(50)], axis=1)
    turn = walk.copy()
    turn[25:, 1] = turn[24, 1] - (frames[25:] - 24) * 0.05  # back the other way
    error_of = lambda rows, ints: np.linalg.norm(rows - ints * 0.01, axis=1)  # noqa: E731
    for path, expected in ((walk, [0, 49]), (turn, [0, 24, 49])):
        ints = np.rint(path / 0.01).astype(np.int64)
        assert knots_codec.choose_knots(path, ints, error_of, 0.02).tolist() == expected


def test_knots_keep_a_coarse_bound_in_fewer_bytes_than_every_frame() -> None:
    scene = walker_scene(n=400)
    dense = encode_scene(scene, step_m=0.002, max_error_m=0.05)
    sparse = encode_scene(scene, step_m=0.002, max_error_m=0.05, predictor="knots")
    assert sparse.measured_max_error_m <= 0.05
    assert dense.measured_max_error_m <= sqrt_2_half_step(0.002)
    assert sparse.byte_counts()["motion"] < dense.byte_counts()["motion"] / 2
    assert sparse.tables["motion"].column("encoding").unique().to_pylist() == ["knots-zstd"]


def sqrt_2_half_step(step: float) -> float:
    return math.sqrt(2) * step / 2 * (1 + 1e-9)


def test_a_knot_blob_that_does_not_add_up_is_corrupt() -> None:
    firsts, lengths = np.zeros((3, 1), dtype=np.int64), np.array([5])
    good = knots_codec.pack([(np.array([0, 4]), np.array([[0, 4], [0, 0], [0, 1]]))])
    assert knots_codec.unpack(good, firsts, lengths, 5)[0, 0].tolist() == [0, 1, 2, 3, 4]
    for sequences in (
        [(np.array([0, 3]), np.zeros((3, 2), np.int64))],  # short of the end
        [(np.array([0, 4]), np.zeros((3, 2), np.int64))] * 2,
    ):  # one too many
        with pytest.raises(CorruptDataError):
            knots_codec.unpack(knots_codec.pack(sequences), firsts, lengths, 5)
    for blob in (good[:-3], b"", zstandard.ZstdCompressor().compress(b"\x01\x00")):
        with pytest.raises(CorruptDataError):
            knots_codec.unpack(blob, firsts, lengths, 5)


def reseal(tables: dict[str, bytes]) -> bytes:
    return container.pack_container(tables)


@pytest.mark.parametrize("predictor", ["velocity", "knots"])
def test_damage_behind_a_valid_checksum_never_crashes(predictor: str) -> None:
    """Mutated tables inside a correctly checksummed container: refused with our errors,
    or read (a harmless change, such as a measured error), never another exception."""
    encoded = encode_scene(walker_scene(n=60), predictor=predictor, max_error_m=0.05)
    raw = {
        name: zstandard.ZstdDecompressor().decompress(body)
        for name, body in container.table_bodies(encoded.tables).items()
    }
    compress = zstandard.ZstdCompressor(level=1).compress
    rng = random.Random(9)
    outcomes = {"refused": 0, "read": 0}
    for _ in range(300):
        name = rng.choice(list(raw))
        message = bytearray(raw[name])
        for _ in range(rng.randint(1, 3)):
            message[rng.randrange(len(message))] = rng.choice(
                [0, 0xFF, 0x7F, 0x80, rng.randrange(256)]
            )
        bodies = {n: compress(bytes(message) if n == name else raw[n]) for n in raw}
        try:
            scene = EncodedScene.from_bytes(reseal(bodies))
            decode_scene(scene)
            Replayer(scene, cache_segments=0).state_at(1.0)
            outcomes["read"] += 1
        except AiosMemoryError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 100


def test_a_container_that_expands_too_far_is_refused() -> None:
    blob = encode_scene(walker_scene()).to_bytes()
    with pytest.raises(LimitExceededError):
        EncodedScene.from_bytes(blob, max_bytes=100)


def test_tables_with_another_schema_are_refused() -> None:
    tables = dict(encode_scene(walker_scene()).tables)
    tables["episode"] = tables["episode"].replace_schema_metadata({})
    with pytest.raises(CorruptDataError):
        EncodedScene(tables)
    del tables["episode"]
    with pytest.raises(CorruptDataError):
        EncodedScene(tables)


# --- settings and inputs ---------------------------------------------------------------


def test_default_keyframes_and_schema_metadata() -> None:
    assert default_keyframe_every(120.0) == 256
    assert default_keyframe_every(250.0) == 500
    assert default_predictor(120.0) == "acceleration" and default_predictor(2.5) == "velocity"
    assert encode_scene(walker_scene(n=20)).predictor == "velocity"
    assert EPISODE_SCHEMA.metadata[b"aios_memory.schema"] == b"scene-episode"
    assert all(s.metadata[b"aios_memory.version"] == b"1" for s in SCENE_SCHEMAS.values())


def bad_scenes() -> list[tuple[dict, Scene]]:
    ok = walker_scene(n=20)
    half_nan = walker_scene(n=20)
    half_nan.tracks["person_0"].positions[3, 0] = np.nan
    half_nan.tracks["person_0"].positions[3, 1] = 1.0
    orphan = walker_scene(n=20)
    orphan.objects[1].parent = "nobody"
    stranger = walker_scene(n=20)
    stranger.events.append(Event(2, "action", "nobody", {}))
    unknown_type = walker_scene(n=20)
    unknown_type.events.append(Event(2, "teleport", None, {}))
    far = walker_scene(n=20)
    far.tracks["person_0"].positions[0] = [1e9, 0, 0]
    late = walker_scene(n=20)
    late.events.append(Event(20, "action", None, {}))
    return [
        ({"step_m": 0.0}, ok),
        ({"step_m": 1e4}, ok),
        ({"step_deg": -1.0}, ok),
        ({"step_deg": 11.0}, ok),
        ({"predictor": "guess"}, ok),
        ({}, late),
        ({"keyframe_every": 0}, ok),
        ({"max_error_m": float("nan")}, ok),
        ({}, half_nan),
        ({}, orphan),
        ({}, stranger),
        ({}, unknown_type),
        ({}, far),
    ]


@pytest.mark.parametrize("options,scene", bad_scenes())
def test_bad_settings_and_scenes_are_invalid_values(options: dict, scene: Scene) -> None:
    with pytest.raises(InvalidValueError):
        encode_scene(scene, **options)


def test_seeking_outside_the_scene() -> None:
    replayer = Replayer(encode_scene(walker_scene(n=20)))
    assert replayer.frame_at(-5.0) == 0 and replayer.frame_at(1e9) == 19
    with pytest.raises(InvalidValueError):
        replayer.state_at(float("nan"))
    with pytest.raises(InvalidValueError):
        replayer.seek_frame(20)
    last, clamped = replayer.seek_frame(19), replayer.state_at(100.0)
    assert last.keys() == clamped.keys() and last
    assert all(np.array_equal(last[k].position, clamped[k].position) for k in last)


def test_arrow_ipc_of_a_table_alone_reads_back() -> None:
    # Each table is plain Arrow: what travels in a Flight stream reads without this codec.
    table = encode_scene(walker_scene()).tables["keyframes"]
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    assert pa.ipc.open_stream(sink.getvalue()).read_all().equals(table)
