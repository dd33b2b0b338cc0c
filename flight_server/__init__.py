"""The memory server: Arrow Flight over a ``Store`` (DuckDB + hnswlib + tantivy by default).

The package is a map of layers, each importing only those below it (``docs/ARCHITECTURE.md``)::

    cli          ``aimem serve`` and ``aimem token``
    _running     start_server: settings -> store, embedder, auth, Flight server
    server       MemoryFlightServer: decode the request, call the store, encode the answer
    lake         LakeStore: replicas over a lake on object storage ([lake] extra)
    ingest       what happens to a put before any store sees it: validate, decode, embed
    store        records: the Store interface and DuckDBStore
    search | sync | auth
                 hybrid recall over derived indexes | the hub's half of a sync round |
                 tokens, rights and the audit log

From the client it imports only the shared codec layer (``aios_memory.client.codec``) and
the CLI kit; from sync, only the protocol.
"""

# ruff: noqa: E402 - the environment is set before the imports that load native pools
# First, before anything loads a native thread pool: OpenMP threads that sleep when idle
# and BLAS bounded to one thread (the reasons and figures are in _native_threads).
from . import _native_threads

_native_threads.quiet_native_threads()

from ._running import RunningServer, start_server
from .embedder import Embedder, LocalE5Embedder, OpenAIEmbedder, make_embedder
from .server import MemoryFlightServer
from .settings import SETTINGS_HELP, ServerSettings
from .store import DuckDBStore, Store

__all__ = [
    "MemoryFlightServer",
    "ServerSettings",
    "SETTINGS_HELP",
    "Store",
    "DuckDBStore",
    "Embedder",
    "LocalE5Embedder",
    "OpenAIEmbedder",
    "make_embedder",
    "RunningServer",
    "start_server",
]
