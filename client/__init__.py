"""The client SDK: ``MemoryClient``, its results, and the ``aimem`` command line.

Imports only pyarrow, numpy, zstandard, cryptography and click, and never the
server. The package is a map of layers, each importing only those below it::

    scenes      episodes that replay (``Scenes(memory)``), built on the SDK
                (``aios_memory.client.Scenes`` loads it when first asked for)
    cli         the ``aimem`` commands; ``cli.kit`` is what every command shares
    client      MemoryClient, with _records, _results, _recompress, importers
    transport   Flight calls, timeouts, TLS, and error translation in one place
    codec       the shared codec layer: payload codecs, dictionaries, lm, sealing,
                keys, vectors (the server imports this layer and nothing else)

The SDK's classes load on first use, so that importing the codec layer (as the
server does) loads nothing else of the client.

>>> from aios_memory.client import MemoryClient          # doctest: +SKIP
>>> with MemoryClient(token="...") as mem:                # doctest: +SKIP
...     ids = mem.remember("Ada prefers tea", tier="core")
...     hits = mem.recall("what does Ada drink?", mode="keyword")
"""

# Names imported here are aliased with a leading underscore: the public ones are __all__.
import importlib as _importlib
import typing as _typing

from aios_memory.schemas import errors as _errors
from aios_memory.schemas.errors import *  # noqa: F403 - every error is part of the SDK

if _typing.TYPE_CHECKING:
    from ._results import Hit as Hit
    from ._results import Memory as Memory
    from ._results import UnopenedMemoryWarning as UnopenedMemoryWarning
    from .client import MemoryClient as MemoryClient
    from .importers import MemoryInput as MemoryInput
    from .scenes import Scenes as Scenes

_LAZY = {"MemoryClient": ".client", "Hit": "._results", "Memory": "._results",
         "UnopenedMemoryWarning": "._results", "MemoryInput": ".importers",
         "Scenes": ".scenes"}  # fmt: skip

__all__ = [*_LAZY, *_errors.__all__]


def __getattr__(name: str) -> _typing.Any:
    """The SDK's classes, imported when first asked for (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
