"""The texts of incoming records, decoded for indexing with the tenant's own dictionaries.

The server reads payloads only to index them (keywords, its embedder) and to
refuse a payload that does not match its content hash. What it needs:

- a ``zstd-dict`` payload's dictionary: from the same put (a client writes a
  new dictionary before the memories that use it) or from the store;
- an ``lm`` payload's text: the model costs 0.1-0.3 s a memory, which a put
  or a sync round must never wait for (a round of 2,048 such records would
  outlast any timeout and never finish). So a version whose content hash
  equals the stored version's (a recompression, or its sync to a replica that
  had the memory) takes the stored version's text, and any other ``lm``
  record is committed as it is (indexed at once by its vector, which travels
  with it) and left to ``_text_backfill`` to decode in the background for the
  keyword index. The client checks its hash whenever it reads it.

Dictionary records themselves are checked here: codec ``none`` or ``zstd``,
content hash, and a ``dict_id`` made from that hash.
"""

from __future__ import annotations

from typing import Any, Callable

import pyarrow as pa

from aios_memory.client.codecs import Codebook, Dictionary, content_hash, decode_payload
from aios_memory.schemas import (
    CODEC_LM,
    CODEC_NONE,
    CODEC_ZSTD,
    DICTIONARY_KIND,
    SYSTEM_KINDS,
    AiosMemoryError,
    CorruptDataError,
    Limits,
    dictionary_id_of,
)

__all__ = ["PayloadTexts", "DictionaryLookup", "CurrentRows"]

DictionaryLookup = Callable[[str, int], "bytes | None"]
"""``(tenant, dict_id) -> dictionary bytes`` from the store, or None."""
CurrentRows = Callable[[str, list[str]], "list[dict[str, Any]]"]
"""``(tenant, ids) -> stored current rows`` (id, codec, dict_id, payload, raw_size, ...)."""

_COLUMNS = ("id", "tenant", "kind", "agent", "codec", "dict_id", "payload", "raw_size",
            "content_hash", "deleted")
_MAX_DICTIONARY_BYTES = 1 << 24
_CHEAP = (CODEC_NONE, CODEC_ZSTD)


class PayloadTexts:
    """Decodes records for indexing; one per store, safe to share between threads."""

    def __init__(self, dictionary: DictionaryLookup | None = None,
                 current_rows: CurrentRows | None = None) -> None:
        self._lookup = dictionary or (lambda tenant, dict_id: None)
        self._current_rows = current_rows or (lambda tenant, ids: [])
        self._dictionaries: dict[tuple[str, int], Dictionary] = {}

    def texts(self, table: pa.Table, limits: Limits) -> tuple[list[str | None], list[int]]:
        """One text per row of ``table`` (None: tombstone, dictionary, or deferred), and the
        numbers of the rows deferred to the background (lm-coded, new here)."""
        rows = table.select(list(_COLUMNS)).to_pylist()
        overlay = self._dictionaries_in(rows)
        reusable = self._reusable_texts(rows, limits)
        codebooks: dict[str, Codebook] = {}
        texts: list[str | None] = []
        deferred: list[int] = []
        for number, row in enumerate(rows):
            if row["deleted"] or row["kind"] in SYSTEM_KINDS:
                texts.append(None)
            elif number in reusable:
                texts.append(reusable[number])
            elif row["codec"] == CODEC_LM:
                texts.append(None)
                deferred.append(number)
            else:
                tenant = row["tenant"]
                if tenant not in codebooks:
                    codebooks[tenant] = self._codebook(tenant, overlay)
                texts.append(_annotated(number, lambda r=row, book=codebooks[tenant]:
                                        book.text(r, max_bytes=limits.max_text_bytes)))
        return texts, deferred

    def text(self, row: dict[str, Any], limits: Limits) -> str | None:
        """The text of one stored row (None for tombstones, dictionaries and lm rows)."""
        if row["deleted"] or row["kind"] in SYSTEM_KINDS or row["codec"] == CODEC_LM:
            return None
        return self._codebook(row["tenant"], {}).text(row, max_bytes=limits.max_text_bytes)

    def decode_lm(self, row: dict[str, Any], limits: Limits) -> str:
        """The text of an lm-coded stored row, with the model (slow; for the background)."""
        return Codebook(cache_bytes=0).text(row, max_bytes=limits.max_text_bytes)

    def _codebook(self, tenant: str, overlay: dict[tuple[str, int], Dictionary]) -> Codebook:
        """Decodes ``tenant``'s rows: dictionaries from the put first, then from the store."""
        return Codebook(lambda dict_id: overlay.get((tenant, dict_id))
                        or self._dictionary(tenant, dict_id), cache_bytes=0)

    def _dictionary(self, tenant: str, dict_id: int) -> Dictionary | None:
        key = (tenant, dict_id)
        if key not in self._dictionaries:
            data = self._lookup(tenant, dict_id)
            if data is None:
                return None
            self._dictionaries[key] = Dictionary(dict_id, data)
        return self._dictionaries[key]

    def _dictionaries_in(self, rows: list[dict[str, Any]]) -> dict[tuple[str, int], Dictionary]:
        found = {}
        for number, row in enumerate(rows):
            if row["kind"] == DICTIONARY_KIND and not row["deleted"]:
                dictionary = _annotated(number, lambda r=row: _checked_dictionary(r))
                found[(row["tenant"], dictionary.dict_id)] = dictionary
        return found

    def _reusable_texts(self, rows: list[dict[str, Any]], limits: Limits) -> dict[int, str]:
        """Texts of ``lm`` rows whose stored version has the same content, by row number."""
        wanted: dict[str, list[int]] = {}
        for number, row in enumerate(rows):
            if row["codec"] == CODEC_LM and not row["deleted"]:
                wanted.setdefault(row["tenant"], []).append(number)
        reusable: dict[int, str] = {}
        for tenant, numbers in wanted.items():
            ids = [rows[n]["id"] for n in numbers]
            stored = {r["id"]: r for r in self._current_rows(tenant, ids)}
            codebook = self._codebook(tenant, {})
            for number in numbers:
                old = stored.get(rows[number]["id"])
                if old and old["codec"] != CODEC_LM \
                        and old["content_hash"] == rows[number]["content_hash"]:
                    reusable[number] = codebook.text(old, max_bytes=limits.max_text_bytes)
        return reusable


def _checked_dictionary(row: dict[str, Any]) -> Dictionary:
    if row["codec"] not in _CHEAP:
        raise CorruptDataError(f"dictionary {row['id']} must be stored with codec none or zstd",
                               memory_id=row["id"])
    data = decode_payload(row["codec"], row["payload"], row["raw_size"],
                          max_bytes=_MAX_DICTIONARY_BYTES)
    digest = content_hash(data)
    if digest != row["content_hash"] or row["dict_id"] != dictionary_id_of(digest):
        raise CorruptDataError(f"dictionary {row['id']}: content hash or dict_id does not match "
                               "its bytes", memory_id=row["id"])
    return Dictionary(row["dict_id"], data)


def _annotated(number: int, decode: Callable[[], Any]) -> Any:
    """``decode()``, with the row number in any contract error it raises."""
    try:
        return decode()
    except AiosMemoryError as exc:
        exc.detail.setdefault("row", number)
        exc.args = (f"row {number}: {exc.message}",)
        exc.message = exc.args[0]
        raise
