"""Filters (``where`` objects and scan options) compiled to DuckDB SQL with parameters.

Every value travels as a bound parameter; field names come from a fixed
list and metadata keys become a JSON path parameter, so no request text is
ever spliced into SQL.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from aios_memory.schemas import (
    FIELD_FILTERS,
    MAX_CLEARANCE,
    OCCURRED_AT_FIELD,
    OCCURRED_AT_KEY,
    READERS_KEY,
    TIME_FIELDS,
    InvalidFilterError,
    ScanRequest,
    View,
    validate_where,
)

__all__ = ["Sql", "compile_where", "compile_scan", "compile_view"]

_COMPARE = {
    "$eq": "=",
    "$ne": "IS DISTINCT FROM",
    "$gt": ">",
    "$gte": ">=",
    "$lt": "<",
    "$lte": "<=",
}


class Sql:
    """A conjunction of SQL conditions and their parameters."""

    def __init__(self) -> None:
        self.conditions: list[str] = []
        self.params: list[Any] = []

    def add(self, condition: str, *params: Any) -> None:
        self.conditions.append(condition)
        self.params.extend(params)

    def where(self) -> str:
        return " AND ".join(f"({c})" for c in self.conditions) or "TRUE"


def compile_where(sql: Sql, where: dict[str, Any] | None) -> None:
    """Add the conditions of a ``where`` object (see ``schemas.validate_where``).

    Checks it first (cheap, and idempotent): every value then has its column's type,
    so a bad filter is an ``InvalidFilterError``, never an engine error.
    """
    validate_where(where)
    _compile_checked(sql, where)


def _compile_checked(sql: Sql, where: dict[str, Any] | None) -> None:
    # The conditions this module builds itself (a scan's ids and tiers, a view's tiers)
    # were checked as a request; an id list may be longer than a filter's $in may be.
    for key, condition in (where or {}).items():
        ops = condition if isinstance(condition, dict) else {"$eq": condition}
        for op, value in ops.items():
            _compile_one(sql, key, op, value)


# occurred_at lives in metadata (storage v2, issue 18, gives it a column); stored times are
# canonical (``schemas.occurred``), so the cast fails only for rows from before the check.
_OCCURRED_AT = (
    "TRY_CAST(json_extract_string(metadata, ?) AS TIMESTAMPTZ)",
    [f'$."{OCCURRED_AT_KEY}"'],
)


def _column(key: str, value: Any) -> tuple[str, list[Any]]:
    if key.startswith("metadata."):
        key = key[len("metadata.") :]
    elif key == OCCURRED_AT_FIELD:
        return _OCCURRED_AT[0], list(_OCCURRED_AT[1])
    elif key in FIELD_FILTERS:
        return key, []
    path = "$." + _json_key(key)
    if isinstance(value, bool):
        return "TRY_CAST(json_extract(metadata, ?) AS BOOLEAN)", [path]
    if isinstance(value, (int, float)):
        return "TRY_CAST(json_extract(metadata, ?) AS DOUBLE)", [path]
    return "json_extract_string(metadata, ?)", [path]


def _json_key(key: str) -> str:
    # Quoted JSON path member: any character but a quote or backslash is fine.
    if '"' in key or "\\" in key:
        raise InvalidFilterError(
            f"metadata key {key!r} may not contain quotes or backslashes", key=key
        )
    return f'"{key}"'


def _value(key: str, value: Any) -> Any:
    if key in TIME_FIELDS and isinstance(value, str):
        return _timestamp(value, key)
    if key in TIME_FIELDS and isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=timezone.utc)
    return value


def _compile_one(sql: Sql, key: str, op: str, value: Any) -> None:
    # The column's SQL type follows the value's kind (``validate_where`` allows one kind
    # per list); a null says nothing about it.
    values = value if isinstance(value, list) else [value]
    sample = next((v for v in values if v is not None), None)
    column, path = _column(key, sample)
    if op in ("$in", "$nin"):
        if not value:
            sql.add("FALSE" if op == "$in" else "TRUE")
            return
        marks = ", ".join("?" for _ in value)
        negate = "NOT " if op == "$nin" else ""
        sql.add(f"{column} {negate}IN ({marks})", *path, *[_value(key, v) for v in value])
        return
    if value is None:
        sql.add(f"{column} IS {'NOT ' if op == '$ne' else ''}NULL", *path)
        return
    sql.add(f"{column} {_COMPARE[op]} ?", *path, _value(key, value))


def _timestamp(text: str, key: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidFilterError(f"{key} {text!r} is not an ISO 8601 time", key=key) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def compile_scan(request: ScanRequest) -> Sql:
    """The conditions of a scan ticket (tenant always; tier, ids, times, where if given)."""
    sql = Sql()
    sql.add("tenant = ?", request.tenant)
    if request.tier is not None:
        tiers = [request.tier] if isinstance(request.tier, str) else request.tier
        _compile_checked(sql, {"tier": {"$in": tiers}})
    if request.ids is not None:
        _compile_checked(sql, {"id": {"$in": request.ids}})
    if request.since_hlc is not None:
        sql.add("hlc > ?", request.since_hlc)
    for name in ("kind", "session"):
        if getattr(request, name) is not None:
            sql.add(f"{name} = ?", getattr(request, name))
    if request.created_after is not None:
        sql.add("created_at >= ?", _timestamp(request.created_after, "created_after"))
    if request.created_before is not None:
        sql.add("created_at < ?", _timestamp(request.created_before, "created_before"))
    if not request.include_deleted:
        sql.add("NOT deleted")
    compile_where(sql, request.where)
    return sql


def compile_view(sql: Sql, view: View | None) -> None:
    """The conditions of a caller's view (``schemas.rights``); nothing for a whole tenant."""
    if view is None or view.whole:
        return
    _compile_checked(sql, {"tier": {"$in": list(view.tiers)}})
    if view.max_privacy < MAX_CLEARANCE:
        sql.add("privacy <= ?", view.max_privacy)
    if view.reader is not None:
        sql.add(
            "list_has_any(coalesce(json_extract_string(metadata, ?), []), ?)",
            f'$."{READERS_KEY}"[*]',
            list(view.reader),
        )
