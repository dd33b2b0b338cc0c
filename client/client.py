"""``MemoryClient``: the SDK an agent uses to talk to a memory server."""

from __future__ import annotations

import dataclasses
import itertools
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from aios_memory.client.codec import vectors as _vectors
from aios_memory.client.codec.dictionaries import (
    MAX_TRAINING_BYTES,
    MIN_SAMPLES,
    RETRAIN_GROWTH,
    DictionaryBook,
    TrainingReport,
    dictionary_row,
    train_dictionary,
)
from aios_memory.client.codec.keys import KeyStore, check_encrypt_at
from aios_memory.client.codec.sealing import Sealer
from aios_memory.client.codec.text import (
    MIN_COMPRESS_BYTES,
    Codebook,
    EncodedText,
    encode_text,
    utf8,
)
from aios_memory.client.transport.flight import Transport
from aios_memory.client.transport.tls import PemSource, tls_options
from aios_memory.schemas import (
    CODEC_LM,
    CODEC_ZSTD_DICT,
    DEFAULT_LIMITS,
    DICTIONARY_KIND,
    EXTERNAL_EMBED_MODEL,
    HIT_SCHEMA,
    OCCURRED_AT_FIELD,
    RECORD_SCHEMA,
    CompactRequest,
    ConnectionFailedError,
    CorruptDataError,
    DeadlineExceededError,
    IdsRequest,
    InvalidRequestError,
    InvalidValueError,
    LimitExceededError,
    PutAck,
    ScanRequest,
    SearchRequest,
    StatsRequest,
)

from . import _records
from ._arguments import (
    check_id_count,
    env_encrypt_at,
    id_list,
    spread,
    tier_arg,
    token_tenant,
    with_readers,
)
from ._codec_policy import parse_codec_policy
from ._consolidation import consolidate, policy_from, reconstruct_session
from ._forget import forget_ids
from ._recompress import RecompressReport, recompress
from ._results import Hit, Memory, hits_from_table, memories_from_table, with_text
from ._when import (
    OCCURRED_AT_TYPE,
    OccurredAt,
    occurred_at_column,
    spread_occurred_at,
    where_kind,
    where_occurred,
)
from .consolidate import ConsolidationReport, Reconstruction
from .importers import MemoryInput

if TYPE_CHECKING:  # the deprecated scene aliases' types; nothing of scenes loads with the SDK
    from aios_memory.client.scenes import EncodedScene, ObjectState, Replayer, Scene, Scenes

__all__ = ["MemoryClient", "DEFAULT_URI", "DEFAULT_TIMEOUT", "DEFAULT_EMBED_MODEL", "SCAN_SCHEMA"]

DEFAULT_URI = "grpc://127.0.0.1:8815"
DEFAULT_TIMEOUT = 30.0
DEFAULT_EMBED_MODEL = EXTERNAL_EMBED_MODEL
DEFAULT_IMPORT_BATCH = 1024
AUTO_TRAIN_CHECK_EVERY = 1000  # memories of a tier an import writes between dictionary checks
_SCAN_FILTERS = (
    "ids",
    "since_hlc",
    "kind",
    "session",
    "created_after",
    "created_before",
    "where",
    "include_deleted",
)
_OCCURRED_FILTERS = ("occurred_after", "occurred_before")  # sugar for where's occurred_at
SCAN_SCHEMA = RECORD_SCHEMA.append(pa.field("text", pa.string())).append(
    pa.field(OCCURRED_AT_FIELD, OCCURRED_AT_TYPE)
)


