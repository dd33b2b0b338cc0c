"""Starting and stopping a server: the wiring shared by ``aimem serve`` and tests."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aios_memory.client.codec.keys import KeyStore
from aios_memory.flight_server.auth.audit import AuditLog
from aios_memory.flight_server.auth.middleware import resolve_token
from aios_memory.flight_server.auth.tls import server_tls_kwargs
from aios_memory.flight_server.auth.tokens import TokenAuthority
from aios_memory.flight_server.lake.uri import parse_lake
from aios_memory.flight_server.search.vector_index import HnswParams
from aios_memory.flight_server.store.base import Store
from aios_memory.flight_server.store.compaction import AUTO_COMPACT_MIN_BYTES
from aios_memory.flight_server.store.duckdb_store import DB_FILE, DuckDBStore
from aios_memory.flight_server.store.integrity import check_data_dir, check_free_space
from aios_memory.schemas import AiosMemoryError, InvalidValueError

from .embedder import make_embedder
from .server import MemoryFlightServer
from .settings import ServerSettings

__all__ = ["RunningServer", "start_server"]

log = logging.getLogger("aios_memory.server")


@dataclass
class RunningServer:
    """A server listening in this process: where it is and how to reach it."""

    uri: str
    token: str
    token_file: Path | None
    data_dir: Path
    server: MemoryFlightServer
    store: Store


def _open_store(settings: ServerSettings) -> Store:
    params = HnswParams(
        m=settings.hnsw_m,
        ef_construction=settings.hnsw_ef_construction,
        ef_search=settings.hnsw_ef_search,
        persist_min=settings.vector_persist_min,
        kind=settings.vector_index,
        nprobe=settings.ivf_nprobe,
    )
    offset = settings.clock_offset_ms
    wall = (lambda: int(time.time() * 1000) + offset) if offset else None
    if settings.lake is not None:
        try:
            from aios_memory.flight_server.lake.store import (
                LakeStore,  # Lance is imported only by a lake replica
            )
        except ImportError as exc:
            raise InvalidValueError(
                f"--lake needs the [lake] extra ({exc.name} is missing): "
                "pip install 'ai-os-memory[lake]'",
                field="lake",
            ) from None
        return LakeStore(
            parse_lake(settings.lake),
            settings.data_dir,
            params,
            settings.sync_tiers,
            wall,
            limits=settings.limits,
            staleness_seconds=settings.max_staleness_ms / 1000,
        )
    return DuckDBStore(settings.data_dir, params, settings.sync_tiers, wall)


def _check_data_dir(settings: ServerSettings) -> None:
    """Refuse a data directory that is full, damaged, in use, or missing its records; before
    anything is written to it (the token file would be a sign of records otherwise)."""
    if settings.lake is not None:  # DATA is a cache of the lake: nothing in it is the truth
        check_free_space(settings.data_dir)
        return
    check_data_dir(
        settings.data_dir,
        DB_FILE,
        accept_empty=settings.accept_empty,
        verify=not settings.skip_integrity_check,
    )


def _scheme(settings: ServerSettings) -> str:
    return "grpc+tls" if settings.tls else "grpc"


def _checkpoints(
    store: Store, every: float, stop: threading.Event, compact_waste: float = 0.0
) -> None:
    while not stop.wait(every):
        try:
            store.checkpoint()
        except Exception:  # keep serving; the next open rebuilds what was not saved
            log.exception("index checkpoint failed")
        if compact_waste > 0:
            compact_if_wasteful(store, compact_waste)


def compact_if_wasteful(store: Store, min_waste: float) -> dict[str, Any] | None:
    """The background trigger: rewrite the embedded store's file when ``min_waste`` of it
    (and at least ``AUTO_COMPACT_MIN_BYTES``) is dead space; None when it cannot."""
    try:
        return store.compact(min_waste, wait=False, min_bytes=AUTO_COMPACT_MIN_BYTES)
    except AiosMemoryError as exc:  # a full disk, a fault: the next checkpoint tries again
        log.warning("no compaction: %s", exc.message)
    except Exception:
        log.exception("compaction failed")
    return None


def _compactions(store: Any, every: float, stop: threading.Event) -> None:
    while not stop.wait(every):
        try:
            # The lease outlives a missed run or two, so the compactor stays the same replica.
            for done in store.compact_tenants(lease_seconds=max(60.0, 3 * every)):
                log.info("compacted %s", done)
        except Exception:  # keep serving; files stay small until the next run
            log.exception("lake compaction failed")


@contextlib.contextmanager
def start_server(settings: ServerSettings) -> Iterator[RunningServer]:
    """Run a memory server in background threads for the duration of the ``with`` block.

    Examples
    --------
    >>> with start_server(ServerSettings(data_dir=tmp, port=0, embedder="none")) as running:
    ...     MemoryClient(running.uri, running.token).remember("hello")
    """
    _check_data_dir(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    token, token_file = resolve_token(settings.data_dir, settings.token)
    store = _open_store(settings)
    try:
        embedder = make_embedder(
            settings.embedder,
            settings.embed_model,
            settings.embed_base_url,
            settings.embed_max_pieces,
        )
        if settings.keys_dir is not None:  # a device: sealed memories are opened to be indexed
            store.payloads.enable_opening(KeyStore(settings.keys_dir), embedder)
        tls = server_tls_kwargs(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
        server = MemoryFlightServer(
            f"{_scheme(settings)}://{settings.host}:{settings.port}",
            store,
            embedder,
            token,
            settings.limits,
            settings.sync_tiers,
            settings.role,
            authority=TokenAuthority(settings.data_dir),
            audit=AuditLog(settings.data_dir),
            tls=tls,
            embed_budget_seconds=settings.embed_budget_seconds,
        )
    except BaseException:
        store.close()
        raise
    stop = threading.Event()
    threads = [threading.Thread(target=server.serve, name="flight-serve", daemon=True)]
    if settings.checkpoint_seconds > 0:
        threads.append(
            threading.Thread(
                target=_checkpoints,
                name="checkpoints",
                daemon=True,
                args=(
                    store,
                    settings.checkpoint_seconds,
                    stop,
                    0.0 if settings.lake else settings.compact_waste,
                ),
            )
        )
    if settings.compact_seconds > 0:
        threads.append(
            threading.Thread(
                target=_compactions,
                name="compactions",
                daemon=True,
                args=(store, settings.compact_seconds, stop),
            )
        )
    for thread in threads:
        thread.start()
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "") else settings.host
    try:
        yield RunningServer(
            f"{_scheme(settings)}://{host}:{server.port}",
            token,
            token_file,
            settings.data_dir,
            server,
            store,
        )
    finally:
        stop.set()
        # First tell puts still embedding to give up (they store nothing and say so):
        # shutdown waits for every handler, and an embedding could take minutes.
        server.stopping.set()
        server.shutdown()
        server.wait()
        store.close()
