"""When a memory happened: the reserved metadata key ``OCCURRED_AT_KEY`` and its one form.

``created_at`` says when a memory was stored; imported history (a chat log, a
LoCoMo conversation) happened earlier, and that time is what "what did Ada say
last May?" asks about. Record schema version 1 has no column for it, so it
travels in metadata under ``OCCURRED_AT_KEY`` (a column is storage v2's, issue
18) and filters name it as the field ``occurred_at``.

The stored form is canonical so that every reader (the server's SQL, the
client's ``Memory.occurred_at``) parses it the same way: UTC ISO 8601 with a
``Z``, seconds always, microseconds only when nonzero, e.g.
``2023-05-08T13:56:00Z`` or ``2023-05-08T13:56:00.250000Z``.

>>> canonical_time("2023-05-08T15:56:00+02:00")
'2023-05-08T13:56:00Z'
>>> canonical_time(0)
'1970-01-01T00:00:00Z'
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Any

from .errors import InvalidValueError
from .record import OCCURRED_AT_KEY

__all__ = [
    "OCCURRED_AT_FIELD",
    "canonical_time",
    "parse_canonical_time",
    "check_occurred_at",
]

# The name filters, scans and results give it (the metadata key is OCCURRED_AT_KEY).
OCCURRED_AT_FIELD = "occurred_at"
_CANONICAL = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?Z")
# Epoch seconds Python's datetime can hold (the years 1 to 9999).
_EPOCH_RANGE = (-62_135_596_800, 253_402_300_799)
_WHAT = "a datetime, an ISO 8601 time or epoch seconds"


def canonical_time(value: Any, field: str = OCCURRED_AT_FIELD, row: int | None = None) -> str:
    """``value`` in the stored form (UTC ISO 8601 with ``Z``); raise InvalidValueError naming
    ``field`` when it is not a time.

    Accepts a ``datetime`` (a naive one is taken as UTC), ISO 8601 text (without a
    zone: UTC) or epoch seconds (int or float).
    """
    return _format(_to_datetime(value, field, row))


def _to_datetime(value: Any, field: str, row: int | None) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        moment = _from_text(value, field, row)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        moment = _from_epoch(value, field, row)
    else:
        raise _bad(field, row, f"needs {_WHAT}, not {type(value).__name__} {value!r}")
    if moment.tzinfo is None:  # naive: UTC, as documented
        return moment.replace(tzinfo=timezone.utc)
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:  # 0001-01-01 at +01:00 is before the year 1 in UTC
        raise _bad(field, row, f"{value!r} is outside the years 1 to 9999 in UTC") from None


def _from_text(text: str, field: str, row: int | None) -> datetime:
    try:
        return datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise _bad(field, row, f"{text!r} is not an ISO 8601 time") from None


def _from_epoch(seconds: float, field: str, row: int | None) -> datetime:
    if not (math.isfinite(seconds) and _EPOCH_RANGE[0] <= seconds <= _EPOCH_RANGE[1]):
        raise _bad(field, row, f"{seconds!r} epoch seconds is outside the years 1 to 9999")
    try:
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    except (OverflowError, ValueError, OSError):  # rounds past 9999-12-31 23:59:59.999999
        raise _bad(
            field, row, f"{seconds!r} epoch seconds is outside the years 1 to 9999"
        ) from None


def _format(moment: datetime) -> str:
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if len(text) < 19:  # strftime drops a year's leading zeros on some platforms
        text = f"{moment.year:04d}{text[text.index('-') :]}"
    return text + (f".{moment.microsecond:06d}Z" if moment.microsecond else "Z")


def parse_canonical_time(text: str) -> datetime:
    """The aware UTC ``datetime`` of a stored (canonical) time; ValueError for any other
    text (``check_occurred_at`` keeps those out of the store)."""
    if not isinstance(text, str) or not _CANONICAL.fullmatch(text):
        raise ValueError(f"{text!r} is not a UTC ISO 8601 time like 2023-05-08T13:56:00Z")
    return datetime.fromisoformat(text[:-1]).replace(tzinfo=timezone.utc)


def check_occurred_at(metadata: dict[str, Any], row: int | None = None) -> None:
    """Raise InvalidValueError unless ``metadata``'s ``OCCURRED_AT_KEY`` is absent or a time in
    the stored form (what ``canonical_time`` writes)."""
    if OCCURRED_AT_KEY not in metadata:
        return
    value = metadata[OCCURRED_AT_KEY]
    try:
        parse_canonical_time(value)
    except ValueError:
        raise InvalidValueError(
            f"{OCCURRED_AT_KEY} at row {row} must be a UTC ISO 8601 time like "
            f"2023-05-08T13:56:00Z, not {value!r}; pass occurred_at= to remember",
            field="metadata",
            row=row,
        ) from None


def _bad(field: str, row: int | None, detail: str) -> InvalidValueError:
    if row is None:
        return InvalidValueError(f"{field} {detail}", field=field)
    return InvalidValueError(f"{field} {row} {detail}", field=field, row=row)
