"""Checks a record batch against the contract, column at a time.

Used by the server on every ``do_put`` (the data came off the network) and by
the client before it uploads, so a caller hears about bad input before any
byte moves. Checks that need the decoded text or the store (UTF-8, content
hash, vector dimension per tenant) live on the server; ``check_unique_ids``
spans all the batches of one put.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from . import _rule_errors as err
from ._rule_errors import MAX_EMBEDDING_SCALE, MIN_EMBEDDING_SCALE
from ._small_batch import SMALL_BATCH_ROWS, check_rows
from .blank import TEXTLESS_KINDS, check_has_text, check_new_texts
from .codecs import CODECS, DICTIONARY_KIND
from .errors import (
    InvalidUtf8Error,
    InvalidValueError,
    LimitExceededError,
    SchemaMismatchError,
    UnsupportedVersionError,
)
from .filters import check_json_depth
from .ids import hlc_pack
from .occurred import check_occurred_at
from .record import PRIVACY_LEVELS, RECORD_SCHEMA, SCHEMA_VERSION, TIERS, schema_version_of

__all__ = [
    "Limits",
    "DEFAULT_LIMITS",
    "validate_record_schema",
    "validate_record_batch",
    "check_unique_ids",
    "check_metadata_depth",
    "check_has_text",
    "TEXTLESS_KINDS",
    "MIN_EMBEDDING_SCALE",
    "MAX_EMBEDDING_SCALE",
]

ID_PATTERN = r"^[0-9A-Za-z_.:-]{1,64}$"
TENANT_PATTERN = r"^[0-9A-Za-z_.-]{1,64}$"
# Python's datetime spans the years 1 to 9999: a created_at outside them fails every reader.
_EARLIEST_US = -62_135_596_800_000_000
_LATEST_US = 253_402_300_799_999_999


@dataclass(frozen=True)
class Limits:
    """Bounds on what one call may carry; the server enforces them before any work."""

    max_text_bytes: int = 256 * 1024
    max_metadata_bytes: int = 64 * 1024
    max_name_chars: int = 256
    max_dimension: int = 4096
    max_rows_per_put: int = 65_536
    max_bytes_per_put: int = 64 * 1024 * 1024
    max_k: int = 1000
    max_ids_per_call: int = 10_000
    # An action body (JSON); 10,000 ids of 64 characters take 0.7 MB.
    max_request_bytes: int = 1024 * 1024
    # How far past this machine's clock a record's hlc may be: one far-future hlc
    # would move the server's clock past 2**64 and fail every later write.
    max_clock_skew_ms: int = 24 * 3600 * 1000
    # Nesting of a metadata object: json.dumps and json.loads fail with RecursionError
    # near 1,000 levels, and no memory's metadata needs more than a few.
    max_json_depth: int = 32

    @property
    def max_payload_bytes(self) -> int:
        # zstd's worst case on incompressible input is a few bytes per block.
        return self.max_text_bytes + self.max_text_bytes // 64 + 1024


DEFAULT_LIMITS = Limits()


def validate_record_schema(schema: pa.Schema) -> None:
    """Raise unless ``schema`` is record schema version 1 (metadata aside)."""
    version = schema_version_of(schema)
    if version != SCHEMA_VERSION:
        raise UnsupportedVersionError(
            f"record schema version {version} is not supported; this server speaks "
            f"version {SCHEMA_VERSION}. Upgrade the client or the server.",
            version=version,
        )
    if schema.equals(RECORD_SCHEMA, check_metadata=False):
        return
    try:
        names = schema.names
    except UnicodeDecodeError:  # a field name off the network is just bytes
        raise SchemaMismatchError("a field name is not valid UTF-8") from None
    expected = {f.name: f for f in RECORD_SCHEMA}
    for name, field in zip(names, schema, strict=True):
        want = expected.pop(name, None)
        if want is None:
            raise SchemaMismatchError(f"unexpected field {name!r}", field=name)
        if not field.type.equals(want.type) or field.nullable != want.nullable:
            raise SchemaMismatchError(
                f"field {name!r} is {field.type} (nullable={field.nullable}); "
                f"expected {want.type} (nullable={want.nullable})",
                field=name,
            )
    if expected:
        missing = sorted(expected)
        raise SchemaMismatchError(f"missing fields {missing}", field=missing[0])
    raise SchemaMismatchError("fields are not in the record schema's order")


def validate_record_batch(batch: pa.RecordBatch, limits: Limits = DEFAULT_LIMITS) -> None:
    """Raise the specific error for the first rule ``batch`` breaks.

    Runs ``validate(full=True)`` first: of 1,500 mutated IPC streams measured
    here, 67 crashed a reader that skipped it, and the cheap check lets
    invalid UTF-8 through.
    """
    validate_record_schema(batch.schema)
    try:
        batch.validate(full=True)
    except pa.ArrowInvalid as exc:
        if "UTF8" in str(exc):
            raise InvalidUtf8Error(f"a string in the batch is not valid UTF-8: {exc}") from None
        raise InvalidValueError(f"the batch is not valid Arrow data: {exc}") from None
    if batch.num_rows > limits.max_rows_per_put:
        raise LimitExceededError(
            f"{batch.num_rows} rows in one batch; the limit is {limits.max_rows_per_put}",
            limit=limits.max_rows_per_put,
        )
    if batch.num_rows <= SMALL_BATCH_ROWS:  # a kernel call costs more than a few rows' Python
        check_rows(batch, limits, _check_metadata)
    else:
        check_columns(batch, limits)


def check_columns(batch: pa.RecordBatch, limits: Limits = DEFAULT_LIMITS) -> None:
    """The rules column at a time (``_small_batch.check_rows`` checks them row at a time)."""
    _check_not_null(batch)
    _check_strings(batch, limits)
    _check_enums(batch)
    _check_sizes(batch, limits)
    _check_metadata(batch.column("metadata").to_pylist(), limits)
    _check_embeddings(batch, limits)
    _check_times(batch, limits)
    check_new_texts(batch)
    check_unique_ids([batch])


def check_unique_ids(batches: Sequence[pa.RecordBatch]) -> None:
    """Raise DuplicateIdError if one ``(tenant, id)`` occurs twice in ``batches`` (one put).

    Two versions of a memory in one put have no order between them, so which
    one the store keeps would be an accident of row order.
    """
    tenants = pa.chunked_array([b.column("tenant") for b in batches], pa.string())
    ids = pa.chunked_array([b.column("id") for b in batches], pa.string())
    # Not group_by: Acero warns on the unaligned buffers a hostile IPC stream may carry.
    joined = pc.binary_join_element_wise(tenants, ids, "\x00")
    if pc.count_distinct(joined).as_py() == len(ids):
        return
    duplicate = err.first_duplicate(tenants.to_pylist(), ids.to_pylist())
    if duplicate is not None:
        raise duplicate


def _like(column: pa.Array | pa.ChunkedArray, value: int) -> pa.Scalar:
    # A typed scalar: a bare Python int makes pyarrow infer a type, and its
    # inference tries (and fails) to import dateutil on every call: 4 ms a put.
    return pa.scalar(value, column.type)


def _filled(lengths: pa.Array) -> pa.Array:
    return pc.fill_null(lengths, _like(lengths, 0))


def _first_false(mask: pa.Array) -> int:
    """Index of the first false (or null) in a boolean mask, or -1."""
    filled = pc.fill_null(mask, False)
    if pc.all(filled).as_py():
        return -1
    return int(pc.index(filled, False).as_py())


def _check_not_null(batch: pa.RecordBatch) -> None:
    # Arrow does not enforce nullable=False on data, only on the schema.
    for field, column in zip(RECORD_SCHEMA, batch.columns, strict=True):
        if not field.nullable and column.null_count:
            row = _first_false(pc.is_valid(column))
            raise err.null(field.name, row)


def _check_pattern(batch: pa.RecordBatch, name: str, pattern: str, what: str) -> None:
    column = batch.column(name)
    row = _first_false(pc.match_substring_regex(column, pattern))
    if row >= 0:
        raise err.bad_pattern(name, column[row].as_py(), row, what)


def _check_strings(batch: pa.RecordBatch, limits: Limits) -> None:
    _check_pattern(batch, "id", ID_PATTERN, err.ID_WHAT)
    _check_pattern(batch, "tenant", TENANT_PATTERN, err.TENANT_WHAT)
    for name in err.NAME_FIELDS:
        lengths = pc.utf8_length(batch.column(name))
        row = _first_false(pc.less_equal(_filled(lengths), _like(lengths, limits.max_name_chars)))
        if row >= 0:
            raise err.name_too_long(name, row, limits.max_name_chars)


def _check_enums(batch: pa.RecordBatch) -> None:
    tiers = batch.column("tier")
    row = _first_false(pc.is_in(tiers, value_set=pa.array(TIERS, pa.string())))
    if row >= 0:
        raise err.unknown_tier(tiers[row].as_py(), row)
    privacy = batch.column("privacy")
    row = _first_false(pc.less_equal(privacy, _like(privacy, max(PRIVACY_LEVELS))))
    if row >= 0:
        raise err.bad_privacy(row)
    codecs = batch.column("codec")
    row = _first_false(pc.is_in(codecs, value_set=pa.array(sorted(CODECS), pa.string())))
    if row >= 0:
        raise err.unknown_codec(codecs[row].as_py(), row)
    _check_dict_ids(batch)


def _check_dict_ids(batch: pa.RecordBatch) -> None:
    """``dict_id`` is set exactly where the codec or the kind needs one."""
    needs = pc.or_(
        pc.is_in(
            batch.column("codec"),
            value_set=pa.array(
                sorted(name for name, codec in CODECS.items() if codec.dict_id), pa.string()
            ),
        ),
        pc.equal(batch.column("kind"), DICTIONARY_KIND),
    )
    has = pc.is_valid(batch.column("dict_id"))
    row = _first_false(pc.equal(needs, has))
    if row >= 0:
        codec, kind = batch.column("codec")[row].as_py(), batch.column("kind")[row].as_py()
        raise err.bad_dict_id(row, needs[row].as_py(), codec, kind)


def _check_sizes(batch: pa.RecordBatch, limits: Limits) -> None:
    raw_size = batch.column("raw_size")
    row = _first_false(pc.less_equal(raw_size, _like(raw_size, limits.max_text_bytes)))
    if row >= 0:
        raise err.text_too_large(row, raw_size[row].as_py(), limits.max_text_bytes)
    sizes = pc.binary_length(batch.column("payload"))
    row = _first_false(pc.less_equal(sizes, _like(sizes, limits.max_payload_bytes)))
    if row >= 0:
        raise err.payload_too_large(row, limits.max_payload_bytes)


def _check_metadata(texts: list[str | None], limits: Limits) -> None:
    for row, text in enumerate(texts):
        if text is None:
            continue
        if len(text) > limits.max_metadata_bytes:
            raise LimitExceededError(
                f"metadata at row {row} is over {limits.max_metadata_bytes} bytes",
                field="metadata",
                row=row,
            )
        try:
            value = json.loads(text)
        except RecursionError:  # nested deeper than the parser's stack
            value = [[]] * (limits.max_json_depth + 1)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise InvalidValueError(
                f"metadata at row {row} must be a JSON object", field="metadata", row=row
            )
        check_metadata_depth(value, limits, row)
        check_occurred_at(value, row)


def check_metadata_depth(value: Any, limits: Limits = DEFAULT_LIMITS, row: int = 0) -> None:
    """Raise InvalidValueError if a metadata object nests deeper than ``max_json_depth``."""
    if check_json_depth(value, limits.max_json_depth) is not None:
        raise InvalidValueError(
            f"metadata at row {row} nests more than {limits.max_json_depth} levels deep; "
            "flatten it",
            field="metadata",
            row=row,
            limit=limits.max_json_depth,
        )


def _check_embeddings(batch: pa.RecordBatch, limits: Limits) -> None:
    vectors, scales = batch.column("embedding"), batch.column("embedding_scale")
    has_vec, has_scale = pc.is_valid(vectors), pc.is_valid(scales)
    row = _first_false(pc.equal(has_vec, has_scale))
    if row >= 0:
        raise err.vector_unpaired(row)
    if vectors.null_count == len(vectors):
        return
    row = _first_false(pc.or_(pc.invert(has_vec), pc.is_valid(batch.column("embed_model"))))
    if row >= 0:
        raise err.vector_without_model(row)
    lengths = pc.list_value_length(vectors)
    ok = pc.and_(
        pc.greater(lengths, _like(lengths, 0)),
        pc.less_equal(lengths, _like(lengths, limits.max_dimension)),
    )
    # Kleene: a row without a vector has a null length, and null must not fail it.
    row = _first_false(pc.or_kleene(pc.invert(has_vec), ok))
    if row >= 0:
        raise err.bad_dimension(row, lengths[row].as_py(), limits.max_dimension)
    # NaN compares false, so the range check refuses NaN and inf too.
    in_range = pc.and_(
        pc.greater_equal(scales, pa.scalar(MIN_EMBEDDING_SCALE, scales.type)),
        pc.less_equal(scales, pa.scalar(MAX_EMBEDDING_SCALE, scales.type)),
    )
    row = _first_false(pc.or_kleene(pc.invert(has_scale), in_range))
    if row >= 0:
        raise err.bad_scale(row, scales[row].as_py())
    _check_nonzero_vectors(vectors)


def _check_nonzero_vectors(vectors: pa.Array) -> None:
    # A zero vector has no direction: cosine distance to it is undefined.
    # Nonzero components per row from prefix sums over the child, not group_by: Acero
    # warns on (and some hardware faults on) the unaligned buffers hostile IPC may carry.
    nonzero = pc.not_equal(vectors.values, pa.scalar(0, pa.int8())).cast(pa.int64())
    prefix = pa.concat_arrays([pa.array([0], pa.int64()), pc.cumulative_sum(nonzero)])
    ends, starts = vectors.offsets.slice(1), vectors.offsets.slice(0, len(vectors))
    counts = pc.subtract(pc.take(prefix, ends), pc.take(prefix, starts))
    row = _first_false(
        pc.or_kleene(pc.invert(pc.is_valid(vectors)), pc.greater(counts, pa.scalar(0, pa.int64())))
    )
    if row >= 0:
        raise err.zero_vector(row)


def _check_times(batch: pa.RecordBatch, limits: Limits) -> None:
    created = batch.column("created_at").cast(pa.int64())
    ok = pc.and_(
        pc.greater_equal(created, pa.scalar(_EARLIEST_US, pa.int64())),
        pc.less_equal(created, pa.scalar(_LATEST_US, pa.int64())),
    )
    row = _first_false(ok)
    if row >= 0:
        raise err.bad_created_at(row)
    hlcs = batch.column("hlc")
    latest = hlc_pack(int(time.time() * 1000) + limits.max_clock_skew_ms, 0)
    row = _first_false(pc.less_equal(hlcs, pa.scalar(latest, hlcs.type)))
    if row >= 0:
        raise err.hlc_ahead(row, limits.max_clock_skew_ms)
