"""Trained zstd dictionaries: made from a tenant's own texts, kept as records, found by id.

A dictionary holds pieces of the texts it was trained on verbatim, so it is
as private as they are: it is a record of the tenant (``kind`` =
``DICTIONARY_KIND``) in the tier it serves, with the highest privacy of its
samples, and it travels and syncs exactly like them, never across tenants.
Its id comes from its content, so devices agree on it. Dictionaries are
never deleted: a payload made with one stays readable forever.

Retraining is decided by evidence: only once the tier has grown to
``RETRAIN_GROWTH`` times what the current dictionary saw, and a new
dictionary is kept only if it beats the current one on held-out texts (every
fifth sample, never trained on) by ``MIN_GAIN``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import zstandard

from aios_memory.schemas import DICTIONARY_KIND, dictionary_id_of, new_id

from .text import (
    DEFAULT_ZSTD_LEVEL,
    Dictionary,
    _compressor,
    content_hash,
    decode_payload,
    encode_bytes,
)

__all__ = [
    "DictionaryBook",
    "TrainingReport",
    "train_dictionary",
    "dictionary_row",
    "DEFAULT_DICT_BYTES",
    "MIN_SAMPLES",
    "MAX_TRAINING_BYTES",
    "RETRAIN_GROWTH",
    "MIN_GAIN",
]

# 64 KB: 2.27x on unseen LoCoMo conversations against 2.04x at 16 KB and 2.35x at 112 KB
# (bench/compression.py).
DEFAULT_DICT_BYTES = 64 * 1024
MIN_SAMPLES = 200
# A dictionary at most a third of its samples: from 1,451 LoCoMo turns that is 58 KB and 2.25x
# on unseen conversations, against 18 KB and 2.05x at a tenth (zstd's rule of thumb).
SAMPLE_BYTES_PER_DICT_BYTE = 3
RETRAIN_GROWTH = 2.0
# Texts read back to train on stop here: 32x the largest dictionary is more than zstd's rule of
# thumb needs, and reading every text of a large tier each time it doubled made a 100,000-memory
# import spend most of its time training (288 memories/s, bench/ingest.py).
MAX_TRAINING_BYTES = 32 * DEFAULT_DICT_BYTES
MIN_GAIN = 0.02
_REFRESH_AFTER_SECONDS = 1.0  # at most this often for an unknown id
_STALE_AFTER_SECONDS = 300.0  # dictionaries other clients trained show up within this


@dataclass(frozen=True)
class TrainingReport:
    """What ``train_dictionary`` did for one tier, and the evidence for it."""

    tier: str
    trained: bool
    reason: str
    dict_id: int | None = None
    samples: int = 0
    dict_bytes: int = 0
    held_out_ratio: float | None = None
    previous_ratio: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Entry:
    dictionary: Dictionary
    tier: str
    hlc: int
    metadata: dict[str, Any] = field(default_factory=dict)


class DictionaryBook:
    """The dictionaries of one tenant, fetched from its server on first need.

    ``fetch()`` returns dictionary record rows (as from a scan); a lookup of
    an unknown id fetches again, at most once a second.
    """

    def __init__(self, fetch: Callable[[], Iterable[dict[str, Any]]]) -> None:
        self._fetch = fetch
        self._entries: dict[int, _Entry] | None = None
        self._fetched_at = 0.0
        self._lock = threading.Lock()

    def get(self, dict_id: int) -> Dictionary | None:
        """The dictionary with ``dict_id``, or None if the server has none."""
        entries = self._load()
        if dict_id not in entries and time.monotonic() - self._fetched_at > _REFRESH_AFTER_SECONDS:
            entries = self._load(refresh=True)
        entry = entries.get(dict_id)
        return entry.dictionary if entry else None

    def newest(self, tier: str) -> _Entry | None:
        """The most recent dictionary trained for ``tier``."""
        found = [e for e in self._load().values() if e.tier == tier]
        return max(found, key=lambda e: e.hlc) if found else None

    def describe(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per dictionary, oldest first."""
        entries = sorted(self._load(refresh=True).values(), key=lambda e: e.hlc)
        return [
            {
                "dict_id": e.dictionary.dict_id,
                "tier": e.tier,
                "bytes": len(e.dictionary.data),
                **e.metadata,
            }
            for e in entries
        ]

    def add(self, row: dict[str, Any], hlc: int) -> None:
        with self._lock:
            if self._entries is not None:
                entry = _entry(row)
                entry.hlc = hlc
                self._entries[entry.dictionary.dict_id] = entry

    def _load(self, refresh: bool = False) -> dict[int, _Entry]:
        with self._lock:
            stale = time.monotonic() - self._fetched_at > _STALE_AFTER_SECONDS
            if self._entries is None or refresh or stale:
                entries = {}
                for row in self._fetch():
                    entry = _entry(row)
                    entries[entry.dictionary.dict_id] = entry
                self._entries, self._fetched_at = entries, time.monotonic()
            return self._entries


