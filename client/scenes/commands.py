"""``aimem scene``: import, list, show and measure episodes (loaded only when used)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from aios_memory.client.cli.connection import client_options
from aios_memory.client.cli.kit import CONTEXT, output_options, render_mapping, render_rows
from aios_memory.client.client import MemoryClient
from aios_memory.schemas import TIERS
from aios_memory.schemas.scenes import PREDICTORS

from .memory import Scenes

__all__ = ["scene"]

_FORMATS = ("ucy", "bvh", "generated")


@click.group(context_settings=CONTEXT)
def scene() -> None:
    """Episodes: a scene plus what happened, replayed to any moment, drawn as a picture.

    \b
    Example:
        aimem scene import crowd.txt --format ucy --description "the plaza at noon"
        aimem scene list
        aimem scene show EPISODE --at 12.5 --out frame.png
    """


def _read(file: str, fmt: str, seed: int) -> Any:
    from . import importers

    if fmt == "ucy":
        return importers.read_ucy(file)
    if fmt == "bvh":
        return importers.read_bvh(file)
    return importers.generate_scene(seed)


@scene.command("import", context_settings=CONTEXT)
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(_FORMATS),
    required=True,
    help="ucy (frame agent x y), bvh (motion capture), or generated (from --seed).",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="For --format generated: the seed of the procedural scene.",
)
@click.option("--description", help="What recall finds it by (default: the file's name).")
@click.option("--tier", type=click.Choice(TIERS), default="working", show_default=True)
@click.option("--privacy", type=click.IntRange(0, 3), default=1, show_default=True)
@click.option(
    "--step-cm",
    type=float,
    default=1.0,
    show_default=True,
    help="Position step in centimetres (the error bound follows from it).",
)
@click.option(
    "--step-deg", type=float, default=0.05, show_default=True, help="Rotation step in degrees."
)
@click.option(
    "--predictor",
    type=click.Choice(PREDICTORS),
    help="Motion predictor (default: acceleration from 30 Hz up, else velocity); "
    "knots: store only the frames a straight line within the bound cannot "
    "stand in for.",
)
@click.option(
    "--max-error-cm",
    type=float,
    help="Declared position bound (default: from --step-cm); the encoder refuses "
    "to exceed it, and knots may use all of it.",
)
@click.option("--max-error-deg", type=float, help="Declared rotation bound, likewise.")
@output_options(
    lambda value: (
        f"{value['id']}  ({value['frames']} frames, "
        f"{value['objects']} objects, {value['bytes']} bytes)"
    )
)
@client_options
def import_(
    mem: MemoryClient,
    file: str | None,
    fmt: str,
    seed: int,
    description: str | None,
    tier: str,
    privacy: int,
    step_cm: float,
    step_deg: float,
    predictor: str | None,
    max_error_cm: float | None,
    max_error_deg: float | None,
) -> dict[str, Any]:
    """Store FILE (or a generated scene) as an episode and print its id.

    \b
    Example:
        aimem scene import zara01.txt --format ucy --tier long_term
        aimem scene import walk.bvh --format bvh --step-deg 0.1 --json
        aimem scene import zara01.txt --format ucy --predictor knots --max-error-cm 5
        aimem scene import --format generated --seed 7 --description "a quiet morning"
    """
    if fmt != "generated" and file is None:
        raise click.UsageError(f"--format {fmt} needs a FILE")
    scene_ = _read(file or "", fmt, seed)
    scenes = Scenes(mem)
    episode = scenes.remember(
        scene_,
        description or scene_.name,
        tier=tier,
        privacy=privacy,
        step_m=step_cm / 100,
        step_deg=step_deg,
        predictor=predictor,
        max_error_deg=max_error_deg,
        max_error_m=None if max_error_cm is None else max_error_cm / 100,
    )
    summary = next(s for s in scenes.list() if s["id"] == episode)
    return summary


@scene.command("list", context_settings=CONTEXT)
@output_options(
    lambda rows: render_rows(
        rows, ("id", "tier", "frames", "duration_s", "objects", "bytes", "description")
    )
)
@client_options
def list_(mem: MemoryClient) -> list[dict[str, Any]]:
    """List the tenant's episodes, oldest first.

    \b
    Example:
        aimem scene list --json
    """
    return Scenes(mem).list()


@scene.command("show", context_settings=CONTEXT)
@click.argument("episode")
@click.option("--at", "at", type=float, help="Seconds into the episode, for one frame.")
@click.option("--from", "t_from", type=float, help="Start of a strip or GIF, in seconds.")
@click.option("--to", "t_to", type=float, help="End of a strip or GIF, in seconds.")
@click.option("--frames", type=int, default=6, show_default=True, help="Moments in a strip or GIF.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the picture: .png (a frame or a strip) or .gif.",
)
@output_options(lambda value: f"wrote {value['path']}")
@client_options
def show(
    mem: MemoryClient,
    episode: str,
    at: float | None,
    t_from: float | None,
    t_to: float | None,
    frames: int,
    out: Path,
) -> dict[str, Any]:
    """Draw EPISODE at a moment (--at) or over a span (--from, --to) into --out.

    \b
    Example:
        aimem scene show 01a2... --at 12.5 --out frame.png
        aimem scene show 01a2... --from 0 --to 10 --out walk.gif
    """
    if (at is None) == (t_from is None or t_to is None):
        raise click.UsageError("give either --at, or both --from and --to")
    scenes = Scenes(mem)
    if at is not None:
        path = scenes.render(episode, at, out)
    else:
        path = scenes.render(
            episode,
            t_from,  # type: ignore[arg-type]  # given with --to: checked above
            out,
            t_to=t_to,
            frames=frames,
            gif=out.suffix.lower() == ".gif",
        )
    return {"path": str(path)}


@scene.command("stats", context_settings=CONTEXT)
@click.argument("episode")
@output_options(render_mapping)
@client_options
def stats(mem: MemoryClient, episode: str) -> dict[str, Any]:
    """Bytes per table, the declared and measured error, and the ratio to raw snapshots.

    \b
    Example:
        aimem scene stats 01a2... --json
    """
    encoded = Scenes(mem).get(episode)
    return {"episode": episode, **encoded.facts(), "bytes": encoded.byte_counts()}
