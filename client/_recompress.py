"""Re-encoding stored memories with another codec, without changing a byte of their text.

Each memory is decoded, checked against its content hash, encoded again,
and the new payload decoded and checked again before it is sent. The rows go
through the re-encode put (``REENCODE_PATH``): the server writes a row only
where the stored version still has the same content and fields, so a memory
edited meanwhile keeps its edit. Everything else in the record (id, embedding,
metadata, created_at) is carried over, so no index needs the text again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

import pyarrow as pa

from aios_memory.client.codec import batches
from aios_memory.client.codec.text import Codebook, EncodedText, content_hash
from aios_memory.schemas import (
    CODEC_LM,
    CODEC_SEALED,
    CODECS,
    DEFAULT_LIMITS,
    SYSTEM_KINDS,
    CorruptDataError,
    InvalidValueError,
    PutAck,
)

__all__ = ["RecompressReport", "recompress", "Recoder", "Upload"]

Upload = Callable[..., list[PutAck]]
"""``upload(batches, reencode=True) -> acks``: how re-encoded rows reach the server."""


class Recoder(Protocol):
    """What re-encoding needs of a client: its stored rows, its decoder and its encoder."""

    codebook: Codebook

    def iter_records(self, tier: Any = None, **filters: Any) -> Iterator[pa.RecordBatch]:
        """Stored rows of ``tier``, payloads as stored."""

    def encode(
        self, text: str, tier: str, agent: str | None = None, *, codec: str | None = None
    ) -> EncodedText:
        """``text`` compressed with ``codec`` (or the tier's policy)."""


DEFAULT_CHUNK = 256


@dataclass
class RecompressReport:
    """What ``recompress`` did: counts, bytes before and after, and time."""

    tier: str
    codec: str
    scanned: int = 0
    reencoded: int = 0
    unchanged: int = 0
    skipped_edited: int = 0
    skipped_sealed: int = 0
    verified: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def recompress(
    client: Recoder,
    upload: Upload,
    tier: str,
    codec: str,
    *,
    older_than: timedelta | None = None,
    session: str | None = None,
    chunk: int = DEFAULT_CHUNK,
    progress: Callable[[RecompressReport], Any] | None = None,
) -> RecompressReport:
    """Re-encode ``tier``'s memories (optionally only those older than ``older_than``, or
    only one ``session``'s).

    A memory is rewritten only where the new payload is smaller or its codec
    is the one asked for; ``progress(report)`` is called after every chunk.
    """
    if codec not in CODECS or codec == CODEC_SEALED:
        raise InvalidValueError(
            f"unknown codec {codec!r}; codecs are {sorted(CODECS)} "
            f"(except {CODEC_SEALED!r}: privacy decides what is sealed)",
            field="codec",
        )
    report = RecompressReport(tier, codec)
    started = time.monotonic()
    filters = (
        {}
        if older_than is None
        else {"created_before": (datetime.now(timezone.utc) - older_than).isoformat()}
    )
    if session is not None:
        filters["session"] = session
    # Read the tier first: encoding with the model can outlast any one stream's timeout.
    # Sealed memories are left as they are: their compression was chosen before sealing, and
    # re-encoding them here would put their plain form on the re-encode path.
    rows = [
        row
        for batch in client.iter_records(tier, **filters)
        for row in batch.to_pylist()
        if row["kind"] not in SYSTEM_KINDS
    ]
    report.skipped_sealed = sum(1 for row in rows if row["codec"] == CODEC_SEALED)
    rows = [row for row in rows if row["codec"] != CODEC_SEALED]
    for part in _chunks(rows, chunk):
        _recompress_chunk(client, upload, part, codec, report)
        report.seconds = round(time.monotonic() - started, 3)
        if progress is not None:
            progress(report)
    return report


def _recompress_chunk(
    client: Recoder,
    upload: Upload,
    rows: list[dict[str, Any]],
    codec: str,
    report: RecompressReport,
) -> None:
    changed = []
    for row in rows:
        report.scanned += 1
        new = _reencode(client, row, codec)
        if new is None:
            report.unchanged += 1
            continue
        report.verified += 1
        report.bytes_before += len(row["payload"])
        report.bytes_after += len(new.payload)
        changed.append(
            {
                **row,
                "codec": new.codec,
                "dict_id": new.dict_id,
                "payload": new.payload,
                "hlc": 0,
                "origin": "",
            }
        )
    if not changed:
        return
    acks = upload(
        [batches.rows_to_batch(part) for part in batches.chunk_rows(changed)], reencode=True
    )
    # The server acks a row it refused (edited or forgotten meanwhile) with hlc 0.
    kept = sum(1 for ack in acks for hlc in ack.hlcs if hlc)
    report.reencoded += kept
    report.skipped_edited += len(changed) - kept


def _reencode(client: Recoder, row: dict[str, Any], codec: str) -> EncodedText | None:
    """The new encoding of ``row``, verified, or None when it would not change."""
    raw = client.codebook.decode(row, max_bytes=DEFAULT_LIMITS.max_text_bytes)
    new = client.encode(raw.decode("utf-8"), row["tier"], row["agent"], codec=codec)
    if (new.codec, new.dict_id) == (row["codec"], row["dict_id"]):
        return None
    if new.codec != codec and len(new.payload) >= len(row["payload"]):
        return None  # the asked codec did not pay off for this text; keep what is stored
    if new.codec == CODEC_LM:
        return new  # encode_text decoded it and compared every byte already
    back = client.codebook.decode(
        {**row, "codec": new.codec, "dict_id": new.dict_id, "payload": new.payload},
        max_bytes=DEFAULT_LIMITS.max_text_bytes,
    )
    if back != raw or content_hash(back) != row["content_hash"]:
        raise CorruptDataError(
            f"re-encoding memory {row['id']} did not give back its text; "
            "nothing was written for it",
            memory_id=row["id"],
        )
    return new


def _chunks(rows: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]
