"""``aimem sync``: an ``aimem.commands`` entry point (the client never imports sync)."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from datetime import timedelta
from typing import Any

import click

from aios_memory.client.cli.kit import CONTEXT, parse_duration, read_token, tls_client_options
from aios_memory.client.client import DEFAULT_URI
from aios_memory.schemas import DEFAULT_TENANT, TIERS, AiosMemoryError

from .consolidation import ConsolidationJob
from .daemon import Schedule, run_daemon, run_periodically
from .replica import DEFAULT_SYNC_TIMEOUT, FlightReplica
from .session import SyncReport, sync_once

__all__ = ["sync"]

# Rounds shorter than this print no progress line.
_PROGRESS_AFTER_S = 1.0


def _summary(report: SyncReport) -> str:
    verb = "would send" if report.dry_run else "sent"
    back = "would receive" if report.dry_run else "received"
    return (
        f"sync {report.tenant} [{', '.join(report.tiers)}]: {verb} {report.sent} "
        f"({report.tombstones_sent} deletions), {back} {report.received} "
        f"({report.tombstones_received} deletions), {report.conflicts} conflicts resolved; "
        f"{report.round_trips} round trips, {report.bytes_sent} B out / "
        f"{report.bytes_received} B in, {report.seconds:.3f} s"
    )


class _Progress:
    """Prints a progress line on stderr once a round has run for a second."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.shown = False

    def __call__(self, report: SyncReport) -> None:
        if time.monotonic() - self.started < _PROGRESS_AFTER_S:
            return
        self.shown = True
        click.echo(
            f"\rsync: {report.round_trips} round trips, {report.sent} records out, "
            f"{report.received} in ...",
            nl=False,
            err=True,
        )

    def done(self) -> None:
        if self.shown:
            click.echo("", err=True)


@click.command(context_settings=CONTEXT)
@click.option(
    "--local",
    "local_uri",
    envvar="AIMEM_SERVER",
    default=DEFAULT_URI,
    show_default=True,
    help="This device's memory server [env AIMEM_SERVER].",
)
@click.option(
    "--cloud",
    "cloud_uri",
    envvar="AIMEM_CLOUD",
    required=True,
    help="The cloud endpoint (`aimem serve --role cloud`) [env AIMEM_CLOUD].",
)
@click.option(
    "--local-token", envvar="AIMEM_TOKEN", help="Token of the local server [env AIMEM_TOKEN]."
)
@click.option(
    "--local-token-file",
    envvar="AIMEM_TOKEN_FILE",
    type=click.Path(dir_okay=False),
    help="File holding the local token, e.g. DATA/token [env AIMEM_TOKEN_FILE].",
)
@click.option(
    "--cloud-token",
    envvar="AIMEM_CLOUD_TOKEN",
    help="Token of the cloud endpoint [env AIMEM_CLOUD_TOKEN].",
)
@click.option(
    "--cloud-token-file",
    envvar="AIMEM_CLOUD_TOKEN_FILE",
    type=click.Path(dir_okay=False),
    help="File holding the cloud token [env AIMEM_CLOUD_TOKEN_FILE].",
)
@click.option("--tenant", default=DEFAULT_TENANT, show_default=True, help="Whose memories.")
@click.option(
    "--tier",
    "tiers",
    type=click.Choice(TIERS),
    multiple=True,
    help="Only this tier (repeatable); default: the tiers the local server syncs.",
)
@click.option("--once", is_flag=True, help="Run one round and exit.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds between rounds when looping.",
)
@click.option("--dry-run", is_flag=True, help="Report the difference, change nothing (one round).")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_SYNC_TIMEOUT,
    show_default=True,
    help="Seconds one round may take.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print each round's report as one JSON object per line on stdout.",
)
@click.option(
    "--consolidate-every",
    callback=parse_duration,
    help="Also consolidate this device's idle sessions, this long after each round, e.g. 1h "
    "(off by default): "
    "each becomes a summary plus its facts (see `aimem consolidate --help`), by the model "
    "AIMEM_LLM_* names (default: the embedded one). Runs beside the sync rounds; a stop "
    "lets the session under way finish.",
)
@click.option(
    "--consolidate-idle",
    callback=parse_duration,
    default="1h",
    show_default=True,
    help="Consolidate only sessions with no new turn for this long.",
)
@click.option(
    "--consolidate-tier",
    type=click.Choice(TIERS),
    default="working",
    show_default=True,
    help="Tier whose sessions are consolidated (results go to long_term).",
)
@click.option(
    "--consolidate-demote",
    default="keep",
    show_default=True,
    help="What happens to a consolidated session's raw turns: keep, recompress or "
    "forget-after=30d.",
)
@tls_client_options("--local-tls-", "AIMEM_TLS_", "the local server")
@tls_client_options("--cloud-tls-", "AIMEM_CLOUD_TLS_", "the cloud endpoint")
def sync(
    local_uri: str,
    cloud_uri: str,
    local_token: str | None,
    local_token_file: str | None,
    cloud_token: str | None,
    cloud_token_file: str | None,
    tenant: str,
    tiers: tuple[str, ...],
    once: bool,
    interval: float,
    dry_run: bool,
    timeout: float,
    as_json: bool,
    consolidate_every: timedelta | None,
    consolidate_idle: timedelta,
    consolidate_tier: str,
    consolidate_demote: str,
    **tls: str | None,
) -> None:
    """Keep this device's memory server and the cloud endpoint in step, exchanging the difference.

    Without --once it syncs every --interval seconds, backs off after errors
    and stops cleanly on SIGTERM or Ctrl-C. core and working never leave the
    device unless both servers were started with --sync-tier for them.

    With --consolidate-every it also consolidates sessions idle longer than
    --consolidate-idle, on this device, where the keys of private memories are.

    \b
    Example:
        aimem sync --cloud grpc://cloud.example:8815 --cloud-token-file ~/.aimem/cloud-token \\
                   --local-token-file ~/.aimem/token --once --json
        aimem sync --cloud grpc://cloud.example:8815 --consolidate-every 1h ...
        aimem sync --cloud grpc+tls://cloud.example:8815 --cloud-tls-ca cloud-ca.crt \\
                   --cloud-tls-client-cert device.crt --cloud-tls-client-key device.key ...
    """
    if consolidate_every is not None and (once or dry_run):
        raise click.UsageError("--consolidate-every is for the daemon: leave out --once/--dry-run")
    local_secret = read_token(local_token, local_token_file, "--local-token-file")
    job = None
    if consolidate_every is not None:
        job = ConsolidationJob(
            local_uri,
            local_secret,
            tenant=tenant,
            tier=consolidate_tier,
            idle=consolidate_idle,
            demote=consolidate_demote,
            tls={k: tls[f"local_tls_{k}"] for k in ("ca", "client_cert", "client_key")},
        )
    local = FlightReplica(
        local_uri,
        local_secret,
        timeout=timeout,
        label="the local server",
        token_hint="--local-token(-file) / AIMEM_TOKEN(_FILE)",
        **_tls_of(tls, "local"),
    )
    cloud = FlightReplica(
        cloud_uri,
        read_token(cloud_token, cloud_token_file, "--cloud-token-file"),
        timeout=timeout,
        label="the cloud endpoint",
        token_hint="--cloud-token(-file) / AIMEM_CLOUD_TOKEN(_FILE)",
        **_tls_of(tls, "cloud"),
    )
    options = {"tenant": tenant, "tiers": list(tiers) or None}
    with local, cloud:
        if once or dry_run:
            _print(_one_round(local, cloud, dry_run, options), as_json)
            return
        _loop(local, cloud, Schedule(interval=interval), options, as_json, job, consolidate_every)


