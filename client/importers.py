"""Readers for files ``aimem import`` understands: JSON lines and LoCoMo conversations.

Each reader yields ``MemoryInput`` items; the CLI and the benchmarks share
them, so what is measured is what a user imports.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from aios_memory.client.codec.vectors import normalize
from aios_memory.schemas import InvalidValueError, InvalidVectorError, canonical_time

__all__ = ["MemoryInput", "read_jsonl", "read_locomo", "detect_format", "read_file"]

_SESSION_KEY = re.compile(r"^session_(\d+)$")
# LoCoMo's session times, e.g. "1:56 pm on 8 May, 2023" (every dev conversation's form).
_LOCOMO_TIMES = ("%I:%M %p on %d %B, %Y", "%I:%M %p on %d %b, %Y")


@dataclass
class MemoryInput:
    """One memory to write: the keyword arguments of ``MemoryClient.remember`` for one text.

    ``occurred_at`` is when it happened (a datetime, naive = UTC; ISO 8601 text; or epoch
    seconds), stored beside ``created_at`` (when it was stored); see ``remember``.
    ``embedding`` is the text's vector from your own model (a list of numbers or a 1-D
    array, any length: it is normalized), stored as ``remember(embeddings=)`` stores
    one; without it the server embeds the text with its own model.
    """

    text: str
    tier: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    kind: str | None = None
    session: str | None = None
    agent: str | None = None
    privacy: int | None = None
    occurred_at: datetime | str | int | float | None = None
    embedding: Sequence[float] | np.ndarray | None = None


def read_jsonl(path: str | Path) -> Iterator[MemoryInput]:
    """One memory per line: ``{"text": ..., "tier"?, "metadata"?, "kind"?, "session"?, ...}``.

    ``occurred_at`` (ISO 8601 text or epoch seconds) and ``embedding`` (a list of
    numbers) are checked as the line is read, so a bad one stops an import before
    anything is written.
    """
    allowed = set(MemoryInput.__dataclass_fields__)
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError:
                raise InvalidValueError(
                    f"{path}:{number}: not a JSON object", line=number
                ) from None
            if not isinstance(item, dict) or not isinstance(item.get("text"), str):
                raise InvalidValueError(f'{path}:{number}: needs a "text" string', line=number)
            unknown = set(item) - allowed
            if unknown:
                raise InvalidValueError(
                    f"{path}:{number}: unknown keys {sorted(unknown)}; allowed {sorted(allowed)}",
                    line=number,
                )
            if item.get("occurred_at") is not None:
                item["occurred_at"] = _line_time(item["occurred_at"], path, number)
            if item.get("embedding") is not None:
                item["embedding"] = _line_vector(item["embedding"], path, number)
            yield MemoryInput(**item)


def _line_time(value: Any, path: str | Path, number: int) -> str:
    try:
        return canonical_time(value)
    except InvalidValueError as exc:
        raise InvalidValueError(
            f"{path}:{number}: {exc.message}", field="occurred_at", line=number
        ) from None


def _line_vector(value: Any, path: str | Path, number: int) -> np.ndarray:
    # float32, as it will be stored: a million lines of JSON floats kept as Python lists
    # would hold 24 bytes a number until their put.
    try:
        return normalize(value, row=number).astype(np.float32)
    except InvalidValueError as exc:
        reason = exc.message.replace(f"embedding {number} ", "the embedding ", 1)
        raise InvalidVectorError(
            f"{path}:{number}: {reason}", field="embedding", line=number
        ) from None


def read_locomo(path: str | Path) -> Iterator[MemoryInput]:
    """The turns of one LoCoMo conversation, as memories.

    Text is ``"Speaker: words"`` (plus the image caption where a turn shared
    one); metadata keeps ``dia_id`` so retrieval can be scored against the
    questions' evidence, and ``session_date`` as LoCoMo writes it. ``occurred_at``
    is the session's time (turns have none of their own), read from that text
    ("1:56 pm on 8 May, 2023") and taken as UTC: LoCoMo gives no time zone.
    """
    path = Path(path)
    conversation = json.loads(path.read_text(encoding="utf-8"))
    name = path.stem
    for number in _session_numbers(conversation):
        when = conversation.get(f"session_{number}_date_time")
        occurred_at = None if when is None else _session_time(when, f"{name}/session_{number}")
        for turn in conversation[f"session_{number}"]:
            text = f"{turn['speaker']}: {turn['text']}"
            if turn.get("blip_caption"):
                text += f" [shares an image: {turn['blip_caption']}]"
            yield MemoryInput(
                text=text,
                session=f"{name}/session_{number}",
                agent=turn["speaker"],
                metadata={
                    "conversation": name,
                    "dia_id": turn["dia_id"],
                    "speaker": turn["speaker"],
                    "session_date": when,
                },
                occurred_at=occurred_at,
            )


def _session_time(text: str, session: str) -> str:
    """A LoCoMo session time in the stored form (UTC; ISO 8601 text is taken too)."""
    for form in _LOCOMO_TIMES:
        try:
            return canonical_time(
                datetime.strptime(text.strip(), form).replace(tzinfo=timezone.utc)
            )
        except ValueError:
            continue
    try:
        return canonical_time(text)
    except InvalidValueError:
        raise InvalidValueError(
            f"session {session}'s date {text!r} is not a time like '1:56 pm on 8 May, 2023'",
            field="occurred_at",
        ) from None


def _session_numbers(conversation: dict[str, Any]) -> list[int]:
    numbers = [int(m.group(1)) for key in conversation if (m := _SESSION_KEY.match(key))]
    return sorted(numbers)


def detect_format(path: str | Path) -> str:
    """``"jsonl"`` or ``"locomo"``, from the file's content."""
    with open(path, encoding="utf-8") as f:
        head = f.read(4096).lstrip()
    if head.startswith("{") and '"speaker_a"' in head:
        return "locomo"
    return "jsonl"


def read_file(path: str | Path, fmt: str = "auto") -> Iterator[MemoryInput]:
    """Memories in ``path`` in format ``fmt`` (``auto``, ``jsonl`` or ``locomo``)."""
    chosen = detect_format(path) if fmt == "auto" else fmt
    readers = {"jsonl": read_jsonl, "locomo": read_locomo}
    if chosen not in readers:
        raise InvalidValueError(f"unknown import format {fmt!r}; use auto, jsonl or locomo")
    return readers[chosen](path)
