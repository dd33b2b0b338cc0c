"""``aimem serve``: an ``aimem.commands`` entry point, so the thin client never imports it."""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import signal
import sys
import threading
from pathlib import Path

import click

from aios_memory.flight_server._running import start_server
from aios_memory.flight_server.embedder import (
    DEFAULT_EMBED_BUDGET_SECONDS,
    DEFAULT_PIECES,
    EMBEDDERS,
)
from aios_memory.flight_server.lake.uri import parse_lake
from aios_memory.flight_server.settings import SETTINGS_HELP, VECTOR_INDEXES, ServerSettings
from aios_memory.flight_server.store.duckdb_store import DB_FILE
from aios_memory.flight_server.store.integrity import storage_error
from aios_memory.schemas import (
    DEFAULT_PORT,
    DEFAULT_SYNC_TIERS,
    SERVER_ROLES,
    TIERS,
    AiosMemoryError,
)

__all__ = ["serve"]

_PEM_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--data",
    "data_dir",
    required=True,
    envvar="AIMEM_DATA",
    type=click.Path(file_okay=False, path_type=Path),
    help=SETTINGS_HELP["data_dir"],
)
@click.option("--host", default="127.0.0.1", show_default=True, help=SETTINGS_HELP["host"])
@click.option(
    "--port", default=DEFAULT_PORT, show_default=True, type=int, help=SETTINGS_HELP["port"]
)
@click.option("--token", envvar="AIMEM_TOKEN", help=SETTINGS_HELP["token"])
@click.option(
    "--embedder",
    type=click.Choice(EMBEDDERS),
    default="local",
    show_default=True,
    envvar="AIMEM_EMBEDDER",
    help=SETTINGS_HELP["embedder"],
)
@click.option("--embed-model", envvar="AIMEM_EMBED_MODEL", help=SETTINGS_HELP["embed_model"])
@click.option(
    "--embed-base-url",
    envvar="AIMEM_EMBED_BASE_URL",
    help=SETTINGS_HELP["embed_base_url"] + " (key from AIMEM_EMBED_API_KEY or OPENAI_API_KEY)",
)
@click.option(
    "--embed-max-pieces",
    default=DEFAULT_PIECES,
    show_default=True,
    type=click.IntRange(min=1),
    envvar="AIMEM_EMBED_MAX_PIECES",
    help=SETTINGS_HELP["embed_max_pieces"],
)
@click.option(
    "--embed-budget-seconds",
    default=DEFAULT_EMBED_BUDGET_SECONDS,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    envvar="AIMEM_EMBED_BUDGET_SECONDS",
    help=SETTINGS_HELP["embed_budget_seconds"],
)
@click.option(
    "--vector-index",
    type=click.Choice(VECTOR_INDEXES),
    default="ivf",
    show_default=True,
    envvar="AIMEM_VECTOR_INDEX",
    help=SETTINGS_HELP["vector_index"] + " [env AIMEM_VECTOR_INDEX]",
)
@click.option(
    "--checkpoint-seconds",
    default=300.0,
    show_default=True,
    type=float,
    help=SETTINGS_HELP["checkpoint_seconds"],
)
@click.option(
    "--role",
    type=click.Choice(SERVER_ROLES),
    default="device",
    show_default=True,
    envvar="AIMEM_ROLE",
    help=SETTINGS_HELP["role"],
)
@click.option(
    "--sync-tier",
    "sync_tiers",
    type=click.Choice(TIERS),
    multiple=True,
    help=SETTINGS_HELP["sync_tiers"] + "; repeat for each tier, e.g. "
    "--sync-tier long_term --sync-tier shared --sync-tier core",
)
@click.option(
    "--clock-offset-ms", default=0, type=int, hidden=True, help=SETTINGS_HELP["clock_offset_ms"]
)
@click.option(
    "--keys",
    "keys_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help=SETTINGS_HELP["keys_dir"] + "; refused with --role cloud",
)
@click.option("--lake", envvar="AIMEM_LAKE", help=SETTINGS_HELP["lake"] + " [env AIMEM_LAKE]")
@click.option(
    "--compact-seconds",
    default=0.0,
    show_default=True,
    type=float,
    help=SETTINGS_HELP["compact_seconds"],
)
@click.option(
    "--compact-waste",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0.0, 1.0),
    envvar="AIMEM_COMPACT_WASTE",
    help=SETTINGS_HELP["compact_waste"] + " [env AIMEM_COMPACT_WASTE]",
)
@click.option(
    "--max-staleness-ms",
    default=0.0,
    show_default=True,
    type=float,
    help=SETTINGS_HELP["max_staleness_ms"],
)
@click.option(
    "--tls-cert",
    envvar="AIMEM_TLS_CERT",
    type=_PEM_FILE,
    help=SETTINGS_HELP["tls_cert"] + " [env AIMEM_TLS_CERT]",
)
@click.option(
    "--tls-key",
    envvar="AIMEM_TLS_KEY",
    type=_PEM_FILE,
    help=SETTINGS_HELP["tls_key"] + " [env AIMEM_TLS_KEY]",
)
@click.option(
    "--tls-client-ca",
    envvar="AIMEM_TLS_CLIENT_CA",
    type=_PEM_FILE,
    help=SETTINGS_HELP["tls_client_ca"] + " [env AIMEM_TLS_CLIENT_CA]",
)
@click.option(
    "--accept-empty",
    is_flag=True,
    envvar="AIMEM_ACCEPT_EMPTY",
    help=SETTINGS_HELP["accept_empty"] + " [env AIMEM_ACCEPT_EMPTY]",
)
@click.option(
    "--skip-integrity-check",
    is_flag=True,
    envvar="AIMEM_SKIP_INTEGRITY_CHECK",
    help=SETTINGS_HELP["skip_integrity_check"] + " [env AIMEM_SKIP_INTEGRITY_CHECK]",
)
def serve(
    data_dir: Path,
    host: str,
    port: int,
    token: str | None,
    embedder: str,
    embed_model: str | None,
    embed_base_url: str | None,
    embed_max_pieces: int,
    embed_budget_seconds: float,
    vector_index: str,
    checkpoint_seconds: float,
    role: str,
    sync_tiers: tuple[str, ...],
    clock_offset_ms: int,
    keys_dir: Path | None,
    lake: str | None,
    compact_seconds: float,
    compact_waste: float,
    max_staleness_ms: float,
    accept_empty: bool,
    skip_integrity_check: bool,
    **tls: Path | None,
) -> None:
    """Run a memory server on the embedded store in DATA, or, with --lake, one replica of a
    cloud endpoint whose records live in a lake shared by every replica (DATA: its cache).

    \b
    Example:
        aimem serve --data ~/.aimem                          # a device
        aimem serve --data /srv/aimem --role cloud --host 0.0.0.0 --port 8815 \\
                    --tls-cert cloud.crt --tls-key cloud.key --tls-client-ca devices-ca.crt
        aimem serve --data /var/cache/aimem-r1 --role cloud \\
                    --lake "s3://memories/prod?endpoint=https://s3.example.net"
    """
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    _dump_stacks_on_usr1()
    try:
        settings = ServerSettings(
            data_dir=data_dir,
            host=host,
            port=port,
            token=token,
            embedder=embedder,
            embed_model=embed_model,
            embed_base_url=embed_base_url,
            embed_max_pieces=embed_max_pieces,
            embed_budget_seconds=embed_budget_seconds,
            vector_index=vector_index,
            checkpoint_seconds=checkpoint_seconds,
            role=role,
            sync_tiers=sync_tiers or DEFAULT_SYNC_TIERS,
            clock_offset_ms=clock_offset_ms,
            keys_dir=keys_dir,
            lake=lake,
            compact_seconds=compact_seconds,
            compact_waste=compact_waste,
            max_staleness_ms=max_staleness_ms,
            accept_empty=accept_empty,
            skip_integrity_check=skip_integrity_check,
            tls_cert=tls["tls_cert"],
            tls_key=tls["tls_key"],
            tls_client_ca=tls["tls_client_ca"],
        )
        with start_server(settings) as running:
            stop = _stop_on_signal()  # after the start: Flight's own handlers come with it
            where = running.token_file or "given by --token/AIMEM_TOKEN"
            where_from = parse_lake(lake).describe() if lake else str(data_dir)
            click.echo(
                f"aimem: serving {where_from} on {running.uri} as a {role} "
                f"(syncs {', '.join(settings.sync_tiers)})",
                err=True,
            )
            click.echo(f"aimem: token: {where}", err=True)
            _echo_tls(settings)
            if settings.keys_dir is not None:
                click.echo(
                    f"aimem: end-to-end encrypted memories are opened (to be indexed "
                    f"here) with the keys in {settings.keys_dir}",
                    err=True,
                )
            click.echo(
                f"aimem: try  AIMEM_SERVER={running.uri} AIMEM_TOKEN_FILE={where} aimem stats",
                err=True,
            )
            _wait_for(stop)
            click.echo("aimem: stopping (saving indexes)", err=True)
    except AiosMemoryError as exc:
        raise click.ClickException(exc.message) from None
    except Exception as exc:
        # A full disk or an I/O error while starting or stopping: one line, not a traceback.
        error = storage_error(exc, data_dir / DB_FILE)
        if error is None:
            raise
        raise click.ClickException(error.message) from None


def _dump_stacks_on_usr1() -> None:
    """``kill -USR1 PID`` writes every thread's stack to stderr: what a stuck server is
    doing. Skipped where stderr is no file (a test runner's capture)."""
    # io.UnsupportedOperation (no file behind stderr) is an OSError.
    with contextlib.suppress(AttributeError, ValueError, OSError):
        faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)


def _echo_tls(settings: ServerSettings) -> None:
    if settings.tls:
        click.echo(
            "aimem: TLS: clients pass --tls-ca with the CA that signed "
            f"{settings.tls_cert} (or trust it system-wide)",
            err=True,
        )
    if settings.tls_client_ca is not None:
        click.echo(
            "aimem: mutual TLS: clients must present a certificate signed by "
            f"{settings.tls_client_ca} (--tls-client-cert/--tls-client-key)",
            err=True,
        )


def _stop_on_signal() -> threading.Event:
    """An event set by SIGINT or SIGTERM. Installed once the server is up (starting it
    installs Flight's own handlers) but before the address is printed, so a supervisor that
    stops the server as soon as it reads the address never kills it with the default action."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _wait_for(stop: threading.Event) -> None:
    while not stop.wait(1.0):
        pass