def _tls_of(options: dict[str, str | None], side: str) -> dict[str, Any]:
    """``FlightReplica``'s TLS arguments from the ``--{side}-tls-*`` options."""
    return {
        "tls_root_certs": options[f"{side}_tls_ca"],
        "tls_cert": options[f"{side}_tls_client_cert"],
        "tls_key": options[f"{side}_tls_client_key"],
        "tls_flags": f"--{side}-tls-",
    }


def _one_round(
    local: FlightReplica, cloud: FlightReplica, dry_run: bool, options: dict[str, Any]
) -> SyncReport:
    progress = _Progress()
    try:
        return sync_once(local, cloud, dry_run=dry_run, progress=progress, **options)
    except AiosMemoryError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        progress.done()


def _print(report: SyncReport, as_json: bool) -> None:
    click.echo(json.dumps(report.to_json()) if as_json else _summary(report))


def _loop(
    local: FlightReplica,
    cloud: FlightReplica,
    schedule: Schedule,
    options: dict[str, Any],
    as_json: bool,
    job: ConsolidationJob | None = None,
    every: timedelta | None = None,
) -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    consolidating = None
    if job is not None and every is not None:
        consolidating = _start_consolidation(job, every, stop)

    def on_error(exc: AiosMemoryError, wait: float) -> None:
        click.echo(f"aimem sync: {exc.message} (retrying in {wait:.1f} s)", err=True)

    def on_report(report: SyncReport) -> None:
        _print(report, as_json)
        sys.stdout.flush()

    rounds = run_daemon(
        local, cloud, stop, schedule=schedule, on_report=on_report, on_error=on_error, **options
    )
    if consolidating is not None:
        consolidating.join()  # the session under way finishes; its put is whole either way
    click.echo(f"aimem sync: stopped after {rounds} rounds", err=True)


def _start_consolidation(
    job: ConsolidationJob, every: timedelta, stop: threading.Event
) -> threading.Thread:
    def on_error(exc: AiosMemoryError, wait: float) -> None:
        click.echo(f"aimem sync: consolidation: {exc.message} (retrying in {wait:.1f} s)", err=True)

    def on_result(summary: str) -> None:
        click.echo(f"aimem sync: consolidation: {summary}", err=True)

    schedule = Schedule(interval=every.total_seconds())
    thread = threading.Thread(
        target=run_periodically,
        args=(lambda: job.run(stop.is_set), stop),
        kwargs={"schedule": schedule, "on_result": on_result, "on_error": on_error},
        name="aimem-consolidate",
    )
    thread.start()
    return thread