class MemoryClient:
    """A connection to one memory server, for one tenant.

    Parameters
    ----------
    uri : str
        Server address, ``grpc://host:port``, or ``grpc+tls://host:port`` for TLS.
    token : str, optional
        Bearer token; defaults to the ``AIMEM_TOKEN`` environment variable.
    timeout : float
        Seconds any one call may take (a whole stream included).
    tenant : str, optional
        Whose memories to read and write. By default the token's own tenant when the
        token is scoped to exactly one (the server's ``whoami`` says, asked once, on
        first use), else ``"default"``.
    embed_model : str
        Name stored with vectors you supply; recall with ``embedding=`` searches it.
    codecs : str or dict, optional
        Codec per tier for new memories, over the default (``zstd-dict`` everywhere):
        ``{"long_term": "lm"}`` or ``"long_term=lm"``; defaults to ``AIMEM_CODECS``.
    tls_root_certs : path or bytes, optional
        PEM CA certificate(s) that signed the server's certificate (``grpc+tls://`` only);
        without it the system's roots are trusted.
    tls_cert, tls_key : path or bytes, optional
        PEM client certificate and key, for a server that requires mutual TLS.
    encrypt_at : int, optional
        End-to-end encrypt memories at or above this privacy (0..4; 4 none), over the
        tenant's own threshold (``aimem keys init --encrypt-at``, default 2); defaults to
        ``AIMEM_ENCRYPT_AT``. See ``aimem keys``.
    keys : path or KeyStore, optional
        The key store (default ``AIMEM_KEYS`` or ``~/.config/aimem/keys``).

    See Also
    --------
    aios_memory.client.scenes.Scenes : episodes (scenes that replay), stored through a client.

    Examples
    --------
    >>> with MemoryClient("grpc://127.0.0.1:8815") as mem:           # doctest: +SKIP
    ...     ids = mem.remember("Ada prefers tea", tier="core")
    ...     hits = mem.recall("what does Ada drink?", k=3)
    """

    def __init__(
        self,
        uri: str = DEFAULT_URI,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        tenant: str | None = None,
        embed_model: str = DEFAULT_EMBED_MODEL,
        codecs: str | dict[str, str] | None = None,
        tls_root_certs: PemSource | None = None,
        tls_cert: PemSource | None = None,
        tls_key: PemSource | None = None,
        encrypt_at: int | None = None,
        keys: str | os.PathLike[str] | KeyStore | None = None,
    ) -> None:
        self.uri, self._tenant, self.embed_model = uri, tenant, embed_model
        self.timeout = float(timeout)
        self.codec_policy = parse_codec_policy(codecs or os.environ.get("AIMEM_CODECS"))
        token = token if token is not None else os.environ.get("AIMEM_TOKEN") or None
        tls = tls_options(uri, tls_root_certs, tls_cert, tls_key)
        self._transport = Transport(uri, token, self.timeout, tls)
        self._dictionaries = DictionaryBook(self._fetch_dictionaries)
        self.sealer = Sealer(
            keys if isinstance(keys, KeyStore) else KeyStore(keys),
            env_encrypt_at() if encrypt_at is None else encrypt_at,
        )
        self.codebook = Codebook(self._dictionaries.get, opener=self.sealer.open)
        self._scenes: Scenes | None = None  # made by the first deprecated scene alias called

    def __repr__(self) -> str:
        return f"MemoryClient({self.uri!r}, tenant={self._tenant!r})"

    @property
    def tenant(self) -> str:
        """Whose memories this client reads and writes (see the ``tenant`` parameter)."""
        if self._tenant is None:
            self._tenant = token_tenant(self._transport.action_json)
        return self._tenant

    @tenant.setter
    def tenant(self, value: str) -> None:
        self._tenant = value

    @property
    def encrypt_at(self) -> int:
        """Memories of this tenant at or above this privacy are end-to-end encrypted."""
        return self.sealer.threshold(self.tenant)

    @encrypt_at.setter
    def encrypt_at(self, value: int | None) -> None:
        self.sealer.encrypt_at = None if value is None else check_encrypt_at(value)

    def __enter__(self) -> MemoryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        self._transport.close()

    # -- writes ---------------------------------------------------------------

    def remember(
        self,
        texts: str | Sequence[str],
        *,
        tier: str = "working",
        metadata: dict[str, Any] | Sequence[dict[str, Any]] | None = None,
        kind: str = "text",
        session: str | None = None,
        agent: str | None = None,
        privacy: int = 1,
        embeddings: Any = None,
        readers: Sequence[str] | None = None,
        occurred_at: OccurredAt | Sequence[OccurredAt] | None = None,
    ) -> list[str]:
        """Store one text or several; return their ids in order.

        Parameters
        ----------
        texts : str or list of str
            What to remember.
        tier : str
            ``core``, ``working``, ``long_term`` or ``shared``.
        metadata : dict or list of dict, optional
            One JSON object for all texts, or one per text.
        kind, session, agent : str, optional
            Stored as given.
        privacy : int
            0 public, 1 personal, 2 private, 3 secret.
        embeddings : list of list of float or 2-D array, optional
            One vector per text, from your own model (stored under ``embed_model``);
            without it the server embeds with its own model.
        readers : list of str, optional
            For ``shared`` memories: the other tenants (``"bob"``) or principals
            (``"bob/phone"``) who may read them.
        occurred_at : datetime, str, float, or a list of them, optional
            When it happened, one value for all texts or one per text: a ``datetime``
            (a naive one is taken as UTC), ISO 8601 text (UTC without a zone) or epoch
            seconds. Kept beside ``created_at`` (when it was stored), read back as
            ``Memory.occurred_at`` and filtered as ``where={"occurred_at": ...}``.
            Stored in metadata under ``aimem:occurred_at`` as UTC ISO 8601
            (``2023-05-08T13:56:00Z``) until records get a column for it (issue 18).

        Raises
        ------
        InvalidValueError
            Bad input (``UnknownTierError``, ``InvalidVectorError``, ``TextTooLargeError``...),
            raised before anything is sent.
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        times = spread_occurred_at(occurred_at, len(texts))
        items = [
            MemoryInput(text=t, metadata=with_readers(m, readers) or {}, occurred_at=when)
            for t, m, when in zip(texts, spread(metadata, texts), times, strict=True)
        ]
        vectors = _records.prepare_embeddings(embeddings, len(items))
        defaults = self._defaults(
            tier=tier, kind=kind, session=session, agent=agent, privacy=privacy
        )
        return self.write_records(list(_records.encode_rows(items, vectors, defaults)))

    def remember_many(
        self,
        items: Iterable[MemoryInput],
        *,
        tier: str = "working",
        batch_size: int = DEFAULT_IMPORT_BATCH,
        progress: Callable[[int], Any] | None = None,
        train_dictionaries: bool = True,
    ) -> list[str]:
        """Store a stream of ``MemoryInput`` items, ``batch_size`` per put; return all ids.

        Each item's own ``tier``/``kind``/``session``/``agent``/``privacy`` win;
        ``tier`` is the default for items that name none; an item's ``occurred_at``
        and ``embedding`` are stored as ``remember``'s are (items without an
        embedding are embedded by the server). ``progress(n)`` is
        called after each put with the number of items it stored. With
        ``train_dictionaries``, a tier whose policy uses a dictionary gets a new
        one whenever it is due (see ``train_dictionary``), so the rest of a
        large import is compressed with it.
        """
        if batch_size < 1:
            raise InvalidValueError("batch_size must be at least 1")
        ids: list[str] = []
        unchecked: dict[str, int] = {}  # tier -> memories written since its last check
        source = iter(items)
        while chunk := list(itertools.islice(source, batch_size)):
            rows = self.encode_records(chunk, tier=tier)
            ids += self._write_within_budget(rows)
            for row in rows:
                unchecked[row["tier"]] = unchecked.get(row["tier"], 0) + 1
            if train_dictionaries:
                self._train_due(unchecked, final=False)
            if progress is not None:
                progress(len(chunk))
        if train_dictionaries:
            self._train_due(unchecked, final=True)
        return ids

    def encode_records(
        self, items: Iterable[MemoryInput], *, tier: str = "working"
    ) -> list[dict[str, Any]]:
        """The records ``remember_many`` would write for ``items``, not yet sealed or sent.

        For a layer that writes records of its own beside memories (scenes store an
        episode's tables in a second record): each record is a dict of
        ``RECORD_SCHEMA`` fields with a new id, compressed as this client's codec policy
        says; each item's own ``tier``/``kind``/``session``/``agent``/``privacy`` win,
        ``tier`` is the default; ``occurred_at`` goes into metadata as ``remember``
        stores it. Send them with ``write_records``.

        Raises
        ------
        InvalidValueError
            Bad input (``UnknownTierError``, ``TextTooLargeError``...).
        """
        defaults = self._defaults(tier=tier)
        return list(_records.encode_rows(items, itertools.repeat(None), defaults))

    def write_records(self, rows: Sequence[dict[str, Any]]) -> list[str]:
        """Write records as ``encode_records`` makes them; return their ids in order.

        Records at or above the privacy threshold are sealed first (``encrypt_at``).
        Rows that fit one put (the server's row limit, about 32 MiB) travel in one put,
        which the server commits whole: a record and the records beside it arrive
        together or not at all.
        """
        return [i for ack in self.sealer.write(rows, self._upload) for i in ack.ids]

    def _write_within_budget(self, rows: list[dict[str, Any]]) -> list[str]:
        # A put the server refused because embedding it outlasted its budget stored nothing:
        # halve it and go on, so an import on a busy machine slows down instead of failing.
        try:
            return self.write_records(rows)
        except DeadlineExceededError as error:
            if "budget_seconds" not in error.detail or len(rows) < 2:
                raise
        half = len(rows) // 2
        return self._write_within_budget(rows[:half]) + self._write_within_budget(rows[half:])

    def _train_due(self, unchecked: dict[str, int], *, final: bool) -> None:
        # Checking costs a stats call, and training only happens when a tier doubled.
        for tier, count in list(unchecked.items()):
            if self.codec_policy.get(tier) not in (CODEC_ZSTD_DICT, CODEC_LM):
                continue
            if final or count >= AUTO_TRAIN_CHECK_EVERY:
                self.train_dictionary(tier)
                unchecked[tier] = 0

    def forget(self, ids: str | Sequence[str]) -> int:
        """Delete memories by id (a tombstone that syncs); return how many were live.

        An episode's scene data goes with it (its record is ``scene_id_of(id)``,
        ``<id>:scene``). Up to 5,000 ids go in one call, which the server applies
        whole; more go in several calls.

        Raises
        ------
        PermissionDeniedError
            The token may not write this tenant (a read-only token, or another tenant's).
        IncompleteWriteError
            A later call of a long list failed: ``detail`` lists the ids ``forgotten``,
            ``unknown`` (the failed call's) and ``not_done``; forgetting them again is safe.
        """
        asked = list(dict.fromkeys(id_list(ids)))
        if not asked:
            return 0
        return forget_ids(self._transport.action_json, self.tenant, asked)

    # -- reads ----------------------------------------------------------------

    def recall(
        self,
        query: str | None = None,
        *,
        embedding: Any = None,
        k: int = 10,
        tier: str | Sequence[str] | None = None,
        where: dict[str, Any] | None = None,
        mode: str = "hybrid",
        kind: str | Sequence[str] | None = None,
    ) -> list[Hit]:
        """The ``k`` memories most relevant to a text and/or a vector, best first.

        Parameters
        ----------
        query : str, optional
            Text to match (keywords, and the server's embedder when it has one).
        embedding : list of float, optional
            A query vector from the model that made your ``embeddings``.
        k : int
            How many hits at most (1..1000).
        tier : str or list of str, optional
            Only these tiers.
        where : dict, optional
            Filters on record fields or metadata keys, e.g. ``{"topic": "food",
            "privacy": {"$lte": 1}}`` or ``{"occurred_at": {"$gte": "2023-05-01"}}``
            (when it happened); applied before the top ``k``.
        mode : str
            ``hybrid``, ``vector`` or ``keyword``.
        kind : str or list of str, optional
            Only memories of this kind (or these kinds), e.g. ``"summary"`` or
            ``["summary", "fact"]``: the same as ``where={"kind": ...}``, which must
            not name another kind.
        """
        where = where_kind(where, kind)
        vector = None if embedding is None else _vectors.normalize(embedding).tolist()
        request = SearchRequest(
            query=query,
            embedding=vector,
            embed_model=self.embed_model if vector is not None else None,
            k=k,
            tier=tier_arg(tier),
            where=where,
            mode=mode,
        )
        request.check()
        if k > DEFAULT_LIMITS.max_k:
            raise LimitExceededError(
                f"k is {k}; the limit is {DEFAULT_LIMITS.max_k}", limit=DEFAULT_LIMITS.max_k
            )
        request = dataclasses.replace(request, tenant=self.tenant)  # checked before asking whoami
        table = self.sealer.observe(
            self._transport.action_table("search", request.to_bytes(), HIT_SCHEMA)
        )
        return hits_from_table(table, self.codebook)

    def get(self, ids: str | Sequence[str]) -> list[Memory]:
        """Memories by id, in the order asked; ids not found (or forgotten) are skipped.

        One call of at most 10,000 distinct ids (the server's ``max_ids_per_call``).
        An end-to-end encrypted memory this side cannot open comes back marked
        (``Memory.unopened``) with a ``UnopenedMemoryWarning``; the others are whole.

        Raises
        ------
        LimitExceededError
            More than 10,000 ids: split them into several calls (a bound, so one call
            cannot keep the server busy for tens of seconds).
        """
        wanted = list(dict.fromkeys(id_list(ids)))
        if not wanted:
            return []
        check_id_count(wanted, "get")
        body = IdsRequest(tenant=self.tenant, ids=wanted).to_bytes()
        table = self.sealer.observe(self._transport.action_table("get", body, RECORD_SCHEMA))
        found = {m.id: m for m in memories_from_table(table, self.codebook)}
        return [found[i] for i in wanted if i in found]

    def iter_scan(
        self, tier: str | Sequence[str] | None = None, *, strict: bool = True, **filters: Any
    ) -> Iterator[pa.RecordBatch]:
        """Stream records as RecordBatches with a decoded ``text`` column.

        Filters: ``ids``, ``since_hlc``, ``kind``, ``session``, ``created_after``,
        ``created_before`` (datetime or ISO text), ``occurred_after`` (inclusive) and
        ``occurred_before`` (exclusive) on when it happened (datetime, ISO text or epoch
        seconds; the same as a ``where`` on ``occurred_at``), ``where``,
        ``include_deleted``. The client's ``timeout`` bounds the whole stream.

        Each batch is the record columns, ``text`` and ``occurred_at`` (a UTC
        timestamp read from metadata; null for a memory without one). A sealed memory this
        side cannot open has a null ``text`` (with an ``UnopenedMemoryWarning``); a batch
        of which nothing opens raises its ``KeyMissingError``. ``strict=False`` does
        neither, for a reader that deals with unopened memories itself (consolidation).
        """
        for batch in self.iter_records(tier, **filters):
            opened = with_text(batch, self.codebook, strict=strict)
            yield opened.append_column(OCCURRED_AT_FIELD, occurred_at_column(opened))

    def iter_records(
        self, tier: str | Sequence[str] | None = None, **filters: Any
    ) -> Iterator[pa.RecordBatch]:
        """Stream records as stored (payloads not decoded, sealed ones still sealed: open them
        with ``codebook.open``); filters as in ``iter_scan``."""
        ticket = self._scan_request(tier, filters).to_bytes()
        yield from map(self.sealer.observe, self._transport.stream(ticket, RECORD_SCHEMA))

    def scan(self, tier: str | Sequence[str] | None = None, **filters: Any) -> pa.Table:
        """All records ``iter_scan`` yields, as one Table (record columns, ``text`` and
        ``occurred_at``)."""
        return pa.Table.from_batches(list(self.iter_scan(tier, **filters)), schema=SCAN_SCHEMA)

    def stats(self) -> dict[str, Any]:
        """Counts and bytes per tier, as the server reports them."""
        return self._transport.action_json("stats", StatsRequest(tenant=self.tenant).to_bytes())

    def whoami(self) -> dict[str, Any]:
        """The rights of this client's token: tenant, principal, tiers, clearance, expiry."""
        return self._transport.action_json("whoami", b"")

    def health(self) -> dict[str, Any]:
        """Liveness and version of the server."""
        return self._transport.action_json("health", b"")

    def compact(self, *, min_waste: float = 0.0, dry_run: bool = False) -> dict[str, Any]:
        """Have the server rewrite its storage without dead space (owner token only).

        Deleted, superseded and re-encoded memories leave space the database keeps; this
        gives it back, online (reads go on, writes pause for the final catch-up). Runs
        only when at least ``min_waste`` (0 to 1) of the file is dead; ``dry_run`` returns
        the estimate alone. Large stores take a while: give the client a timeout to match
        (about 20 s a GB here); the server finishes a compaction the client gave up on.
        """
        request = CompactRequest(min_waste=min_waste, dry_run=dry_run)
        return self._transport.action_json("compact", request.to_bytes())

    def tiers(self) -> list[dict[str, Any]]:
        """One ``{"tier", "memories", "bytes"}`` per tier the server lists."""
        infos = self._transport.list_flights(StatsRequest(tenant=self.tenant).to_bytes())
        return [
            {
                "tier": _listed_tier(info.descriptor.command),
                "memories": info.total_records,
                "bytes": info.total_bytes,
            }
            for info in infos
        ]

    # -- compression ----------------------------------------------------------

    def encode(
        self, text: str, tier: str, agent: str | None = None, *, codec: str | None = None
    ) -> EncodedText:
        """``text`` compressed as the policy (or ``codec``) says for ``tier``."""
        chosen = codec or self.codec_policy.get(tier, CODEC_ZSTD_DICT)
        if chosen != CODEC_LM and len(utf8(text)) < MIN_COMPRESS_BYTES:
            return encode_text(text)  # stored as is: no need to look up a dictionary
        newest = self._dictionaries.newest(tier) if chosen in (CODEC_ZSTD_DICT, CODEC_LM) else None
        lm = self.codebook.lm() if chosen == CODEC_LM else None
        return encode_text(
            text,
            codec=chosen,
            dictionary=newest.dictionary if newest else None,
            lm=lm,
            agent=agent,
        )

    def train_dictionary(self, tier: str, *, force: bool = False) -> TrainingReport:
        """Train a zstd dictionary on ``tier``'s texts and keep it if it measurably helps.

        Trains only once the tier has grown to twice what the current
        dictionary saw (``force`` skips that check); keeps the result only if
        it compresses held-out texts at least 2% better. Old dictionaries stay.
        """
        current = self._dictionaries.newest(tier)
        count = int(self.stats()["tiers"].get(tier, {}).get("memories", 0))
        # The tier's size when it was trained (older dictionaries: the texts they saw, then all).
        seen = _tier_size_at_training(current.metadata) if current else 0
        if not force and count < max(MIN_SAMPLES, seen * RETRAIN_GROWTH):
            due = max(MIN_SAMPLES, int(seen * RETRAIN_GROWTH))
            return TrainingReport(
                tier,
                False,
                f"{count} memories in {tier}; training is due at {due} (or pass force)",
                current.dictionary.dict_id if current else None,
            )
        samples, privacy = self._training_samples(tier)
        data, report = train_dictionary(samples, current.dictionary if current else None)
        report = TrainingReport(**{**report.as_dict(), "tier": tier})
        if data is not None:
            meta = {
                "trained_on": len(samples),
                "tier_memories": count,
                "held_out_ratio": report.held_out_ratio,
                "previous": current.dictionary.dict_id if current else None,
            }
            row = dictionary_row(
                data,
                tenant=self.tenant,
                tier=tier,
                privacy=privacy,
                metadata=meta,
                created_at=datetime.now(timezone.utc),
            )
            acks = self.sealer.write([row], self._transport.put)  # sealed if its texts were
            self._dictionaries.add(row, acks[0].hlcs[0])
        return report

    def recompress(
        self,
        tier: str,
        codec: str,
        *,
        older_than: timedelta | None = None,
        session: str | None = None,
        progress: Callable[[RecompressReport], Any] | None = None,
    ) -> RecompressReport:
        """Re-encode ``tier``'s memories (or one ``session``'s) with ``codec``; every text is
        kept byte for byte.

        Each new payload is decoded and checked against the memory's content
        hash before it is sent, and the server writes it only if the memory
        was not edited meanwhile. See ``aimem recompress``.
        """
        return recompress(
            self,
            self._upload,
            tier,
            codec,
            older_than=older_than,
            session=session,
            progress=progress,
        )

    def consolidate(
        self,
        *,
        session: str | None = None,
        tier: str = "working",
        older_than: timedelta | str | None = None,
        dry_run: bool = False,
        llm: Any = None,
        target_tier: str = "long_term",
        summary_tokens: int = 100,
        max_facts: int = 8,
        demote: Any = None,
        allow_remote_private: Sequence[str] = (),
        progress: Callable[..., Any] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> ConsolidationReport:
        """Consolidate ``tier``'s sessions: each becomes a summary plus the facts it alone holds.

        Per session, one model call writes a ``kind="summary"`` memory and ``kind="fact"``
        memories (one sentence each, its subject named, dates absolute) into
        ``target_tier``, with the highest privacy of the session's turns. Each lists
        the memories it came from in metadata ``"aimem:sources"`` (a summary: all its
        session's turns; a fact: 1-3) and names its session in ``"aimem:consolidates"``.
        Facts whose names, numbers or dates do not follow from their sources are
        dropped and counted; a newer fact with the same key supersedes an older one
        (kept, as ``kind="superseded_fact"`` pointing at its successor).

        Idempotent: a session whose turns did not change costs no model call; one that
        gained turns is consolidated again. A session that fails (model down, timeout,
        invalid output, a private session and a remote model) fails alone and is tried
        again next run: see the report's ``failed``.

        Parameters
        ----------
        session : str, optional
            Only this session.
        tier : str
            The tier whose sessions are consolidated (default ``working``).
        older_than : timedelta or str, optional
            Only sessions idle this long (``"1d"``, ``"12h"``): the schedule's setting.
        dry_run : bool
            Report what would be consolidated; write nothing, call no model.
        llm : ChatModel, optional
            The model (``aios_memory.client.llm.open_llm(...)``); default: ``open_llm()``
            with the ``AIMEM_LLM_*`` environment (the embedded local model when unset).
        target_tier, summary_tokens, max_facts
            Where results go, the summary's budget in tokens, facts asked at most.
        demote : str or Demotion or dict of tier -> str, optional
            What happens to the raw turns once consolidated: ``keep`` (default),
            ``recompress`` (to the ``lm`` codec) or ``forget-after=30d``.
        allow_remote_private : list of str
            Tiers whose private sessions may go to a model not on this machine.
        progress : callable, optional
            ``progress(outcome, number, total)`` after each session.
        should_stop : callable, optional
            Asked before each session; True ends the run there (the session under way
            finishes first) and the report says ``stopped``: how a daemon stops promptly.
        """
        policy = policy_from(
            target_tier=target_tier,
            summary_tokens=summary_tokens,
            max_facts=max_facts,
            demote=demote,
            tier=tier,
            allow_remote_private=allow_remote_private,
        )
        return consolidate(
            self,
            session=session,
            tier=tier,
            older_than=older_than,
            dry_run=dry_run,
            llm=llm,
            policy=policy,
            progress=progress,
            should_stop=should_stop,
        )

    def reconstruct(self, session: str) -> Reconstruction:
        """A readable account of ``session`` from its summary and facts (and the raw turns
        where still kept), marked as reconstructed; nothing in it is new.

        Raises
        ------
        NotFoundError
            The session has neither a summary nor turns here.
        """
        return reconstruct_session(self, session)

    def dictionaries(self) -> list[dict[str, Any]]:
        """The tenant's trained dictionaries: ``dict_id``, ``tier``, ``bytes`` and how trained."""
        return self._dictionaries.describe()

    def _training_samples(self, tier: str) -> tuple[list[bytes], int]:
        """Texts of ``tier`` to train on, oldest first, up to ``MAX_TRAINING_BYTES``."""
        samples, privacy, total = [], 0, 0
        rows = (row for batch in self.iter_records(tier) for row in batch.to_pylist())
        for row in map(self.sealer.open, rows):
            if row["kind"] == DICTIONARY_KIND or row["codec"] == CODEC_LM:
                continue  # the model's payloads cost a decode each; the rest are enough
            samples.append(self.codebook.decode(row, max_bytes=DEFAULT_LIMITS.max_text_bytes))
            privacy = max(privacy, row["privacy"])
            total += len(samples[-1])
            if total >= MAX_TRAINING_BYTES:
                break  # the rest of the scan is cancelled with its stream
        return samples, privacy

    def _fetch_dictionaries(self) -> list[dict[str, Any]]:
        ticket = ScanRequest(tenant=self.tenant, kind=DICTIONARY_KIND).to_bytes()
        return [
            self.sealer.open(row)
            for batch in self._transport.stream(ticket, RECORD_SCHEMA)
            for row in batch.to_pylist()
        ]

    # -- deprecated: scenes live in aios_memory.client.scenes (``Scenes(memory)``) ---------
    # Thin aliases for one release; each warns, naming its replacement, and calls the one
    # ``Scenes`` this client keeps (so the replayer cache is shared between the calls).

    def remember_scene(self, scene: Scene, description: str, **options: Any) -> str:
        """Deprecated, removed in the next release: use ``Scenes(memory).remember``."""
        return self._scene_alias("remember_scene", "remember").remember(
            scene, description, **options
        )

    def scene(self, episode_id: str) -> EncodedScene:
        """Deprecated, removed in the next release: use ``Scenes(memory).get``."""
        return self._scene_alias("scene", "get").get(episode_id)

    def scene_replayer(self, episode_id: str) -> Replayer:
        """Deprecated, removed in the next release: use ``Scenes(memory).replayer``."""
        return self._scene_alias("scene_replayer", "replayer").replayer(episode_id)

    def scene_state(self, episode_id: str, t: float) -> dict[str, ObjectState]:
        """Deprecated, removed in the next release: use ``Scenes(memory).state``."""
        return self._scene_alias("scene_state", "state").state(episode_id, t)

    def scene_render(self, episode_id: str, t: float, path: str | Path, **options: Any) -> Path:
        """Deprecated, removed in the next release: use ``Scenes(memory).render``."""
        return self._scene_alias("scene_render", "render").render(episode_id, t, path, **options)

    def scenes(self) -> list[dict[str, Any]]:
        """Deprecated, removed in the next release: use ``Scenes(memory).list``."""
        return self._scene_alias("scenes", "list").list()

    def _scene_alias(self, old: str, new: str) -> Scenes:
        # Imported here, never at module level: the SDK loads no scene code unless asked.
        from aios_memory.client.scenes import Scenes

        warnings.warn(
            f"MemoryClient.{old} is deprecated and will be removed in the next release; use "
            f"Scenes(memory).{new} (from aios_memory.client.scenes import Scenes)",
            DeprecationWarning,
            stacklevel=3,
        )
        if self._scenes is None:
            self._scenes = Scenes(self)
        return self._scenes

    # -- internals ------------------------------------------------------------

    def _defaults(self, **values: Any) -> _records.Defaults:
        # The tenant as a callable: rows are checked before it is asked of the server.
        return _records.Defaults(
            tenant=lambda: self.tenant, embed_model=self.embed_model, encode=self.encode, **values
        )

    def _upload(self, batches: list[pa.RecordBatch], *, reencode: bool = False) -> list[PutAck]:
        acks: list[PutAck] = []
        for group in _records.plan_puts(batches):
            try:
                acks += self._transport.put(group, reencode=reencode)
            except ConnectionFailedError:  # one retry: same ids and content are idempotent
                acks += self._transport.put(group, reencode=reencode)
        return acks

    def _scan_request(self, tier: Any, filters: dict[str, Any]) -> ScanRequest:
        unknown = sorted(set(filters) - set(_SCAN_FILTERS) - set(_OCCURRED_FILTERS))
        if unknown:
            raise InvalidRequestError(
                f"unknown scan filters {unknown}; use {[*_SCAN_FILTERS, *_OCCURRED_FILTERS]}"
            )
        after, before = (filters.pop(name, None) for name in _OCCURRED_FILTERS)
        filters["where"] = where_occurred(filters.get("where"), after, before)
        for name in ("created_after", "created_before"):
            if isinstance(filters.get(name), datetime):
                filters[name] = filters[name].isoformat()
        if isinstance(filters.get("ids"), str):
            filters["ids"] = [filters["ids"]]
        request = ScanRequest(tier=tier_arg(tier), **filters)
        request.check()
        return dataclasses.replace(request, tenant=self.tenant)  # checked before asking whoami


def _listed_tier(command: bytes | None) -> Any:
    try:
        return ScanRequest.from_bytes(command or b"").tier
    except InvalidRequestError as exc:
        raise CorruptDataError(
            f"the server listed a flight without a scan request: {exc}"
        ) from None


def _tier_size_at_training(metadata: dict[str, Any]) -> int:
    return int(metadata.get("tier_memories", metadata.get("trained_on", 0)))
