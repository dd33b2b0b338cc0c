"""The thin client: ``MemoryClient`` and the ``aimem`` CLI.

Depends only on pyarrow, numpy, zstandard, openai and click (never on the server).

>>> from aios_memory.client import MemoryClient          # doctest: +SKIP
>>> with MemoryClient(token="...") as mem:                # doctest: +SKIP
...     ids = mem.remember("Ada prefers tea", tier="core")
...     hits = mem.recall("what does Ada drink?", mode="keyword")
"""

from aios_memory.schemas.errors import (
    AiosMemoryError,
    AuthenticationError,
    ConnectionFailedError,
    CorruptDataError,
    DeadlineExceededError,
    EmbedderError,
    IncompleteWriteError,
    InvalidFilterError,
    InvalidRequestError,
    InvalidUtf8Error,
    InvalidValueError,
    InvalidVectorError,
    KeyMissingError,
    LimitExceededError,
    NotFoundError,
    SchemaMismatchError,
    ServerInternalError,
    TamperedError,
    TextTooLargeError,
    UnknownTierError,
    UnsupportedVersionError,
)

from ._results import Hit, Memory
from .client import MemoryClient
from .importers import MemoryInput

__all__ = [
    "MemoryClient",
    "Hit",
    "Memory",
    "MemoryInput",
    "AiosMemoryError",
    "ConnectionFailedError",
    "DeadlineExceededError",
    "AuthenticationError",
    "InvalidRequestError",
    "UnsupportedVersionError",
    "SchemaMismatchError",
    "InvalidValueError",
    "UnknownTierError",
    "InvalidUtf8Error",
    "TextTooLargeError",
    "InvalidVectorError",
    "InvalidFilterError",
    "LimitExceededError",
    "IncompleteWriteError",
    "CorruptDataError",
    "TamperedError",
    "KeyMissingError",
    "EmbedderError",
    "NotFoundError",
    "ServerInternalError",
]
