"""Time-ordered memory ids (UUIDv7, RFC 9562) and hybrid logical clocks."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable

__all__ = ["new_id", "HybridClock", "hlc_pack", "hlc_unpack"]

_COUNTER_BITS = 16
_COUNTER_MASK = (1 << _COUNTER_BITS) - 1


def new_id(now_ms: int | None = None) -> str:
    """A UUIDv7 string: 48 bits of Unix milliseconds, then 74 random bits."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version 7
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a, 12 bits
    value |= 0b10 << 62  # RFC 4122 variant
    value |= rand & ((1 << 62) - 1)  # rand_b
    return str(uuid.UUID(int=value))


def hlc_pack(wall_ms: int, counter: int) -> int:
    """An hlc as one uint64: wall-clock milliseconds, then a 16-bit counter."""
    return (wall_ms << _COUNTER_BITS) | (counter & _COUNTER_MASK)


def hlc_unpack(hlc: int) -> tuple[int, int]:
    """``(wall_ms, counter)`` of an hlc."""
    return hlc >> _COUNTER_BITS, hlc & _COUNTER_MASK


class HybridClock:
    """A hybrid logical clock (Kulkarni et al. 2014), thread-safe.

    ``now()`` never returns the same or a smaller value twice, even when the
    wall clock steps back; ``observe(hlc)`` folds in a remote timestamp so
    that what this replica writes next orders after what it has seen.
    """

    def __init__(self, last: int = 0, wall_ms: Callable[[], int] | None = None) -> None:
        self._last = last
        self._wall_ms = wall_ms or (lambda: int(time.time() * 1000))
        self._lock = threading.Lock()

    def now(self) -> int:
        with self._lock:
            candidate = hlc_pack(self._wall_ms(), 0)
            self._last = max(candidate, self._last + 1)
            return self._last

    def observe(self, remote: int) -> None:
        with self._lock:
            self._last = max(self._last, remote)

    @property
    def last(self) -> int:
        return self._last
