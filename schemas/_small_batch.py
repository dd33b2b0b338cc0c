"""The record-batch rules checked row at a time, for a batch of a few rows.

A compute kernel costs 20-30 us to call whatever its input's length, and the
column-at-a-time checks in ``validate`` call about a hundred: 3 ms for the one
row of a single ``remember``. Here one ``to_pylist`` per column and plain
Python do the same checks in a tenth of that. The rules run in the same order
as there (each over every row before the next), and raise through the same
builders (``_rule_errors``), so both ways refuse a batch with the same error;
``tests/test_validate_fast_path.py`` holds them to it.
"""

from __future__ import annotations

import re
import struct
import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from . import _rule_errors as err
from .blank import TEXTLESS_KINDS, check_has_text
from .codecs import CODEC_NONE, CODECS, DICTIONARY_KIND
from .ids import hlc_pack
from .record import PRIVACY_LEVELS, RECORD_SCHEMA, TIERS

__all__ = ["SMALL_BATCH_ROWS", "check_rows"]

SMALL_BATCH_ROWS = 8  # up to this many rows, row at a time is the cheaper way

# fullmatch, not ^...$: Python's $ also matches before a final newline, RE2's does not.
_ID = re.compile(r"[0-9A-Za-z_.:-]{1,64}")
_TENANT = re.compile(r"[0-9A-Za-z_.-]{1,64}")
# RE2's \s (the kernel's) is [\t\n\f\r ]: no \v, unlike Python's.
_RE2_SPACE = b"\t\n\f\r "
_DICT_CODECS = frozenset(name for name, codec in CODECS.items() if codec.dict_id)
_MAX_PRIVACY = max(PRIVACY_LEVELS)
_EARLIEST_US = -62_135_596_800_000_000
_LATEST_US = 253_402_300_799_999_999


def _float32(value: float) -> float:
    # The kernel compares a float32 column with float32 bounds: 1e-6 is not one.
    return float(struct.unpack("f", struct.pack("f", value))[0])


_MIN_SCALE = _float32(err.MIN_EMBEDDING_SCALE)
_MAX_SCALE = _float32(err.MAX_EMBEDDING_SCALE)

Columns = dict[str, list[Any]]


def check_rows(batch: pa.RecordBatch, limits: Any, check_metadata: Callable[..., None]) -> None:
    """Raise the error ``validate_record_batch`` raises for ``batch``, checked row at a time.

    ``batch`` has passed ``validate(full=True)`` and the schema check.
    ``check_metadata`` is ``validate``'s own (already row at a time).
    """
    cols = _columns(batch)
    _check_not_null(cols)
    _check_strings(cols, limits)
    _check_enums(cols)
    _check_sizes(cols, limits)
    check_metadata(cols["metadata"], limits)
    _check_embeddings(cols, limits)
    _check_times(cols, limits)
    _check_new_texts(cols)
    duplicate = err.first_duplicate(cols["tenant"], cols["id"])
    if duplicate is not None:
        raise duplicate


def _columns(batch: pa.RecordBatch) -> Columns:
    # created_at as integers: a datetime cannot hold a value outside the years 1 to 9999.
    cols = {
        name: column.to_pylist()
        for name, column in zip(batch.schema.names, batch.columns, strict=True)
        if name != "created_at"
    }
    cols["created_at"] = batch.column("created_at").cast(pa.int64()).to_pylist()
    return cols


def _first(values: list[Any], ok: Callable[[Any], object]) -> int:
    """Index of the first value ``ok`` refuses, or -1."""
    for row, value in enumerate(values):
        if not ok(value):
            return row
    return -1


def _check_not_null(cols: Columns) -> None:
    for field in RECORD_SCHEMA:
        if not field.nullable:
            row = _first(cols[field.name], lambda v: v is not None)
            if row >= 0:
                raise err.null(field.name, row)


