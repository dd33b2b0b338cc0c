"""How small is a remembered episode, what error does that cost, how fast is a seek?

Reads a UCY/ETH pedestrian file or a BVH motion capture through ``scenes.importers``,
encodes it with ``scenes.codec.encode_scene`` under every setting, and prints one
JSON line per setting (``bench`` = ``scenes``, ``kind`` = ``setting``) plus one
line with the baselines (``kind`` = ``baselines``). Every byte we store is
counted: the whole ``EncodedScene.to_bytes()`` container (five Arrow tables,
header and checksum).

Baselines, all from the scene as imported (before quantization):

- ``float32``: a snapshot per frame at the data's own rate: every present object
  as a uint32 id, its position as 3 float32 and, if it rotates, its quaternion as
  4 float32 (UCY: 16 bytes a pedestrian a frame; BVH: 32 a joint, 16 an end site);
- ``source_float32``: the source file's own numbers as float32 (UCY: the 4
  columns of each row; BVH: every channel of every frame);
- ``zstd``: the ``float32`` snapshots compressed as one zstd frame (level 19);
- ``parquet``: the snapshots as one Parquet table (frame, object, x, y, z and
  qw, qx, qy, qz when any object rotates; float32; zstd; pyarrow defaults);
- ``float32_25hz``: ``float32`` snapshots at 25 Hz: one snapshot of the nearest
  frame every 1/25 s over the scene's duration.

A second series (``kind`` = ``bound``) meets each of a few maximum errors two
ways: the coarsest grid that keeps it, and error-bounded adaptive keyframes
(``predictor="knots"``: a finer grid, and straight lines between stored frames
within the rest of the bound).

Errors are the codec's own measurement at encode time (it decodes what it made):
Euclidean metres over the axes used, and the rotation angle in degrees. Seeks
are ``Replayer.state_at`` at uniform random times with no cached segment (each
seek decodes its segment: the cold case).

Example::

    .venv/bin/python bench/scenes.py --data PATH/TO/scenes-dev/ucy_crowds_zara01.txt \\
        --format ucy > bench/results/scenes_ucy.jsonl
    .venv/bin/python bench/scenes.py --data PATH/TO/scenes-dev/cmu_131_01.bvh \\
        --format bvh > bench/results/scenes_bvh.jsonl
"""

from __future__ import annotations

import io
import itertools
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import base_parser, emit, latency_ms, log, quick  # noqa: E402

from aios_memory.client.scenes.codec import Replayer, default_keyframe_every, encode_scene  # noqa: E402
from aios_memory.client.scenes.importers import read_bvh, read_ucy  # noqa: E402
from aios_memory.client.scenes.model import Scene  # noqa: E402

BENCH = "scenes"
SNAPSHOT_RATE = 25.0
SEEKS, QUICK_SEEKS = 2000, 100


# --- baselines ----------------------------------------------------------------------


def snapshot_table(scene: Scene, frames: np.ndarray | None = None) -> pa.Table:
    """The per-frame snapshots as rows (frame, object, x, y, z[, qw, qx, qy, qz]), float32."""
    frames = np.arange(scene.n_frames) if frames is None else frames
    rotating = any(t.rotations is not None for t in scene.tracks.values())
    parts = []
    for number, obj in enumerate(scene.objects):
        track = scene.tracks.get(obj.id)
        if track is None:
            continue
        rows = frames[np.isfinite(track.positions[frames, 0])]
        block = {
            "frame": rows.astype(np.uint32),
            "object": np.full(len(rows), number, dtype=np.uint32),
        }
        block.update({a: track.positions[rows, i].astype(np.float32) for i, a in enumerate("xyz")})
        if rotating:
            quats = (
                track.rotations[rows]
                if track.rotations is not None
                else np.full((len(rows), 4), np.nan)
            )
            block.update({f"q{a}": quats[:, i].astype(np.float32) for i, a in enumerate("wxyz")})
        parts.append(pa.table(block))
    return pa.concat_tables(parts).sort_by([("frame", "ascending"), ("object", "ascending")])


def snapshot_bytes(table: pa.Table) -> bytes:
    """float32 snapshots as stored: uint32 id, xyz, and wxyz only for rotating objects."""
    out = io.BytesIO()
    position = np.column_stack([table[a].to_numpy() for a in "xyz"])
    quats = (
        np.column_stack([table[f"q{a}"].to_numpy() for a in "wxyz"])
        if "qw" in table.column_names
        else np.full((table.num_rows, 1), np.nan)
    )
    ids = table["object"].to_numpy()
    for i in range(table.num_rows):
        out.write(ids[i].tobytes() + position[i].tobytes())
        if np.isfinite(quats[i, 0]):
            out.write(quats[i].tobytes())
    return out.getvalue()


def source_float32_bytes(path: Path, fmt: str) -> int:
    """The source file's numbers as float32: UCY rows, or BVH's motion channels."""
    text = path.read_text(encoding="utf-8")
    if fmt == "bvh":
        lines = text.split("MOTION", 1)[1].strip().splitlines()[2:]
    else:
        lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return 4 * sum(len(line.split()) for line in lines)


