"""Sync between a device's memory server and a cloud endpoint, by range-based reconciliation.

``sync_once(local, cloud)`` runs one round and returns a ``SyncReport``;
``run_daemon`` repeats it on a schedule. ``reconcile`` is the pure protocol
(no I/O, no clock); ``sync/PROTOCOL.md`` specifies the wire.

>>> from aios_memory.sync import FlightReplica, sync_once          # doctest: +SKIP
>>> report = sync_once(FlightReplica("grpc://127.0.0.1:8815", token),
...                    FlightReplica("grpc://cloud.example:8815", cloud_token))
"""

from .daemon import Schedule, backoff_seconds, run_daemon
from .replica import DEFAULT_SYNC_TIMEOUT, Exchange, FlightReplica
from .session import SyncReport, SyncStopped, sync_once

__all__ = [
    "sync_once",
    "SyncReport",
    "SyncStopped",
    "FlightReplica",
    "Exchange",
    "DEFAULT_SYNC_TIMEOUT",
    "run_daemon",
    "Schedule",
    "backoff_seconds",
]
