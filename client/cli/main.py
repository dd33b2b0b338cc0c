"""``aimem``: the command line for a memory server.

Every client command shares the connection options (``--server``, ``--token``,
``--token-file``, ``--tenant``, ``--timeout``, ``--tls-*``) and ``--json``. Results go to
stdout, progress and logs to stderr. Exit 0 ok, 1 error, 2 usage.
Commands from other packages (``aimem serve``) register under the
``aimem.commands`` entry point group and load only when used.
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import EntryPoint, entry_points
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import click
import pyarrow.parquet as pq

from aios_memory.client.client import DEFAULT_IMPORT_BATCH, SCAN_SCHEMA, MemoryClient
from aios_memory.client.importers import read_file
from aios_memory.schemas import SEARCH_MODES, TIERS, AiosMemoryError

from . import _output
from .connection import client_options
from .kit import CONTEXT, json_object, output_options, render_mapping, render_rows

__all__ = ["main"]

PLUGIN_GROUP = "aimem.commands"
# The extra each plugin command needs when its import fails (default: server).
_COMMAND_EXTRAS = {"scene": "scenes", "llm": "llm"}


class _Group(click.Group):
    """The root group: lazy plugin commands, and ``Error: <message>`` for our errors."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plugins: dict[str, EntryPoint] = {}
        for point in entry_points(group=PLUGIN_GROUP):
            self._plugins.setdefault(point.name, point)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(self._plugins))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is None and name in self._plugins:
            command = _load_plugin(self._plugins.pop(name))
            self.add_command(command, name)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AiosMemoryError as exc:
            raise click.ClickException(exc.message) from None


def _load_plugin(point: EntryPoint) -> click.Command:
    try:
        command = point.load()
    except ImportError as exc:
        return _stub(
            point.name,
            f"`aimem {point.name}` needs the {_extra_of(point.name)} extras: "
            f"pip install 'ai-os-memory[{_extra_of(point.name)}]' ({exc})",
        )
    except Exception as exc:  # a broken plugin must not break every other command
        return _stub(point.name, f"`aimem {point.name}` failed to load from {point.value}: {exc}")
    if not isinstance(command, click.Command):
        return _stub(point.name, f"{point.value} is not a click command")
    return command


def _extra_of(command: str) -> str:
    # The smallest extra that brings a plugin command's imports; [all] drags in test tools too.
    return _COMMAND_EXTRAS.get(command, "server")


def _stub(name: str, message: str) -> click.Command:
    settings = {**CONTEXT, "ignore_unknown_options": True, "allow_extra_args": True}

    @click.command(name, context_settings=settings, help=f"Unavailable: {message}")
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def stub(args: tuple[str, ...]) -> None:
        raise click.ClickException(message)

    return stub


def _version() -> str:
    try:
        return package_version("ai-os-memory")
    except Exception:  # not installed as a distribution (a source checkout)
        return "unknown"


@click.group(cls=_Group, context_settings=CONTEXT)
@click.version_option(_version(), "--version", prog_name="aimem")
def main() -> None:
    """Memory for personal AI assistants: four tiers behind Arrow Flight.

    \b
    Example:
        aimem serve --data ~/.aimem &
        aimem remember "Ada prefers tea" --tier core --token-file ~/.aimem/token
        aimem recall "what does Ada drink?" --token-file ~/.aimem/token
    """


_TIER = click.Choice(TIERS)


