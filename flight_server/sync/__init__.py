"""The server's half of a sync round (the protocol itself is ``aios_memory.sync.protocol``).

::

    session       SyncSession: one side of one round inside a ``do_exchange`` (the device
                  initiates, the cloud responds and keeps the books as the hub)
    bookkeeping   SyncBookkeeping, the protocol a store implements to be synced, and
                  SyncBook, the DuckDB store's implementation (item sets kept current
                  between rounds, rows by seq, peers, the tombstone horizon)

It imports nothing of ``flight_server.store``: a session talks to a store through
``SyncedStore`` (``session``), and the store composes a ``SyncBook``.
"""

from .bookkeeping import SyncBook, SyncBookkeeping
from .session import SyncedStore, SyncSession

__all__ = ["SyncSession", "SyncedStore", "SyncBookkeeping", "SyncBook"]
