"""``aimem recompress`` and ``aimem dict``: the codec commands, loaded only when used."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import click

from aios_memory.client._recompress import RecompressReport
from aios_memory.client.client import MemoryClient
from aios_memory.schemas import CODEC_SEALED, CODECS, TIERS

from .connection import client_options
from .kit import CONTEXT, output_options, parse_duration, render_mapping, render_rows

__all__ = ["recompress", "dictionaries"]


def _render_report(value: dict[str, Any]) -> str:
    saved = value["bytes_before"] - value["bytes_after"]
    return (
        f"re-encoded {value['reencoded']} of {value['scanned']} memories with "
        f"{value['codec']} ({value['unchanged']} unchanged, {value['skipped_edited']} edited "
        f"meanwhile and left alone); payloads {value['bytes_before']} -> "
        f"{value['bytes_after']} bytes ({saved} saved) in {value['seconds']} s"
    )


@click.command(context_settings=CONTEXT)
@click.option("--tier", type=click.Choice(TIERS), required=True, help="Tier to re-encode.")
@click.option(
    "--codec",
    type=click.Choice(sorted(set(CODECS) - {CODEC_SEALED})),
    required=True,
    help="Codec to re-encode with (falls back where it does not pay).",
)
@click.option(
    "--older-than",
    callback=parse_duration,
    help="Only memories created longer ago than this, e.g. 30d (default: all).",
)
@output_options(_render_report)
@client_options
def recompress(
    mem: MemoryClient, tier: str, codec: str, older_than: timedelta | None
) -> dict[str, Any]:
    """Re-encode a tier's memories with another codec, keeping every text byte for byte.

    Each new payload is decoded and checked against the memory's content hash
    before it is written, and a memory edited meanwhile is left alone. The
    server keeps serving; progress goes to stderr. `lm` needs the [lm] extra
    and costs about as much per memory as it takes to decode one later, so it
    suits old, rarely read memories.

    \b
    Example:
        aimem dict train --tier long_term
        aimem recompress --tier long_term --codec zstd-dict
        aimem recompress --tier long_term --codec lm --older-than 30d
    """

    def progress(report: RecompressReport) -> None:
        click.echo(
            f"\r{report.scanned} memories, {report.reencoded} re-encoded", nl=False, err=True
        )

    report = mem.recompress(tier, codec, older_than=older_than, progress=progress)
    click.echo("", err=True)
    return report.as_dict()


@click.group("dict", context_settings=CONTEXT)
def dictionaries() -> None:
    """Trained zstd dictionaries: per tenant and tier, stored and synced as records.

    \b
    Example:
        aimem dict train --tier long_term
        aimem dict list
    """


@dictionaries.command("train", context_settings=CONTEXT)
@click.option("--tier", type=click.Choice(TIERS), required=True)
@click.option(
    "--force",
    is_flag=True,
    help="Train even if the tier has not doubled since the last dictionary.",
)
@output_options(render_mapping)
@client_options
def train(mem: MemoryClient, tier: str, force: bool) -> dict[str, Any]:
    """Train a dictionary on a tier's texts; keep it only if held-out texts shrink 2% more.

    New memories of the tier use the newest dictionary; older ones keep theirs
    (run `aimem recompress --codec zstd-dict` to move them over).

    \b
    Example:
        aimem dict train --tier long_term --json
    """
    return mem.train_dictionary(tier, force=force).as_dict()


@dictionaries.command("list", context_settings=CONTEXT)
@output_options(
    lambda rows: render_rows(rows, ("dict_id", "tier", "bytes", "trained_on", "held_out_ratio"))
)
@client_options
def list_(mem: MemoryClient) -> list[dict[str, Any]]:
    """List the tenant's dictionaries, oldest first.

    \b
    Example:
        aimem dict list --json
    """
    return mem.dictionaries()
