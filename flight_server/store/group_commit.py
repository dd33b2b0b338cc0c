"""Group commit: concurrent writers share one durable commit instead of queueing for many.

A commit to object storage costs tens of milliseconds whatever its size
(``bench/spikes/spike_lance.py``), so one-memory puts arriving together should ride
in one. The first writer to arrive becomes the leader: it takes everything
pending, commits it with one call, hands each writer its own result (or the
error), and goes again while more arrived meanwhile. Writers that arrive
during a commit wait for the next one. No thread of its own, no timer: a lone
writer commits at once, and a busy one batches as much as the commit takes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["GroupCommit"]

Item = TypeVar("Item")
Result = TypeVar("Result")


class _Waiter(Generic[Item, Result]):
    def __init__(self, item: Item) -> None:
        self.item = item
        self.done = threading.Event()
        self.result: Result | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[Item, Result]):
    """``submit(item)`` returns ``commit(items)[i]`` for its item, from a shared commit.

    ``commit`` gets every item pending at once and returns one result per item,
    in order; a result that is an exception is raised to that item's writer alone.
    If ``commit`` raises, every item of that group gets the error.
    """

    def __init__(
        self,
        commit: Callable[[list[Item]], Sequence[Result | BaseException]],
        max_items: int = 256,
    ) -> None:
        self._commit = commit
        self._max_items = max_items
        self._lock = threading.Lock()
        self._pending: list[_Waiter[Item, Result]] = []
        self._leading = False
        self.groups = 0  # commits made (for tests and benchmarks)
        self.items = 0

    def submit(self, item: Item) -> Result:
        waiter: _Waiter[Item, Result] = _Waiter(item)
        with self._lock:
            self._pending.append(waiter)
            lead = not self._leading
            self._leading = True
        if lead:
            self._lead()
        waiter.done.wait()
        if waiter.error is not None:
            raise waiter.error
        return waiter.result  # type: ignore[return-value]

    def _lead(self) -> None:
        while True:
            with self._lock:
                group = self._pending[: self._max_items]
                del self._pending[: len(group)]
                if not group:
                    self._leading = False
                    return
            self._run(group)

    def _run(self, group: list[_Waiter[Item, Result]]) -> None:
        try:
            results = self._commit([w.item for w in group])
            for waiter, result in zip(group, results, strict=True):
                if isinstance(result, BaseException):
                    waiter.error = result
                else:
                    waiter.result = result
        except BaseException as exc:  # each writer gets the error; none is acknowledged
            for waiter in group:
                waiter.error = exc
        finally:
            self.groups += 1
            self.items += len(group)
            for waiter in group:
                waiter.done.set()
