"""The errors of the record-batch rules, one builder per rule.

Both ways of checking a batch (column at a time in ``validate``, row at a time
in ``_small_batch``) raise through these, so a rule's class, field, row and
message cannot drift apart between them.
"""

from __future__ import annotations

from typing import Any

from .codecs import CODECS
from .errors import (
    DuplicateIdError,
    InvalidValueError,
    InvalidVectorError,
    TextTooLargeError,
    UnknownTierError,
)
from .record import TIERS

# Stored vectors are unit vectors, so an int8 scale (max|v| / 127) lies in
# [1 / (127 * sqrt(dim)), 1 / 127]. A larger one overflows float32 when the
# server dequantizes it (3e38 * 127 = inf, then NaN in the vector index).
MIN_EMBEDDING_SCALE = 1e-6
MAX_EMBEDDING_SCALE = 1.0

ID_WHAT = "1-64 characters of [0-9A-Za-z_.:-]"
TENANT_WHAT = "1-64 characters of [0-9A-Za-z_.-]"
NAME_FIELDS = ("agent", "session", "kind", "origin", "embed_model")


def null(name: str, row: int) -> InvalidValueError:
    return InvalidValueError(f"{name} is null at row {row}", field=name, row=row)


def bad_pattern(name: str, value: Any, row: int, what: str) -> InvalidValueError:
    return InvalidValueError(f"{name} {value!r} at row {row} is not {what}", field=name, row=row)


def name_too_long(name: str, row: int, limit: int) -> InvalidValueError:
    return InvalidValueError(
        f"{name} at row {row} is longer than {limit} characters", field=name, row=row
    )


def unknown_tier(value: Any, row: int) -> UnknownTierError:
    return UnknownTierError(
        f"unknown tier {value!r} at row {row}; tiers are {', '.join(TIERS)}",
        field="tier",
        row=row,
        tier=value,
    )


def bad_privacy(row: int) -> InvalidValueError:
    return InvalidValueError(
        f"privacy at row {row} must be 0 (public) to 3 (secret)", field="privacy", row=row
    )


def unknown_codec(value: Any, row: int) -> InvalidValueError:
    return InvalidValueError(
        f"unknown codec {value!r} at row {row}; known: {sorted(CODECS)}", field="codec", row=row
    )


def bad_dict_id(row: int, needs: bool, codec: Any, kind: Any) -> InvalidValueError:
    return InvalidValueError(
        f"dict_id at row {row} must be {'set' if needs else 'null'} for codec "
        f"{codec!r} and kind {kind!r}",
        field="dict_id",
        row=row,
    )


def text_too_large(row: int, size: Any, limit: int) -> TextTooLargeError:
    return TextTooLargeError(
        f"text at row {row} is {size} bytes; the limit is {limit}. Split it into several memories.",
        field="raw_size",
        row=row,
        limit=limit,
    )


def payload_too_large(row: int, limit: int) -> TextTooLargeError:
    return TextTooLargeError(
        f"payload at row {row} is larger than {limit} bytes", field="payload", row=row, limit=limit
    )


def vector_unpaired(row: int) -> InvalidVectorError:
    return InvalidVectorError(
        f"embedding and embedding_scale at row {row} must both be set or both null",
        field="embedding",
        row=row,
    )


def vector_without_model(row: int) -> InvalidVectorError:
    return InvalidVectorError(f"embedding at row {row} has no embed_model", row=row)


def bad_dimension(row: int, dim: Any, limit: int) -> InvalidVectorError:
    return InvalidVectorError(
        f"embedding at row {row} has dimension {dim}; allowed 1..{limit}",
        field="embedding",
        row=row,
    )


def bad_scale(row: int, scale: Any) -> InvalidVectorError:
    return InvalidVectorError(
        f"embedding_scale at row {row} is {scale}; it must be a finite number "
        f"in [{MIN_EMBEDDING_SCALE}, {MAX_EMBEDDING_SCALE}] (a NaN or inf vector, or one "
        "that was not normalized?)",
        field="embedding_scale",
        row=row,
    )


def zero_vector(row: int) -> InvalidVectorError:
    return InvalidVectorError(f"embedding at row {row} is all zeros", field="embedding", row=row)


def bad_created_at(row: int) -> InvalidValueError:
    return InvalidValueError(
        f"created_at at row {row} is outside the years 1 to 9999", field="created_at", row=row
    )


def hlc_ahead(row: int, skew_ms: int) -> InvalidValueError:
    return InvalidValueError(
        f"hlc at row {row} is more than {skew_ms} ms ahead of this "
        "machine's clock; a replica with a clock that far off must fix its clock",
        field="hlc",
        row=row,
    )


def first_duplicate(tenants: list[Any], ids: list[Any]) -> DuplicateIdError | None:
    """The error for the first ``(tenant, id)`` that repeats, or None."""
    seen: dict[tuple[Any, Any], int] = {}
    for row, key in enumerate(zip(tenants, ids, strict=True)):
        if key in seen:
            return DuplicateIdError(
                f"id {key[1]!r} of tenant {key[0]!r} occurs at rows {seen[key]} and {row} of "
                "one write; send one version of a memory per write",
                field="id",
                memory_id=key[1],
                rows=[seen[key], row],
            )
        seen[key] = row
    return None
