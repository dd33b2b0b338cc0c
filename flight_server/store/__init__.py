"""Record storage: what the server keeps durably, and the ``Store`` every backend implements.

::

    base            Store (the interface) and PreparedWrite (a put, validated and decoded)
    duckdb_store    DuckDBStore, the embedded default: records in one DuckDB file, with
                    collaborators for what it derives (SealedVectors, TextBacklog and the
                    background TextBackfill, EmbedModels) and the hybrid search beside it
    versioning      which version of a memory wins (pure), and a put's plan
    rows            row shaping over Arrow (acks, versions, tombstones)
    payloads        decoding incoming payloads for indexing, with the tenant's dictionaries
    sealed_vectors  vectors of sealed records a device opened, kept out of the records
    group_commit    concurrent puts sharing one durable commit (the lake's)

SQL lives here and in ``flight_server.sync``'s bookkeeping, nowhere else. The lake store
(``flight_server.lake``) caches each tenant in a ``DuckDBStore``.
"""

from .base import PreparedWrite, Store, WriteResult
from .duckdb_store import DuckDBStore

__all__ = ["Store", "PreparedWrite", "WriteResult", "DuckDBStore"]
