"""``aimem sync``: an ``aimem.commands`` entry point (the client never imports sync)."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from typing import Any

import click

from aios_memory.client.cli.kit import CONTEXT, read_token, tls_client_options
from aios_memory.client.client import DEFAULT_URI
from aios_memory.schemas import DEFAULT_TENANT, TIERS, AiosMemoryError

from .daemon import Schedule, run_daemon
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
    **tls: str | None,
) -> None:
    """Keep this device's memory server and the cloud endpoint in step, exchanging the difference.

    Without --once it syncs every --interval seconds, backs off after errors
    and stops cleanly on SIGTERM or Ctrl-C. core and working never leave the
    device unless both servers were started with --sync-tier for them.

    \b
    Example:
        aimem sync --cloud grpc://cloud.example:8815 --cloud-token-file ~/.aimem/cloud-token \\
                   --local-token-file ~/.aimem/token --once --json
        aimem sync --cloud grpc+tls://cloud.example:8815 --cloud-tls-ca cloud-ca.crt \\
                   --cloud-tls-client-cert device.crt --cloud-tls-client-key device.key ...
    """
    local = FlightReplica(
        local_uri,
        read_token(local_token, local_token_file, "--local-token-file"),
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
        _loop(local, cloud, Schedule(interval=interval), options, as_json)


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
) -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    def on_error(exc: AiosMemoryError, wait: float) -> None:
        click.echo(f"aimem sync: {exc.message} (retrying in {wait:.1f} s)", err=True)

    def on_report(report: SyncReport) -> None:
        _print(report, as_json)
        sys.stdout.flush()

    rounds = run_daemon(
        local, cloud, stop, schedule=schedule, on_report=on_report, on_error=on_error, **options
    )
    click.echo(f"aimem sync: stopped after {rounds} rounds", err=True)
