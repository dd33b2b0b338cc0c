"""Sync between a device's memory server and a cloud endpoint, by range-based reconciliation.

``sync_once(local, cloud)`` runs one round and returns a ``SyncReport``;
``run_daemon`` repeats it on a schedule. ``protocol`` is the pure protocol
(no I/O, no clock; ``sync/PROTOCOL.md`` specifies the wire), which the
server's half of a round imports too; the daemon's modules load on first use,
so that importing the protocol loads nothing else::

    cli        ``aimem sync``
    daemon     the schedule, with backoff (``run_daemon``)
    session    one round between two replicas (``sync_once``)
    replica    a memory server reached over Flight (``FlightReplica``)
    protocol   reconciliation and frames

>>> from aios_memory.sync import FlightReplica, sync_once          # doctest: +SKIP
>>> report = sync_once(FlightReplica("grpc://127.0.0.1:8815", token),
...                    FlightReplica("grpc://cloud.example:8815", cloud_token))
"""

# Names imported here are aliased with a leading underscore: the public ones are __all__.
import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from .daemon import (
        Schedule as Schedule,
    )
    from .daemon import (
        backoff_seconds as backoff_seconds,
    )
    from .daemon import (
        run_daemon as run_daemon,
    )
    from .replica import (
        DEFAULT_SYNC_TIMEOUT as DEFAULT_SYNC_TIMEOUT,
    )
    from .replica import (
        Exchange as Exchange,
    )
    from .replica import (
        FlightReplica as FlightReplica,
    )
    from .session import (
        SyncReport as SyncReport,
    )
    from .session import (
        SyncStopped as SyncStopped,
    )
    from .session import (
        sync_once as sync_once,
    )

_LAZY = {"sync_once": ".session", "SyncReport": ".session", "SyncStopped": ".session",
         "FlightReplica": ".replica", "Exchange": ".replica", "DEFAULT_SYNC_TIMEOUT": ".replica",
         "run_daemon": ".daemon", "Schedule": ".daemon", "backoff_seconds": ".daemon"}  # fmt: skip

__all__ = list(_LAZY)


def __getattr__(name: str) -> _typing.Any:
    """The daemon's names, imported when first asked for (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
