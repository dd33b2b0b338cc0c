"""When a memory happened (``occurred_at``) and what it is (``kind``), on the client's side.

``occurred_at`` is stored in metadata under ``OCCURRED_AT_KEY`` in the canonical
form of ``schemas.occurred`` (record schema version 1 has no column for it;
storage v2, issue 18, will). These helpers put it there, read it back, and turn
the SDK's conveniences (``recall(kind=)``, ``scan(occurred_after=)``) into
``where`` conditions the server already understands.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeAlias

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from aios_memory.schemas import (
    OCCURRED_AT_FIELD,
    OCCURRED_AT_KEY,
    InvalidFilterError,
    InvalidValueError,
    canonical_time,
    parse_canonical_time,
)

__all__ = [
    "OccurredAt",
    "OCCURRED_AT_TYPE",
    "spread_occurred_at",
    "with_occurred_at",
    "occurred_at_of",
    "occurred_at_column",
    "where_occurred",
    "where_kind",
]

OccurredAt: TypeAlias = datetime | str | int | float
"""What ``occurred_at=`` takes: a datetime (naive = UTC), ISO 8601 text or epoch seconds."""

OCCURRED_AT_TYPE = pa.timestamp("us", tz="UTC")


def spread_occurred_at(value: Any, count: int) -> list[Any]:
    """One ``occurred_at`` per text: ``value`` for all of them, or a list of one per text."""
    if value is None or isinstance(value, (datetime, str, int, float)):
        return [value] * count
    values = list(value)
    if len(values) != count:
        raise InvalidValueError(
            f"{len(values)} occurred_at values for {count} texts; give one for all or one per text",
            field=OCCURRED_AT_FIELD,
        )
    return values


def with_occurred_at(metadata: Any, occurred_at: Any, row: int) -> Any:
    """``metadata`` with ``OCCURRED_AT_KEY`` set to ``occurred_at`` in the stored form.

    A time already under the key is brought to that form too (metadata copied from
    an export); one that disagrees with ``occurred_at`` is an error, not a silent pick.
    ``metadata`` that is not a dict is returned as is, for the caller's own check.
    """
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        return metadata
    given = metadata.get(OCCURRED_AT_KEY)
    if occurred_at is None and given is None:
        return metadata
    chosen = None if occurred_at is None else canonical_time(occurred_at, row=row)
    if given is not None:
        stored = canonical_time(given, field=OCCURRED_AT_KEY, row=row)
        if chosen is not None and stored != chosen:
            raise InvalidValueError(
                f"occurred_at {row} is {chosen} but its metadata says {OCCURRED_AT_KEY} "
                f"{stored}; give one",
                field=OCCURRED_AT_FIELD,
                row=row,
            )
        chosen = stored
    return {**metadata, OCCURRED_AT_KEY: chosen}


def occurred_at_of(metadata: dict[str, Any]) -> datetime | None:
    """When a memory happened, from its metadata (None when it does not say, or says
    something that is not a time: rows stored before the server checked it)."""
    value = metadata.get(OCCURRED_AT_KEY)
    if value is None:
        return None
    try:
        return parse_canonical_time(value)
    except ValueError:
        try:
            return parse_canonical_time(canonical_time(value))
        except InvalidValueError:
            return None


def occurred_at_column(batch: pa.RecordBatch) -> pa.Array:
    """The ``occurred_at`` of every row of a record batch (timestamp, UTC; null when none).

    Only rows whose metadata text mentions the key are parsed, by Arrow's JSON reader
    (top-level keys only, as the server reads them) and its ISO 8601 cast: a Python
    ``json.loads`` per row made a 20,000-row scan's decoding 1.6x slower. Anything the
    fast way refuses (a stored value from before the server checked them) is read row
    by row, leniently.
    """
    texts = batch.column("metadata")
    mentions = pc.fill_null(pc.match_substring(texts, OCCURRED_AT_KEY), False)
    if not pc.any(mentions).as_py():
        return pa.nulls(batch.num_rows, OCCURRED_AT_TYPE)
    picked = pc.filter(texts, mentions)
    try:
        values = _read_fast(picked)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        values = pa.array([_parsed(t) for t in picked.to_pylist()], type=OCCURRED_AT_TYPE)
    return pc.replace_with_mask(pa.nulls(batch.num_rows, OCCURRED_AT_TYPE), mentions, values)


_TOP_LEVEL = pa_json.ParseOptions(
    explicit_schema=pa.schema([(OCCURRED_AT_KEY, pa.string())]),
    unexpected_field_behavior="ignore",
    newlines_in_values=True,  # metadata written by hand may be pretty-printed
)


def _read_fast(texts: pa.Array) -> pa.Array:
    """The key's top-level values of JSON object texts, cast from canonical ISO 8601."""
    data = "\n".join(texts.to_pylist()).encode()
    table = pa_json.read_json(io.BytesIO(data), parse_options=_TOP_LEVEL)
    if table.num_rows != len(texts):  # never for objects; a guard, not a path
        raise pa.ArrowInvalid("metadata did not read as one object per row")
    column = table.column(0).combine_chunks()
    if not pc.all(pc.fill_null(pc.match_substring_regex(column, _CANONICAL), True)).as_py():
        raise pa.ArrowInvalid("a stored occurred_at is not in the canonical form")
    return column.cast(OCCURRED_AT_TYPE)


_CANONICAL = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?Z$"


def _parsed(text: str) -> datetime | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return occurred_at_of(value) if isinstance(value, dict) else None


def where_occurred(
    where: dict[str, Any] | None, after: Any = None, before: Any = None
) -> dict[str, Any] | None:
    """``where`` with ``occurred_at >= after`` and ``occurred_at < before`` (scan's sugar,
    as ``created_after``/``created_before`` bound ``created_at``)."""
    condition: dict[str, str] = {}
    if after is not None:
        condition["$gte"] = canonical_time(after, field="occurred_after")
    if before is not None:
        condition["$lt"] = canonical_time(before, field="occurred_before")
    if not condition or (where is not None and not isinstance(where, dict)):
        return where  # nothing to add, or a bad where that the request's check names
    if where and OCCURRED_AT_FIELD in where:
        raise InvalidFilterError(
            "give occurred_at either in where or as occurred_after/occurred_before, not both",
            key=OCCURRED_AT_FIELD,
        )
    return {**(where or {}), OCCURRED_AT_FIELD: condition}


def where_kind(where: dict[str, Any] | None, kind: str | Sequence[str] | None) -> Any:
    """``where`` selecting ``kind`` (one kind, or any of a list); an error when ``where``
    already names a different condition on ``kind``."""
    if kind is None:
        return where
    if isinstance(kind, str):
        condition: Any = kind
    else:
        kinds = list(kind)
        if not kinds or not all(isinstance(k, str) for k in kinds):
            raise InvalidFilterError("kind must be a string or a non-empty list of strings")
        condition = kinds[0] if len(kinds) == 1 else {"$in": kinds}
    if not isinstance(where, dict):
        return {"kind": condition} if where is None else where  # a bad where: its own error
    if "kind" in where and where["kind"] != condition:
        raise InvalidFilterError(
            f"kind={kind!r} conflicts with where's kind {where['kind']!r}; give one", key="kind"
        )
    return {**where, "kind": condition}
