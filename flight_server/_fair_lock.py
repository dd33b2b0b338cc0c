"""A first-come, first-served lock whose waiters can give up.

The passage model is released between windows: with a plain ``threading.Lock`` the long
put that just released it usually takes it straight back, and a short put waiting
behind it starves. Here waiters are served in arrival order, and a waiter checks a
callback (its deadline) while it waits, keeping its place in the queue.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable, Iterator

__all__ = ["FairLock"]


class FairLock:
    """Held by one thread at a time; granted in the order ``hold`` was called."""

    def __init__(self, poll_seconds: float = 0.1) -> None:
        self._changed = threading.Condition()
        self._waiting: deque[object] = deque()
        self._held = False
        self._poll = poll_seconds

    @contextlib.contextmanager
    def hold(self, check: Callable[[], None] = lambda: None) -> Iterator[None]:
        """Wait for the lock in line, calling ``check`` (which may raise) every poll."""
        self._take(check)
        try:
            yield
        finally:
            with self._changed:
                self._held = False
                self._changed.notify_all()

    def _take(self, check: Callable[[], None]) -> None:
        ticket = object()
        with self._changed:
            self._waiting.append(ticket)
            try:
                while self._held or self._waiting[0] is not ticket:
                    if not self._changed.wait(self._poll):
                        check()
            except BaseException:
                self._waiting.remove(ticket)
                self._changed.notify_all()  # the next in line may be free to go now
                raise
            self._waiting.popleft()
            self._held = True
