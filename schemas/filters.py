"""The ``where`` filter: its shape, and the type of every value for every field and operator.

A filter that passes ``validate_where`` compiles to SQL whose every parameter
matches its column's type, so no bad filter reaches a query engine (where it
would fail as an internal error). Filters are flat by construction (key ->
scalar, or key -> operator -> scalar or list of scalars), so their depth is
bounded at three levels; ``check_json_depth`` bounds free-form documents
(metadata) that have no such shape.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from .errors import InvalidFilterError, LimitExceededError
from .record import TIERS

__all__ = [
    "FIELD_FILTERS",
    "FILTER_OPERATORS",
    "ORDER_OPERATORS",
    "TIME_FIELDS",
    "MAX_FILTER_KEYS",
    "MAX_IN_VALUES",
    "validate_where",
    "check_json_depth",
]

# Record fields a `where` may name directly; any other key is a metadata key.
# ``occurred_at`` is the metadata key OCCURRED_AT_KEY (no record column until storage v2,
# issue 18), compared as a time.
FIELD_FILTERS = (
    "id",
    "tier",
    "agent",
    "session",
    "kind",
    "privacy",
    "created_at",
    "occurred_at",
    "embed_model",
)
TIME_FIELDS = ("created_at", "occurred_at")
FILTER_OPERATORS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin")
ORDER_OPERATORS = ("$gt", "$gte", "$lt", "$lte")
_SCALARS = (str, int, float, bool, type(None))
_MAX_KEY = 128
# A filter's size: 20,000 keys took 6 s of SQL and 60,000 outlasted any timeout.
MAX_FILTER_KEYS = 64
MAX_IN_VALUES = 10_000
# Integers travel to SQL as BIGINT; a larger one fails the engine's conversion.
_INT64 = (-(2**63), 2**63 - 1)
# created_at as epoch seconds: Python's datetime spans the years 1 to 9999.
_EPOCH_RANGE = (-62_135_596_800, 253_402_300_799)
_STRING_FIELDS = ("id", "agent", "session", "kind", "embed_model")


def validate_where(where: Any) -> None:
    """Raise InvalidFilterError unless ``where`` is a filter this version understands.

    A filter is a JSON object. Keys in FIELD_FILTERS name record fields; any
    other key names a metadata key (``metadata.`` may prefix it). A value is a
    scalar (equality) or an object with one or more FILTER_OPERATORS. All keys
    must hold (AND). Each value must suit its field: a string for ``id``,
    ``agent``, ``session``, ``kind`` and ``embed_model``; a tier name for
    ``tier``; an integer for ``privacy``; an ISO 8601 time (UTC without a zone) or
    epoch seconds for ``created_at`` and ``occurred_at`` (when the memory happened,
    ``OCCURRED_AT_KEY`` in its metadata: null for a memory without one, as for any
    metadata key it lacks); any scalar for a metadata key, but one kind (string, number
    or boolean) per ``$in`` list. ``null`` only with ``$eq``/``$ne``/``$in``/``$nin``.
    """
    if where is None:
        return
    if not isinstance(where, dict):
        raise InvalidFilterError("where must be a JSON object of key -> condition")
    if len(where) > MAX_FILTER_KEYS:
        raise LimitExceededError(
            f"where has {len(where)} keys; the limit is {MAX_FILTER_KEYS}", limit=MAX_FILTER_KEYS
        )
    for key, condition in where.items():
        _check_key(key)
        if isinstance(condition, dict):
            _check_operators(key, condition)
        elif isinstance(condition, _SCALARS):
            _check_value(key, "$eq", condition)
        else:
            raise InvalidFilterError(
                f"filter on {key!r} must be a scalar or an operator object", key=key
            )


def _check_key(key: Any) -> None:
    if not isinstance(key, str) or not 0 < len(key) <= _MAX_KEY:
        raise InvalidFilterError(f"filter key {key!r} must be 1-{_MAX_KEY} characters")
    name = key.removeprefix("metadata.")
    if not name or '"' in name or "\\" in name:
        raise InvalidFilterError(
            f"metadata key {name!r} must be non-empty, without quotes or backslashes", key=key
        )


def _check_operators(key: str, condition: dict[str, Any]) -> None:
    if not condition:
        raise InvalidFilterError(f"filter on {key!r} has no operator", key=key)
    for op, value in condition.items():
        if op not in FILTER_OPERATORS:
            raise InvalidFilterError(
                f"unknown operator {op!r} on {key!r}; use {', '.join(FILTER_OPERATORS)}", key=key
            )
        if op not in ("$in", "$nin"):
            if not isinstance(value, _SCALARS):
                raise InvalidFilterError(f"{op} on {key!r} takes a scalar", key=key)
            _check_value(key, op, value)
            continue
        _check_list(key, op, value)


def _check_list(key: str, op: str, value: Any) -> None:
    if not isinstance(value, list):
        raise InvalidFilterError(f"{op} on {key!r} takes a list of scalars", key=key)
    if len(value) > MAX_IN_VALUES:
        raise LimitExceededError(
            f"{op} on {key!r} lists {len(value)} values; the limit is {MAX_IN_VALUES}",
            key=key,
            limit=MAX_IN_VALUES,
        )
    for item in value:
        if not isinstance(item, _SCALARS):
            raise InvalidFilterError(f"{op} on {key!r} takes a list of scalars", key=key)
        _check_value(key, op, item)
    kinds = {_kind(item) for item in value if item is not None}
    if len(kinds) > 1:
        raise InvalidFilterError(
            f"{op} on {key!r} mixes {' and '.join(sorted(kinds))} values; give one kind",
            key=key,
        )


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    return "number" if isinstance(value, (int, float)) else "string"


def _check_value(key: str, op: str, value: Any) -> None:
    """Raise unless one scalar ``value`` suits field ``key`` under ``op``."""
    if value is None:
        if op in ORDER_OPERATORS:
            raise InvalidFilterError(f"{op} on {key!r} cannot compare with null", key=key)
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidFilterError(f"filter value on {key!r} must be a finite number", key=key)
    if _is_int(value) and not _INT64[0] <= value <= _INT64[1]:
        raise InvalidFilterError(f"integer on {key!r} does not fit in 64 bits", key=key)
    if key in _STRING_FIELDS:
        _expect(isinstance(value, str), key, op, value, "a string")
    elif key == "tier":
        _expect(isinstance(value, str), key, op, value, "a tier name")
        if op not in ORDER_OPERATORS and value not in TIERS:
            raise InvalidFilterError(
                f"unknown tier {value!r} in the filter; tiers are {', '.join(TIERS)}", key=key
            )
    elif key == "privacy":
        _expect(_is_int(value), key, op, value, "an integer privacy level (0..3)")
    elif key in TIME_FIELDS:
        _check_time(key, op, value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _expect(ok: bool, key: str, op: str, value: Any, what: str) -> None:
    if not ok:
        raise InvalidFilterError(
            f"{op} on {key!r} needs {what}, not {type(value).__name__} {value!r}", key=key
        )


def _check_time(key: str, op: str, value: Any) -> None:
    if isinstance(value, str):
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidFilterError(f"{key} {value!r} is not an ISO 8601 time", key=key) from None
        return
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    _expect(is_number, key, op, value, "an ISO 8601 time or epoch seconds")
    if not _EPOCH_RANGE[0] <= value <= _EPOCH_RANGE[1]:
        raise InvalidFilterError(f"{key} {value!r} is outside the years 1 to 9999", key=key)


def check_json_depth(value: Any, limit: int) -> int | None:
    """The depth at which ``value`` first nests past ``limit`` levels, or None when it does not.

    Iterative, so a document nested thousands deep (which makes ``json.dumps``
    raise RecursionError) is measured without recursion. A scalar is depth 0,
    ``{}`` or ``[]`` depth 1.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth + 1 > limit:
            return depth + 1
        stack.extend((child, depth + 1) for child in children)
    return None