def baselines(scene: Scene, path: Path, fmt: str) -> dict[str, int]:
    """Bytes of every baseline (module docstring)."""
    table = snapshot_table(scene)
    raw = snapshot_bytes(table)
    parquet = io.BytesIO()
    pq.write_table(table, parquet, compression="zstd")
    ticks = np.arange(int(scene.duration * SNAPSHOT_RATE) + 1) / SNAPSHOT_RATE
    nearest = np.minimum(np.rint(ticks * scene.frame_rate).astype(int), scene.n_frames - 1)
    return {
        "float32": len(raw),
        "source_float32": source_float32_bytes(path, fmt),
        "zstd": len(zstandard.ZstdCompressor(level=19).compress(raw)),
        "parquet": len(parquet.getvalue()),
        "float32_25hz": len(snapshot_bytes(snapshot_table(scene, nearest))),
    }


# --- settings -----------------------------------------------------------------------


def settings(scene: Scene, fmt: str) -> Iterator[dict[str, Any]]:
    """Every setting to measure (a few in quick mode)."""
    # The default, 1 s and 10 s (where that is 16 frames or more), and one segment in all.
    seconds = [round(k * scene.frame_rate) for k in (1, 10)]
    every = sorted(
        {
            default_keyframe_every(scene.frame_rate),
            scene.n_frames,
            *(k for k in seconds if 16 <= k < scene.n_frames),
        }
    )
    predictors = ["delta", "velocity", "acceleration"]
    if fmt == "ucy":
        grid = itertools.product([0.01, 0.02, 0.05], [0.05], predictors, every)
    else:
        grid = itertools.product([0.01], [0.05, 0.1, 0.5], predictors, every)
    combos = list(grid)
    for step_m, step_deg, predictor, keyframe_every in combos[:3] if quick() else combos:
        yield {
            "step_m": step_m,
            "step_deg": step_deg,
            "predictor": predictor,
            "keyframe_every": int(min(keyframe_every, scene.n_frames)),
        }


# Maximum errors to meet two ways (``kind`` = ``bound``): UCY in metres, BVH in degrees.
BOUNDS = {"ucy": [0.0071, 0.01, 0.02, 0.05], "bvh": [0.0433, 0.1, 0.25, 0.5]}
# Knots get a grid this much finer than the bound allows, and the rest of the bound
# for their lines (0.7 was best of 0.3, 0.5, 0.7, 0.9 on both files).
KNOT_GRID = 0.7


def bound_settings(fmt: str) -> Iterator[tuple[float, str, dict[str, Any]]]:
    """Per bound: ``grid``, the coarsest step that keeps it (default predictor), and
    ``knots``, a finer step with error-bounded adaptive keyframes using the rest."""
    axes, unit = (2, "m") if fmt == "ucy" else (3, "deg")
    step_key = "step_m" if unit == "m" else "step_deg"
    bounds = BOUNDS[fmt][:2] if quick() else BOUNDS[fmt]
    for bound in bounds:
        step = bound * 2 / np.sqrt(axes) * (1 - 1e-6)  # the bound is sqrt(axes) * step / 2
        yield bound, "grid", {step_key: step}
        yield (
            bound,
            "knots",
            {step_key: KNOT_GRID * step, "predictor": "knots", f"max_error_{unit}": bound},
        )


def measure(
    scene: Scene, options: dict[str, Any], base: dict[str, int], rng: np.random.Generator
) -> dict[str, Any]:
    """Encode under one setting: bytes, ratios, errors and seek latency."""
    start = time.perf_counter()
    encoded = encode_scene(scene, **options)
    encode_s = time.perf_counter() - start
    counts = encoded.byte_counts()
    total = counts["total"]
    replayer = Replayer(encoded, cache_segments=0)
    times = rng.uniform(0, scene.duration, QUICK_SEEKS if quick() else SEEKS)
    durations = []
    for t in times:
        start = time.perf_counter()
        replayer.state_at(float(t))
        durations.append(time.perf_counter() - start)
    episode = encoded.episode
    return {
        "bytes": counts,
        "ratio": {name: round(size / total, 2) for name, size in base.items()},
        "error": {key: episode[key] for key in episode if "error" in key},
        "seek": latency_ms(durations),
        "encode_s": round(encode_s, 3),
        "bytes_per_object_frame": round(total / max(_object_frames(scene), 1), 3),
    }


def _object_frames(scene: Scene) -> int:
    return sum(int(np.isfinite(t.positions[:, 0]).sum()) for t in scene.tracks.values())


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="a UCY/ETH .txt file or a .bvh file")
    parser.add_argument("--format", choices=["ucy", "bvh"], required=True)
    parser.add_argument("--seed", type=int, default=0, help="seed of the seek times")
    args = parser.parse_args()
    path = Path(args.data)
    scene = (read_ucy if args.format == "ucy" else read_bvh)(path)
    facts = {
        "data": path.name,
        "format": args.format,
        "frames": scene.n_frames,
        "frame_rate": scene.frame_rate,
        "objects": len(scene.objects),
        "object_frames": _object_frames(scene),
    }
    base = baselines(scene, path, args.format)
    emit(BENCH, facts, kind="baselines", bytes=base)
    rng = np.random.default_rng(args.seed)
    for options in settings(scene, args.format):
        log(f"{path.name}: {options}")
        emit(BENCH, {**facts, **options}, kind="setting", **measure(scene, options, base, rng))
    for bound, variant, options in bound_settings(args.format):
        log(f"{path.name}: bound {bound}, {variant}")
        emit(
            BENCH,
            {**facts, "bound": bound, "variant": variant, **options},
            kind="bound",
            **measure(scene, options, base, rng),
        )


if __name__ == "__main__":
    main()