def _check_strings(cols: Columns, limits: Any) -> None:
    for name, pattern, what in (
        ("id", _ID, err.ID_WHAT),
        ("tenant", _TENANT, err.TENANT_WHAT),
    ):
        row = _first(cols[name], pattern.fullmatch)
        if row >= 0:
            raise err.bad_pattern(name, cols[name][row], row, what)
    for name in err.NAME_FIELDS:
        limit = limits.max_name_chars
        row = next((r for r, v in enumerate(cols[name]) if v is not None and len(v) > limit), -1)
        if row >= 0:
            raise err.name_too_long(name, row, limit)


def _check_enums(cols: Columns) -> None:
    row = _first(cols["tier"], lambda v: v in TIERS)
    if row >= 0:
        raise err.unknown_tier(cols["tier"][row], row)
    row = _first(cols["privacy"], lambda v: v <= _MAX_PRIVACY)
    if row >= 0:
        raise err.bad_privacy(row)
    row = _first(cols["codec"], lambda v: v in CODECS)
    if row >= 0:
        raise err.unknown_codec(cols["codec"][row], row)
    rows = zip(cols["codec"], cols["kind"], cols["dict_id"], strict=True)
    for row, (codec, kind, dict_id) in enumerate(rows):
        needs = codec in _DICT_CODECS or kind == DICTIONARY_KIND
        if needs != (dict_id is not None):
            raise err.bad_dict_id(row, needs, codec, kind)


def _check_sizes(cols: Columns, limits: Any) -> None:
    row = _first(cols["raw_size"], lambda v: v <= limits.max_text_bytes)
    if row >= 0:
        raise err.text_too_large(row, cols["raw_size"][row], limits.max_text_bytes)
    row = _first(cols["payload"], lambda v: len(v) <= limits.max_payload_bytes)
    if row >= 0:
        raise err.payload_too_large(row, limits.max_payload_bytes)


def _check_embeddings(cols: Columns, limits: Any) -> None:
    vectors, scales = cols["embedding"], cols["embedding_scale"]
    pairs = list(zip(vectors, scales, strict=True))
    row = _first(pairs, lambda p: (p[0] is None) == (p[1] is None))
    if row >= 0:
        raise err.vector_unpaired(row)
    if all(v is None for v in vectors):
        return
    with_model = list(zip(vectors, cols["embed_model"], strict=True))
    row = _first(with_model, lambda p: p[0] is None or p[1] is not None)
    if row >= 0:
        raise err.vector_without_model(row)
    row = _first(vectors, lambda v: v is None or 0 < len(v) <= limits.max_dimension)
    if row >= 0:
        raise err.bad_dimension(row, len(vectors[row]), limits.max_dimension)
    # NaN compares false, so the range check refuses NaN and inf too.
    row = _first(scales, lambda s: s is None or _MIN_SCALE <= s <= _MAX_SCALE)
    if row >= 0:
        raise err.bad_scale(row, scales[row])
    row = _first(vectors, lambda v: v is None or any(v))
    if row >= 0:
        raise err.zero_vector(row)


def _check_times(cols: Columns, limits: Any) -> None:
    row = _first(cols["created_at"], lambda v: _EARLIEST_US <= v <= _LATEST_US)
    if row >= 0:
        raise err.bad_created_at(row)
    latest = hlc_pack(int(time.time() * 1000) + limits.max_clock_skew_ms, 0)
    row = _first(cols["hlc"], lambda v: v <= latest)
    if row >= 0:
        raise err.hlc_ahead(row, limits.max_clock_skew_ms)


def _check_new_texts(cols: Columns) -> None:
    """``blank.check_new_texts``, row at a time."""
    rows = zip(
        cols["hlc"],
        cols["deleted"],
        cols["raw_size"],
        cols["codec"],
        cols["payload"],
        cols["kind"],
        cols["embedding"],
        strict=True,
    )
    for row, (hlc, deleted, raw_size, codec, payload, kind, vector) in enumerate(rows):
        new = hlc == 0 and not deleted
        blank = raw_size == 0 or (codec == CODEC_NONE and not payload.strip(_RE2_SPACE))
        if new and blank and kind not in TEXTLESS_KINDS and vector is None:
            check_has_text("", False, "", row)
