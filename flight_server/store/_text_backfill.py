"""Keyword-indexing lm-coded records in the background, one at a time.

A put or a sync round never waits for the language model (see
``_payloads``): an ``lm`` record that is new to this replica is committed
with its seq in ``text_backlog``, in the same transaction, and this thread
decodes it later and hands its text to the keyword index. The backlog row
is deleted only after the keyword index has been checkpointed with the
text in it, so a crash in between costs a second decode, never a lost entry.

A row replaced or deleted meanwhile is dropped, never indexed: whether it is
still current is checked under the store's write lock, the same lock every
put indexes under. Where the ``[lm]`` extra is missing or the record was
made by another model, the row waits in the backlog (``stats`` counts it)
until a server that can decode it opens the store.

Sealed records (``client.sealing``) that a device server could not open when
they arrived, because the tenant's key was not on this device yet, wait here
too: they are tried again only when the key store changes (or the server
restarts), never in a loop. Once opened, the text goes to the keyword index
and the vector (the envelope's, or the embedder's) to ``sealed_vectors``.

The thread knows the store only through what it is given: the backlog
(``_text_backlog``), the payload decoder and two callbacks that index a row
if it is still current.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from aios_memory.flight_server.search.keyword_index import KeywordDoc
from aios_memory.schemas import (
    AiosMemoryError,
    CodecMismatchError,
    CodecUnavailableError,
    KeyMissingError,
    Limits,
)

from ._text_backlog import TextBacklog
from .payloads import Decoded, PayloadTexts
from .sealed_vectors import SealedVector, vectors_of

__all__ = ["TextBackfill", "IndexPlain", "IndexOpened"]

log = logging.getLogger("aios_memory.server")

IndexPlain = Callable[[str, KeywordDoc], bool]
"""``(tenant, doc) -> indexed``: index a decoded row if it is still the current version."""
IndexOpened = Callable[[str, KeywordDoc, SealedVector | None, dict[str, Any]], bool]
"""``(tenant, doc, vector, opened) -> indexed``: the same for a sealed row opened here."""
_STEP = 8
_IDLE_SECONDS = 1.0
_LIMITS = Limits(max_text_bytes=1 << 30)


class TextBackfill:
    """The background thread that works through ``text_backlog``.

    Parameters
    ----------
    backlog
        The store's backlog: the rows to work through.
    payloads
        The store's payload decoder (and its key store and embedder, for sealed rows).
    index_plain, index_opened
        Index one decoded row if it is still current, under the store's write lock.
    """

    def __init__(
        self,
        backlog: TextBacklog,
        payloads: PayloadTexts,
        index_plain: IndexPlain,
        index_opened: IndexOpened,
    ) -> None:
        self._backlog, self._payloads = backlog, payloads
        self._index_plain, self._index_opened = index_plain, index_opened
        self._done: list[int] = []  # decoded and handed to the index, not yet checkpointed
        self._skip: set[int] = set()  # undecodable here: left in the backlog
        self._waiting_for_keys: set[int] = set()  # in _skip until the key store changes
        self._keys_version: Any = None
        self._told: set[str] = set()  # tenants whose missing key was logged
        self._lock = threading.Lock()
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._loop, name="text-backfill", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """New rows are in the backlog."""
        self._wake.set()

    def handled(self) -> list[int]:
        """Seqs already indexed or dropped but still in the backlog table (until a checkpoint)."""
        with self._lock:
            return list(self._done)

    def take_done(self) -> list[int]:
        """Seqs handed to the keyword index so far (or dropped), forgotten here.

        The store takes them just before it checkpoints the keyword indexes
        and deletes them from the backlog just after.
        """
        with self._lock:
            done, self._done = self._done, []
        return done

    def close(self) -> None:
        """Stop the thread after the row it is on; wait for it."""
        self._stop.set()
        self._wake.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            worked = self._step()
            if not worked:
                self._wake.wait(_IDLE_SECONDS)
                self._wake.clear()

    def _step(self) -> bool:
        self._retry_if_keys_changed()
        try:
            rows = self._backlog.rows(_STEP, exclude=self._skip | set(self._done))
        except Exception as exc:  # a closing store: the loop ends on the stop flag
            log.debug("text backfill paused: %s", exc)
            return False
        for row in rows:
            if self._stop.is_set():
                break
            self._handle_backlog_row(row)
        return bool(rows)

    def _retry_if_keys_changed(self) -> None:
        try:
            version = self._payloads.keys_version()
        except OSError:
            return
        if version != self._keys_version:
            self._keys_version = version
            self._skip -= self._waiting_for_keys
            self._waiting_for_keys.clear()
            self._told.clear()

    def _handle_backlog_row(self, row: dict[str, Any]) -> None:
        if row["id"] is None or row["deleted"]:
            with self._lock:
                self._done.append(row["seq"])  # replaced or forgotten: nothing to index
            return
        try:
            text, opened = self._payloads.background_text(row, _LIMITS)
        except KeyMissingError as exc:
            if row["tenant"] not in self._told:
                self._told.add(row["tenant"])
                log.warning(
                    "sealed memories of tenant %r wait to be indexed: %s",
                    row["tenant"],
                    exc.message,
                )
            self._skip.add(row["seq"])
            self._waiting_for_keys.add(row["seq"])
            return
        except (CodecUnavailableError, CodecMismatchError) as exc:
            log.warning("memory %s waits in the keyword backlog: %s", row["id"], exc.message)
            self._skip.add(row["seq"])
            return
        except AiosMemoryError as exc:
            log.error(
                "memory %s does not decode (%s); it stays out of the keyword index",
                row["id"],
                exc.message,
            )
            with self._lock:
                self._done.append(row["seq"])
            return
        doc = KeywordDoc(row["id"], row["seq"], row["tier"], row["privacy"], text)
        if opened is None:
            self._index_plain(row["tenant"], doc)
        else:
            self._index_opened(row["tenant"], doc, self._vector(opened, text), opened)
        with self._lock:
            self._done.append(row["seq"])

    def _vector(self, opened: dict[str, Any], text: str) -> SealedVector | None:
        """The vector of a sealed record opened here: its own, else the embedder's."""
        try:
            return vectors_of(Decoded([text], opened={0: opened}), self._payloads.embedder).get(0)
        except AiosMemoryError as exc:
            log.error(
                "memory %s could not be embedded (%s); it is searchable by keyword only",
                opened["id"],
                exc.message,
            )
            return None
