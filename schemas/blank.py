"""Blank memories: a new memory needs a text (not only spaces) or a vector.

A memory with neither can never be recalled by a query, and is nearly always a
caller's mistake (an empty variable). The client checks before sending and the
server checks every put.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from .codecs import CODEC_NONE, SYSTEM_KINDS
from .errors import InvalidValueError
from .scenes import EPISODE_KIND

__all__ = ["TEXTLESS_KINDS", "check_has_text", "check_new_texts"]

# Kinds whose records carry data, not a text to recall: they may have an empty text.
TEXTLESS_KINDS = SYSTEM_KINDS | {EPISODE_KIND}


def check_has_text(text: str, has_vector: bool, kind: str, row: int = 0) -> None:
    """Raise InvalidValueError for a new memory with no text (or only spaces) and no vector.

    Such a memory can never be recalled by a query, and it is nearly always a
    caller's mistake (an empty variable). Data records (``TEXTLESS_KINDS``) are exempt.
    """
    if has_vector or kind in TEXTLESS_KINDS or text.strip():
        return
    raise InvalidValueError(
        f"text {row} is empty: give the memory some text, or an embedding", field="text", row=row
    )


def check_new_texts(batch: pa.RecordBatch) -> None:
    """Raise InvalidValueError for a new memory in ``batch`` whose text is blank (no vector)."""
    # Only new writes (hlc 0): a synced or re-encoded record was accepted once already,
    # and refusing it now would stop a replica from ever converging. A plain payload is
    # matched as it is; a compressed or sealed one only by its size (it decodes elsewhere).
    hlc, raw_size = batch.column("hlc"), batch.column("raw_size")
    blank = pc.or_(
        pc.equal(raw_size, pa.scalar(0, raw_size.type)),
        pc.and_(
            pc.equal(batch.column("codec"), CODEC_NONE),
            pc.match_substring_regex(batch.column("payload"), r"^\s*$"),
        ),
    )
    new = pc.and_(pc.equal(hlc, pa.scalar(0, hlc.type)), pc.invert(batch.column("deleted")))
    textual = pc.invert(
        pc.is_in(batch.column("kind"), value_set=pa.array(sorted(TEXTLESS_KINDS), pa.string()))
    )
    refused = pc.and_(pc.and_(new, blank), pc.and_(textual, pc.is_null(batch.column("embedding"))))
    rows = pc.indices_nonzero(pc.fill_null(refused, False))
    if len(rows):
        check_has_text("", False, "", rows[0].as_py())
