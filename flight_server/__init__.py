"""The memory server: Arrow Flight over a ``Store`` (DuckDB + hnswlib + tantivy by default)."""

from aios_memory.flight_server.store.base import Store
from aios_memory.flight_server.store.duckdb_store import DuckDBStore

from ._running import RunningServer, start_server
from .embedder import Embedder, LocalE5Embedder, OpenAIEmbedder, make_embedder
from .server import MemoryFlightServer
from .settings import SETTINGS_HELP, ServerSettings

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