def _entry(row: dict[str, Any]) -> _Entry:
    data = decode_payload(row["codec"], row["payload"], row["raw_size"], max_bytes=1 << 24)
    dictionary = Dictionary(int(row["dict_id"]), data)
    metadata = json.loads(row["metadata"]) if row.get("metadata") else {}
    return _Entry(dictionary, row["tier"], int(row.get("hlc") or 0), metadata)


def train_dictionary(
    samples: list[bytes], current: Dictionary | None, *, max_bytes: int = DEFAULT_DICT_BYTES
) -> tuple[bytes | None, TrainingReport]:
    """A new dictionary trained on four fifths of ``samples`` and judged on the rest.

    Returns the dictionary bytes (None when not worth keeping) and the report;
    ``report.tier`` is left empty for the caller.
    """
    held_out = samples[::5]
    train: list[bytes | bytearray | memoryview] = [s for i, s in enumerate(samples) if i % 5]
    total = sum(map(len, train))
    size = min(max_bytes, total // SAMPLE_BYTES_PER_DICT_BYTE)
    if len(samples) < MIN_SAMPLES or size < 1024:
        return None, TrainingReport(
            "",
            False,
            f"{len(samples)} texts ({total} bytes) are too few to train on; need {MIN_SAMPLES}",
            samples=len(samples),
        )
    try:
        data = zstandard.train_dictionary(size, train).as_bytes()
    except zstandard.ZstdError as exc:
        return None, TrainingReport("", False, f"zstd could not train: {exc}", samples=len(samples))
    candidate = Dictionary(dictionary_id_of(content_hash(data)), data)
    new_ratio = _ratio(candidate.compress, held_out)
    # Without a dictionary the tier stores plain zstd: that is what a new one must beat.
    plain = _compressor(DEFAULT_ZSTD_LEVEL).compress
    old_ratio = _ratio(current.compress if current is not None else plain, held_out)
    report = TrainingReport(
        "",
        new_ratio >= old_ratio * (1 + MIN_GAIN),
        "",
        candidate.dict_id,
        len(samples),
        len(data),
        round(new_ratio, 4),
        round(old_ratio, 4),
    )
    reason = f"held-out ratio {new_ratio:.3f} against {old_ratio:.3f}: " + (
        "kept" if report.trained else f"gain under {MIN_GAIN:.0%}, not kept"
    )
    return (data if report.trained else None), TrainingReport(
        **{**report.as_dict(), "reason": reason}
    )


def _ratio(compress: Callable[[bytes], bytes], texts: list[bytes]) -> float:
    """Raw over stored bytes of ``texts``, each stored as it is where compression loses."""
    stored = sum(min(len(compress(t)), len(t)) for t in texts)
    return sum(map(len, texts)) / max(stored, 1)


def dictionary_row(
    data: bytes, *, tenant: str, tier: str, privacy: int, metadata: dict[str, Any], created_at: Any
) -> dict[str, Any]:
    """The record (a dict of field values) that stores dictionary ``data``."""
    encoded = encode_bytes(data)
    return {
        "id": new_id(),
        "tenant": tenant,
        "tier": tier,
        "agent": None,
        "session": None,
        "kind": DICTIONARY_KIND,
        "created_at": created_at,
        "hlc": 0,
        "origin": "",
        "privacy": privacy,
        "codec": encoded.codec,
        "dict_id": dictionary_id_of(encoded.content_hash),
        "payload": encoded.payload,
        "raw_size": encoded.raw_size,
        "content_hash": encoded.content_hash,
        "embedding": None,
        "embedding_scale": None,
        "embed_model": None,
        "metadata": json.dumps(metadata, sort_keys=True),
        "deleted": False,
    }
