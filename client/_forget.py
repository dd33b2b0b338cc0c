"""``forget`` of any number of ids, in as few calls as the server allows, reporting the truth.

Each call is one transaction on the server. A list too long for one call goes
in several; if a later call fails, the caller learns exactly which ids were
forgotten, which call's outcome is unknown, and which were never sent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aios_memory.schemas import (
    DEFAULT_LIMITS,
    AiosMemoryError,
    IdsRequest,
    IncompleteWriteError,
    scene_id_of,
)

__all__ = ["forget_ids", "ids_per_forget"]

ActionJson = Callable[[str, bytes], dict[str, Any]]


def ids_per_forget(max_ids_per_call: int = DEFAULT_LIMITS.max_ids_per_call) -> int:
    """How many memories one ``forget`` call takes: each goes with its scene record's id."""
    return max(1, max_ids_per_call // 2)


def forget_ids(action: ActionJson, tenant: str, asked: list[str]) -> int:
    """Forget ``asked`` (distinct ids) of ``tenant``; return how many were live.

    Raises
    ------
    IncompleteWriteError
        A call failed after earlier ones succeeded. ``detail`` holds ``forgotten``
        (ids forgotten), ``done`` (ids whose calls succeeded, live or not),
        ``unknown`` (the failed call's ids: forgotten or not, the connection cannot
        say) and ``not_done`` (never sent); ``cause`` is the failed call's code.
        Forgetting ``unknown + not_done`` again is safe: forget is idempotent.
    AiosMemoryError
        The first call failed: nothing was forgotten by this call (or, after a
        connection error, its outcome is unknown, exactly as for one call).
    """
    size = ids_per_forget()
    forgotten: list[str] = []
    for start in range(0, len(asked), size):
        part = asked[start : start + size]
        wanted = [i for memory_id in part for i in (memory_id, scene_id_of(memory_id))]
        body = IdsRequest(tenant=tenant, ids=wanted).to_bytes()
        try:
            answer = action("forget", body)
        except AiosMemoryError as exc:
            if start == 0:
                raise
            raise _incomplete(exc, asked, start, size, forgotten) from exc
        live = set(answer.get("ids", []))
        forgotten += [i for i in part if i in live]
    return len(forgotten)


def _incomplete(
    cause: AiosMemoryError, asked: list[str], start: int, size: int, forgotten: list[str]
) -> IncompleteWriteError:
    unknown, not_done = asked[start : start + size], asked[start + size :]
    return IncompleteWriteError(
        f"forget stopped after {start} of {len(asked)} ids: {len(forgotten)} were forgotten, "
        f"the call for the next {len(unknown)} failed ({cause.code}: {cause.message}) and "
        f"{len(not_done)} were not sent. Forget `unknown` and `not_done` (in this error's "
        "detail) again: forgetting twice is safe.",
        forgotten=forgotten,
        done=asked[:start],
        unknown=unknown,
        not_done=not_done,
        cause=cause.code,
    )
