"""``aimem consolidate`` and ``aimem reconstruct``: the memory's sleep, loaded only when used."""

from __future__ import annotations

import json
import signal
import threading
import time
from dataclasses import asdict
from datetime import timedelta
from typing import Any

import click

from aios_memory.client.client import MemoryClient
from aios_memory.client.consolidate import DEMOTIONS, ConsolidationReport, SessionOutcome
from aios_memory.schemas import TIERS

from .connection import client_options
from .kit import CONTEXT, output_options, parse_duration
from .llm_options import llm_options, settings_from_options

__all__ = ["consolidate", "reconstruct"]


def _render_report(value: dict[str, Any]) -> str:
    head = (
        f"{value['sessions']} sessions of {value['tier']}: {value['consolidated']} consolidated, "
        f"{value['unchanged']} unchanged, {value['pending']} pending, {value['recent']} recent, "
        f"{len(value['failed'])} failed; {value['summaries']} summaries and {value['facts']} facts "
        f"written to {value['target_tier']} ({value['facts_dropped']} facts dropped by the "
        f"check, {value['superseded']} superseded, {value['demoted']} sessions demoted) in "
        f"{value['seconds']} s"
    )
    failures = [
        f"  {f['session'] or 'sealed, session unknown'}: {f['code']}: {f['error']}"
        for f in value["failed"]
    ]
    return "\n".join([head, *failures])


def _progress(outcome: SessionOutcome, number: int, total: int) -> None:
    detail = (
        f"{outcome.facts} facts, {outcome.seconds:.1f} s"
        if outcome.status == "consolidated"
        else ""
    )
    if outcome.status == "failed":
        detail = f"{outcome.code}: {outcome.error}"
    click.echo(
        f"[{number}/{total}] {outcome.session}: {outcome.status} {detail}".rstrip(), err=True
    )


@click.command(context_settings=CONTEXT)
@click.option("--session", help="Only this session (default: every session of the tier).")
@click.option(
    "--tier",
    type=click.Choice(TIERS),
    default="working",
    show_default=True,
    help="Tier whose sessions are consolidated.",
)
@click.option(
    "--target-tier",
    type=click.Choice(TIERS),
    default="long_term",
    show_default=True,
    help="Tier the summaries and facts are written to.",
)
@click.option(
    "--summary-tokens",
    type=click.IntRange(10, 2000),
    default=100,
    show_default=True,
    help="The summary's budget in tokens.",
)
@click.option(
    "--max-facts",
    type=click.IntRange(0, 40),
    default=8,
    show_default=True,
    help="Facts at most a session.",
)
@click.option(
    "--older-than",
    callback=parse_duration,
    help="Only sessions idle this long, e.g. 1d or 12h (default: all).",
)
@click.option(
    "--demote",
    default="keep",
    show_default=True,
    help=f"What happens to a consolidated session's raw turns in --tier: {', '.join(DEMOTIONS)}"
    " (forget-after=30d).",
)
@click.option(
    "--allow-remote-private",
    multiple=True,
    type=click.Choice(TIERS),
    help="Let private sessions of this tier go to a model not on this machine (repeatable).",
)
@click.option("--dry-run", is_flag=True, help="Say what would be consolidated; write nothing.")
@click.option(
    "--outcomes",
    type=click.Path(dir_okay=False, writable=True),
    help="Also append each session's outcome to this file as one JSON line as soon as it is "
    "done: a record that outlives an interrupted run.",
)
@click.option(
    "--every",
    callback=parse_duration,
    help="Run again and again, this long apart, until stopped (SIGTERM/Ctrl-C): the schedule. "
    "Each round's report goes to stderr; the last one is printed when it stops.",
)
@llm_options
@output_options(_render_report)
@client_options
def consolidate(mem: MemoryClient, every: timedelta | None, **options: Any) -> dict[str, Any]:
    """Consolidate sessions: each becomes a summary plus the facts only it holds.

    One model call a session writes a summary memory (kind summary) and facts (kind
    fact: one sentence each, its subject named, dates absolute) into --target-tier,
    each listing the memories it came from in metadata "aimem:sources". Facts whose
    names, numbers or dates do not follow from their sources are dropped and
    counted. A session whose turns did not change costs nothing the next time; one
    that fails (model down, timeout, bad output) is reported and tried again next run.

    The model is the embedded local one unless --llm-url names an OpenAI-compatible
    endpoint (see `aimem llm --help`). Progress goes to stderr.

    \b
    Examples:
        aimem import chats.json --format locomo --tier working
        aimem consolidate --tier working --dry-run
        aimem consolidate --tier working --json
        aimem consolidate --older-than 1h --every 10m --demote recompress
        aimem recall "when did Caroline go to the support group" --kind fact
    """
    run = _runner(mem, _open_llm(options), options)
    if every is None:
        return run().to_dict()
    return _schedule(run, every)


def _open_llm(options: dict[str, Any]) -> Any:
    from aios_memory.client.llm import open_llm  # the model loads on its first call

    llm_settings = {k: options.pop(k) for k in list(options) if k.startswith("llm_")}
    return open_llm(settings_from_options(llm_settings))


def _runner(mem: MemoryClient, llm: Any, options: dict[str, Any]) -> Any:
    arguments = {
        name: options[name]
        for name in (
            "session",
            "tier",
            "target_tier",
            "summary_tokens",
            "max_facts",
            "older_than",
            "demote",
            "allow_remote_private",
            "dry_run",
        )
    }

    outcomes = options.get("outcomes")

    def progress(outcome: SessionOutcome, number: int, total: int) -> None:
        _progress(outcome, number, total)
        if outcomes is not None:
            with open(outcomes, "a", encoding="utf-8") as log:
                log.write(json.dumps(asdict(outcome)) + "\n")

    def run() -> ConsolidationReport:
        return mem.consolidate(llm=llm, progress=progress, **arguments)

    return run


def _schedule(run: Any, every: timedelta) -> dict[str, Any]:
    # A signal ends the wait between rounds; a round under way finishes first, so nothing
    # is left half written (each session's put is whole anyway).
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    last: dict[str, Any] = {}
    while not stop.is_set():
        started = time.monotonic()
        last = run().to_dict()
        click.echo(_render_report(last), err=True)
        stop.wait(max(0.0, every.total_seconds() - (time.monotonic() - started)))
    return last


@click.command(context_settings=CONTEXT)
@click.argument("session")
@output_options(lambda value: str(value["text"]))
@client_options
def reconstruct(mem: MemoryClient, session: str) -> dict[str, Any]:
    """Write back a readable account of SESSION from its summary and facts.

    The account is assembled from what consolidation kept (and the raw turns where
    they are still kept), never generated anew, and its first line marks it as
    reconstructed.

    \b
    Example:
        aimem reconstruct conv-26/session_1
    """
    return mem.reconstruct(session).to_dict()