def _time_option(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """Epoch seconds as a number, anything else as text (checked by the client)."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return value


# -- commands -------------------------------------------------------------------


@main.command(context_settings=CONTEXT)
@click.argument("texts", nargs=-1, required=True)
@click.option("--tier", type=_TIER, default="working", show_default=True)
@click.option("--metadata", callback=json_object, help="A JSON object stored with each text.")
@click.option("--kind", default="text", show_default=True)
@click.option("--session", help="Conversation id.")
@click.option("--agent", help="Who is remembering.")
@click.option(
    "--privacy",
    type=click.IntRange(0, 3),
    default=1,
    show_default=True,
    help="0 public, 1 personal, 2 private, 3 secret.",
)
@click.option(
    "--reader",
    "readers",
    multiple=True,
    help="For --tier shared: another tenant (bob) or principal (bob/phone) who may "
    "read it; repeat for each.",
)
@click.option(
    "--occurred-at",
    callback=_time_option,
    help="When it happened (default: not recorded): ISO 8601 (UTC without a zone, e.g. "
    "2023-05-08T13:56:00Z) or epoch seconds.",
)
@output_options(_output.render_ids)
@client_options
def remember(mem: MemoryClient, texts: tuple[str, ...], **fields: Any) -> dict[str, Any]:
    """Store TEXTS (or, with `-`, each line of stdin) and print their ids.

    \b
    Example:
        aimem remember "Ada prefers tea" --tier core --metadata '{"topic": "food"}'
        cat notes.txt | aimem remember - --tier long_term
        aimem remember "Dinner at 8 on Friday" --tier shared --reader bob
        aimem remember "Ada moved to Lyon" --occurred-at 2023-05-08T13:56:00Z
    """
    if texts == ("-",):
        texts = tuple(line.rstrip("\r\n") for line in sys.stdin if line.strip())
    fields["readers"] = list(fields["readers"]) or None
    return {"ids": mem.remember(list(texts), **fields)}


@main.command(context_settings=CONTEXT)
@click.argument("query")
@click.option(
    "-k", type=click.IntRange(1, 1000), default=10, show_default=True, help="How many hits."
)
@click.option("--tier", type=_TIER, multiple=True, help="Only this tier (repeatable).")
@click.option(
    "--where",
    callback=json_object,
    help='Filter on fields or metadata, e.g. \'{"topic": "food"}\'.',
)
@click.option("--mode", type=click.Choice(SEARCH_MODES), default="hybrid", show_default=True)
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    help="Only memories of this kind, e.g. summary or fact (repeatable: any of them).",
)
@output_options(_output.render_hits)
@client_options
def recall(
    mem: MemoryClient,
    query: str,
    k: int,
    tier: tuple[str, ...],
    where: dict[str, Any] | None,
    mode: str,
    kinds: tuple[str, ...],
) -> list[dict[str, Any]]:
    """Print the memories most relevant to QUERY, best first.

    --where takes record fields and metadata keys; occurred_at (when a memory
    happened) compares times: ISO 8601 or epoch seconds.

    \b
    Example:
        aimem recall "what does Ada drink?" -k 5 --tier core --where '{"topic": "food"}'
        aimem recall "trips" --kind summary --kind fact
        aimem recall "Lyon" --where '{"occurred_at": {"$gte": "2023-05-01"}}'
    """
    hits = mem.recall(
        query, k=k, tier=list(tier) or None, where=where, mode=mode, kind=list(kinds) or None
    )
    return [_output.memory_json(hit) for hit in hits]


@main.command(context_settings=CONTEXT)
@click.argument("ids", nargs=-1, required=True)
@output_options(_output.render_memories)
@client_options
def get(mem: MemoryClient, ids: tuple[str, ...]) -> list[dict[str, Any]]:
    """Print memories by id (ids not found are skipped).

    \b
    Example:
        aimem get 0190f5a2-7c4e-7d3a-9b1e-2f6c8a1d4e5f --json
    """
    return [_output.memory_json(m) for m in mem.get(list(ids))]


@main.command(context_settings=CONTEXT)
@click.argument("ids", nargs=-1, required=True)
@output_options(_output.render_count("forgotten", "forgot"))
@client_options
def forget(mem: MemoryClient, ids: tuple[str, ...]) -> dict[str, Any]:
    """Delete memories by id.

    \b
    Example:
        aimem forget 0190f5a2-7c4e-7d3a-9b1e-2f6c8a1d4e5f
    """
    return {"forgotten": mem.forget(list(ids))}


@main.command(context_settings=CONTEXT)
@output_options(lambda rows: render_rows(rows, ("tier", "memories", "bytes")))
@client_options
def tiers(mem: MemoryClient) -> list[dict[str, Any]]:
    """Print each tier with its number of memories and bytes.

    \b
    Example:
        aimem tiers --json
    """
    return mem.tiers()


@main.command(context_settings=CONTEXT)
@output_options(render_mapping)
@client_options
def stats(mem: MemoryClient) -> dict[str, Any]:
    """Print the server's counts and sizes.

    \b
    Example:
        aimem stats --json
    """
    return mem.stats()


@main.command(context_settings=CONTEXT)
@output_options(render_mapping)
@client_options
def whoami(mem: MemoryClient) -> dict[str, Any]:
    """Print what the token may do: tenant, principal, tiers, clearance, expiry.

    \b
    Example:
        AIMEM_TOKEN=aimem_... aimem whoami --json
    """
    return mem.whoami()


@main.command(context_settings=CONTEXT)
@click.option(
    "--min-waste",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    show_default=True,
    help="Rewrite only when at least this share of the database file is dead space.",
)
@click.option("--dry-run", is_flag=True, help="Only print the dead-space estimate.")
@output_options(_output.render_compaction)
@client_options
def compact(mem: MemoryClient, min_waste: float, dry_run: bool) -> dict[str, Any]:
    """Give back the disk space of deleted, superseded and re-encoded memories.

    The server rewrites its database file with only what is live and switches to it
    atomically: searches and reads go on meanwhile, writes pause for the final catch-up
    only, and a crash at any moment leaves the old file or the new one, never less.
    The disk needs room for the live data once more while it runs. Needs the server's
    owner token. The server also compacts by itself when the file is mostly dead
    space (aimem serve --compact-waste).

    \b
    Examples:
        aimem compact --dry-run
        aimem compact --min-waste 0.3 --timeout 600
    """
    return mem.compact(min_waste=min_waste, dry_run=dry_run)


@main.command("import", context_settings=CONTEXT)
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "jsonl", "locomo"]),
    default="auto",
    show_default=True,
)
@click.option(
    "--tier", type=_TIER, default="working", show_default=True, help="Tier of items that name none."
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=DEFAULT_IMPORT_BATCH,
    show_default=True,
    help="Memories per write.",
)
@output_options(_output.render_count("imported", "imported"))
@client_options
def import_(mem: MemoryClient, file: str, fmt: str, tier: str, batch_size: int) -> dict[str, Any]:
    """Import memories from FILE: JSON lines ({"text": ...} per line) or a LoCoMo conversation.

    A JSON line may also give "tier", "metadata", "kind", "session", "agent",
    "privacy", "occurred_at" (when it happened: ISO 8601 or epoch seconds) and
    "embedding" (the text's vector from your own model, a list of numbers; the
    server embeds lines without one). A LoCoMo turn's occurred_at is its session's
    date, taken as UTC. The whole file is read and checked before anything is
    written; then it streams, one batch at a time.

    \b
    Example:
        aimem import notes.jsonl --tier long_term
        aimem import conv-26.json --format locomo
        aimem import vectors.jsonl  # {"text": "tea", "embedding": [0.1, 0.7, ...]}
    """
    total = sum(1 for _ in read_file(file, fmt))
    with click.progressbar(length=total, label="Importing", file=sys.stderr) as bar:
        ids = mem.remember_many(
            read_file(file, fmt), tier=tier, batch_size=batch_size, progress=bar.update
        )
    return {"imported": len(ids), "file": file}


@main.command(context_settings=CONTEXT)
@click.option("--tier", type=_TIER, multiple=True, help="Only this tier (repeatable; default all).")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, writable=True),
    help="Parquet file to write.",
)
@output_options(_output.render_count("exported", "exported"))
@client_options
def export(mem: MemoryClient, tier: tuple[str, ...], out: str) -> dict[str, Any]:
    """Stream memories into a Parquet file (record columns, decoded text and occurred_at).

    \b
    Example:
        aimem export --tier long_term --out long_term.parquet
    """
    partial = f"{out}.partial"
    rows = 0
    schema = SCAN_SCHEMA
    try:
        with pq.ParquetWriter(partial, schema, write_page_checksum=True) as writer:
            for batch in mem.iter_scan(list(tier) or None):
                writer.write_batch(batch)
                rows += batch.num_rows
                click.echo(f"\r{rows} rows", nl=False, err=True)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    os.replace(partial, out)
    click.echo("", err=True)
    return {"exported": rows, "file": out}
