"""The sync daemon's schedule: ``sync_once()`` every interval, backing off on errors.

Kept apart from ``sync_once`` (one step) so tests drive single rounds and
this module only adds time: an interval after a good round, an exponential
backoff with jitter after a failed one, and a prompt, clean stop. The same
clock runs the daemon's other periodic work (``run_periodically``: the
opt-in consolidation of idle sessions).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aios_memory.schemas import AiosMemoryError

from .replica import FlightReplica
from .session import SyncReport, SyncStopped, sync_once

__all__ = ["Schedule", "run_daemon", "run_periodically", "backoff_seconds"]


@dataclass(frozen=True)
class Schedule:
    """How often to sync, and how to back off after failures."""

    interval: float = 30.0
    backoff_min: float = 1.0
    backoff_max: float = 300.0


def backoff_seconds(
    failures: int, schedule: Schedule, rand: Callable[[], float] = random.random
) -> float:
    """Wait after ``failures`` failures in a row: doubling from backoff_min, capped, with jitter.

    The jitter (50-100% of the step) keeps many devices from retrying a
    recovering cloud in step.
    """
    step = min(schedule.backoff_max, schedule.backoff_min * 2 ** max(failures - 1, 0))
    return step * (0.5 + 0.5 * rand())


def run_daemon(
    local: FlightReplica,
    cloud: FlightReplica,
    stop: threading.Event,
    *,
    schedule: Schedule = Schedule(),
    on_report: Callable[[SyncReport], Any],
    on_error: Callable[[AiosMemoryError, float], Any],
    **round_options: Any,
) -> int:
    """Sync until ``stop`` is set; returns the number of rounds that finished.

    A round in flight when ``stop`` is set is dropped between messages
    (what it committed stays; the next start resumes).
    """

    def one_round() -> SyncReport:
        return sync_once(local, cloud, should_stop=stop.is_set, **round_options)

    return run_periodically(
        one_round,
        stop,
        schedule=schedule,
        on_result=on_report,
        on_error=on_error,
        stops=(SyncStopped,),
    )


def run_periodically(
    task: Callable[[], Any],
    stop: threading.Event,
    *,
    schedule: Schedule,
    on_result: Callable[[Any], Any],
    on_error: Callable[[AiosMemoryError, float], Any],
    stops: tuple[type[BaseException], ...] = (),
) -> int:
    """``task()`` again and again, ``schedule.interval`` seconds after each good run ends,
    until ``stop`` is set, backing off after errors; returns the number of runs that finished.

    ``task`` is expected to look at ``stop`` itself when it runs long (a sync round
    between messages, consolidation before each session), so a stop is prompt; one of
    ``stops`` raised by it ends the loop.
    """
    finished = failures = 0
    while not stop.is_set():
        try:
            result = task()
        except stops:
            break
        except AiosMemoryError as exc:
            failures += 1
            wait = backoff_seconds(failures, schedule)
            on_error(exc, wait)
            stop.wait(wait)
            continue
        failures, finished = 0, finished + 1
        on_result(result)
        stop.wait(schedule.interval)
    return finished
