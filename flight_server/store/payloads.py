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

A ``sealed`` record (end-to-end encrypted, ``client.sealing``) is checked for
what anyone can check (format, hash of the ciphertext, a client-made version,
nothing private outside). A server without keys (the cloud) stores it as it
came: never decoded, embedded or indexed. A device server given the key store
(``enable_opening``) opens it with the tenant's key (a failed authentication is
``TamperedError``), decodes the inner text and checks its hash; lacking the
key it defers the row to the background like an ``lm`` row, to be indexed
once the key arrives. Opened fields never go back into the record: their
vectors live in a derived table (``_sealed_vectors``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pyarrow as pa

from aios_memory.client.codec.keys import KeyStore
from aios_memory.client.codec.sealing import check_sealed, is_sealed, open_row
from aios_memory.client.codec.text import Codebook, Dictionary, content_hash, decode_payload
from aios_memory.schemas import (
    CODEC_LM,
    CODEC_NONE,
    CODEC_ZSTD,
    DICTIONARY_KIND,
    SYSTEM_KINDS,
    AiosMemoryError,
    CorruptDataError,
    KeyMissingError,
    Limits,
    dictionary_id_of,
)

__all__ = ["PayloadTexts", "Decoded", "DictionaryLookup", "CurrentRows", "PAYLOAD_COLUMNS"]

DictionaryLookup = Callable[[str, int], "dict[str, Any] | None"]
"""``(tenant, dict_id) -> the stored dictionary record`` (PAYLOAD_COLUMNS), or None."""
CurrentRows = Callable[[str, list[str]], "list[dict[str, Any]]"]
"""``(tenant, ids) -> stored current rows`` (id, codec, dict_id, payload, raw_size, ...)."""

# What decoding a row needs: the codec's inputs, and the fields a sealed row binds.
PAYLOAD_COLUMNS = (
    "id",
    "tenant",
    "kind",
    "agent",
    "codec",
    "dict_id",
    "payload",
    "raw_size",
    "content_hash",
    "deleted",
    "tier",
    "created_at",
    "hlc",
    "origin",
    "privacy",
    "metadata",
)
_MAX_DICTIONARY_BYTES = 1 << 24
_CHEAP = (CODEC_NONE, CODEC_ZSTD)


@dataclass
class Decoded:
    """The texts of a put's rows, by row number.

    ``texts[i]`` is None for tombstones, dictionaries, rows this side cannot
    read (sealed without its key) and ``deferred`` rows; ``opened`` holds the
    opened form of each sealed row this side could open (for its vector).
    """

    texts: list[str | None]
    deferred: list[int] = field(default_factory=list)
    opened: dict[int, dict[str, Any]] = field(default_factory=dict)


class PayloadTexts:
    """Decodes records for indexing; one per store, safe to share between threads."""

    def __init__(
        self, dictionary: DictionaryLookup | None = None, current_rows: CurrentRows | None = None
    ) -> None:
        self._lookup = dictionary or (lambda tenant, dict_id: None)
        self._current_rows = current_rows or (lambda tenant, ids: [])
        self._dictionaries: dict[tuple[str, int], Dictionary] = {}
        self._sealed_dictionaries: set[tuple[str, int]] = set()
        self.keys: KeyStore | None = None
        self.embedder: Any = None

    def enable_opening(self, keys: KeyStore, embedder: Any = None) -> None:
        """Open sealed records with ``keys`` (a device's own store; never on a cloud), and embed
        what they hold with ``embedder`` when they carry no vector."""
        self.keys, self.embedder = keys, embedder

    def keys_version(self) -> Any:
        """Changes when keys may have arrived: a deferred sealed row is worth another try."""
        return None if self.keys is None else self.keys.version()

    def read(self, table: pa.Table, limits: Limits) -> Decoded:
        """One text per row of ``table`` (see ``Decoded``); a bad payload raises, naming its row."""
        rows = table.select(list(PAYLOAD_COLUMNS)).to_pylist()
        overlay = self._dictionaries_in(rows)
        reusable = self._reusable_texts(rows, limits)
        codebooks: dict[str, Codebook] = {}
        decoded = Decoded([])
        for number, row in enumerate(rows):
            if row["deleted"] or row["kind"] in SYSTEM_KINDS:
                if is_sealed(row):
                    _annotated(number, partial(check_sealed, row))
                decoded.texts.append(None)
            elif number in reusable:
                decoded.texts.append(reusable[number])
            elif row["codec"] == CODEC_LM:
                decoded.texts.append(None)
                decoded.deferred.append(number)
            else:
                tenant = row["tenant"]
                if tenant not in codebooks:
                    codebooks[tenant] = self._codebook(tenant, overlay)
                self._read_one(number, row, codebooks[tenant], limits, decoded)
        return decoded

    def _read_one(
        self, number: int, row: dict[str, Any], codebook: Codebook, limits: Limits, decoded: Decoded
    ) -> None:
        if is_sealed(row):
            _annotated(number, lambda: check_sealed(row))
            if self.keys is None:
                decoded.texts.append(None)  # a cloud: stored as it came, never read
                return
        try:
            opened = _annotated(number, lambda: codebook.open(row))
            if opened is not row:
                decoded.opened[number] = dict(opened)
            if opened["codec"] == CODEC_LM:
                text = None
                decoded.deferred.append(number)
            else:
                text = _annotated(
                    number, lambda: codebook.text(opened, max_bytes=limits.max_text_bytes)
                )
        except KeyMissingError:
            text = None  # a key (of the record or of its dictionary) this side lacks
            if self.keys is not None:
                decoded.deferred.append(number)  # a device: indexed once the key is here
        decoded.texts.append(text)

    def stored_text(self, row: dict[str, Any], limits: Limits) -> tuple[str | None, bool]:
        """The text of one stored row, and whether it waits for the background instead
        (lm-coded, or sealed with a key this device lacks for now)."""
        if row["deleted"] or row["kind"] in SYSTEM_KINDS:
            return None, False
        if row["codec"] == CODEC_LM:
            return None, True
        if is_sealed(row) and self.keys is None:
            return None, False
        codebook = self._codebook(row["tenant"], {})
        try:
            opened = codebook.open(row)
        except KeyMissingError:
            return None, True
        if opened["codec"] == CODEC_LM:
            return None, True
        try:
            return codebook.text(opened, max_bytes=limits.max_text_bytes), False
        except KeyMissingError:  # a sealed dictionary
            return None, self.keys is not None

    def background_text(
        self, row: dict[str, Any], limits: Limits
    ) -> tuple[str, dict[str, Any] | None]:
        """The text of a backlog row, however slow, and its opened form when it is sealed.

        Raises ``KeyMissingError`` while the key is missing (try again when
        ``keys_version`` changes), ``CodecUnavailableError``/``CodecMismatchError``
        while the model is, and any other contract error for a row that never will.
        """
        codebook = self._codebook(row["tenant"], {})
        opened = codebook.open(row)
        text = codebook.text(opened, max_bytes=limits.max_text_bytes)
        return text, (dict(opened) if opened is not row else None)

    def _open(self, row: Mapping[str, Any]) -> Mapping[str, Any]:
        if not is_sealed(row):
            return row
        if self.keys is None:
            raise KeyMissingError(
                f"memory {row['id']} is sealed and this server holds no keys", memory_id=row["id"]
            )
        return open_row(row, self.keys.key)

    def _codebook(self, tenant: str, overlay: dict[tuple[str, int], Dictionary | None]) -> Codebook:
        """Decodes ``tenant``'s rows: dictionaries from the put first, then from the store."""

        def find(dict_id: int) -> Dictionary | None:
            if (tenant, dict_id) not in overlay:
                return self._dictionary(tenant, dict_id)
            found = overlay[(tenant, dict_id)]
            if found is None:
                raise KeyMissingError(
                    f"dictionary {dict_id} came sealed and this side lacks its key", dict_id=dict_id
                )
            return found

        return Codebook(find, cache_bytes=0, opener=self._open)

    def _dictionary(self, tenant: str, dict_id: int) -> Dictionary | None:
        key = (tenant, dict_id)
        if key in self._sealed_dictionaries:
            raise KeyMissingError(f"dictionary {dict_id} is sealed", dict_id=dict_id)
        if key not in self._dictionaries:
            row = self._lookup(tenant, dict_id)
            if row is None:
                return None
            if is_sealed(row) and self.keys is None:  # a cloud never will read it: ask no more
                self._sealed_dictionaries.add(key)
            self._dictionaries[key] = _checked_dictionary(self._open(row))  # KeyMissingError
        return self._dictionaries[key]

    def _dictionaries_in(
        self, rows: list[dict[str, Any]]
    ) -> dict[tuple[str, int], Dictionary | None]:
        """The put's own dictionaries; None for one that came sealed and stays unread here."""
        found: dict[tuple[str, int], Dictionary | None] = {}
        for number, row in enumerate(rows):
            if row["kind"] == DICTIONARY_KIND and not row["deleted"]:
                try:
                    opened = _annotated(number, partial(self._open, row))
                except KeyMissingError:
                    found[(row["tenant"], row["dict_id"])] = None
                    continue
                dictionary = _annotated(number, partial(_checked_dictionary, opened))
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
                if (
                    old
                    and old["codec"] != CODEC_LM
                    and old["content_hash"] == rows[number]["content_hash"]
                ):
                    reusable[number] = codebook.text(old, max_bytes=limits.max_text_bytes)
        return reusable


def _checked_dictionary(row: Mapping[str, Any]) -> Dictionary:
    if row["codec"] not in _CHEAP:
        raise CorruptDataError(
            f"dictionary {row['id']} must be stored with codec none or zstd", memory_id=row["id"]
        )
    data = decode_payload(
        row["codec"], row["payload"], row["raw_size"], max_bytes=_MAX_DICTIONARY_BYTES
    )
    digest = content_hash(data)
    if digest != row["content_hash"] or row["dict_id"] != dictionary_id_of(digest):
        raise CorruptDataError(
            f"dictionary {row['id']}: content hash or dict_id does not match its bytes",
            memory_id=row["id"],
        )
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
