"""Hybrid search: the derived indexes of one data directory, and recall over them.

Owns the ``IndexSet`` (vectors per tenant, tier and model; keywords per
tenant), the ``HitCache`` (hit rows in memory, no SQL point lookups), the
allowed rows of each filter seen since the last write, and the fusion of the
two arms (``fusion.fuse``). It is apart from the record store so that a store
is about records and this is about ranking them: it knows no SQL. The store
answers its questions through callbacks (live labels of a key, vectors of
labels, the keyword backlog, the hit rows, the rows a filter allows, the
dimension of a model), exactly as ``IndexSet`` takes them, and tells it of
every committed write under its write lock.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa

from aios_memory.client.codec.vectors import dequantize
from aios_memory.schemas import (
    MAX_CLEARANCE,
    TIERS,
    InvalidVectorError,
    SearchRequest,
    View,
)

from ._hit_cache import CACHED_COLUMNS, HitCache
from .allowed_rows import AllowedCache, AllowedRows
from .fusion import fuse
from .index_set import IndexSet, VectorKey
from .keyword_index import KeywordDoc
from .vector_index import HnswParams

__all__ = ["HybridSearch", "AllowedSeqs", "HitRows", "Dimension", "DeadVector"]

AllowedSeqs = Callable[[SearchRequest, list[str], View | None, int | None], np.ndarray]
"""``(request, tiers, view, after_seq) -> seqs`` of the live rows a ``where`` and a view
admit (only those with a seq above ``after_seq`` unless it is None)."""
HitRows = Callable[[list[str]], pa.Table]
"""``columns -> live rows`` with ``seq`` and those columns, ordered by ``seq``."""
Dimension = Callable[[str, str], int | None]
"""``(tenant, embed_model) -> dimension`` of the model's vectors, None if it has none yet."""
DeadVector = tuple[VectorKey, int]
"""A replaced row's vector to remove: its index's key and its label (``seq``)."""

_CANDIDATES_MIN = 50
log = logging.getLogger("aios_memory.server")


class HybridSearch:
    """Vector and keyword search fused, with the caller's filters applied before the top-k.

    Parameters
    ----------
    root
        The folder of the derived indexes (``index/`` of a data directory).
    params
        hnswlib parameters of every vector index.
    write_lock
        The record store's write lock: the caches change under it.
    dimension, live_labels, fetch_vectors, keyword_backlog, hit_rows, allowed_seqs
        The record store's answers (see ``Dimension``, ``IndexSet``, ``HitRows`` and
        ``AllowedSeqs``).
    """

    def __init__(
        self,
        root: Path,
        params: HnswParams,
        write_lock: threading.Lock,
        *,
        dimension: Dimension,
        live_labels: Callable[[VectorKey], np.ndarray],
        fetch_vectors: Callable[[VectorKey, np.ndarray], np.ndarray],
        keyword_backlog: Callable[[str, int], Iterable[KeywordDoc]],
        hit_rows: HitRows,
        allowed_seqs: AllowedSeqs,
    ) -> None:
        self._write_lock = write_lock
        self._dimension, self._allowed_seqs = dimension, allowed_seqs
        self._hits = HitCache(lambda: hit_rows(CACHED_COLUMNS))
        self._allowed = AllowedCache()
        self._indexes = IndexSet(root, params, live_labels, fetch_vectors, keyword_backlog)

    @property
    def pending(self) -> int:
        """Vectors added but not yet built into their graphs."""
        return self._indexes.pending

    @property
    def events(self) -> list[str]:
        """What was rebuilt since the store opened (for stats and tests)."""
        return list(self._indexes.events)

    # -- opening ----------------------------------------------------------------------------
    def warm(self, tenants: list[str], vector_keys: list[VectorKey]) -> None:
        """Open (load, verify, catch up) every index and the hit rows now, so that no
        tenant's first recall pays for it; one log line per tenant.

        Done before the server answers rather than in the background: a search meanwhile
        would need an exact fallback over every vector to stay complete, and a start that
        takes as long as the slowest first request is what the user already waited.
        """
        started = time.monotonic()
        self._hits.warm()
        by_tenant: dict[str, list[VectorKey]] = {t: [] for t in tenants}
        for key in vector_keys:
            by_tenant.setdefault(key[0], []).append(key)
        for n, (tenant, keys) in enumerate(sorted(by_tenant.items()), 1):
            t0 = time.monotonic()
            keyword = self._indexes.keyword(tenant)
            vectors = sum(
                len(self._indexes.vector(key, self._known_dimension(key))) for key in keys
            )
            log.info(
                "opened the indexes of tenant %s (%d/%d): %d documents, %d vectors in %d "
                "indexes, %.2f s",
                tenant,
                n,
                len(by_tenant),
                len(keyword),
                vectors,
                len(keys),
                time.monotonic() - t0,
            )
        if by_tenant:
            log.info("indexes ready in %.2f s", time.monotonic() - started)

    # -- writing ----------------------------------------------------------------------------
    def open_keywords(self, tenants: Iterable[str]) -> None:
        """Open the keyword indexes of ``tenants`` before a commit.

        One opened after the commit would catch up on the put's own rows from the
        records, and send its deferred rows to the model instead of taking their texts.
        """
        for tenant in tenants:
            self._indexes.keyword(tenant)

    def committed(
        self,
        rows: pa.Table,
        texts: list[str | None],
        sealed: pa.Table,
        replaced: list[int],
        dead_vectors: list[DeadVector],
    ) -> None:
        """Index a put just committed (call under the write lock).

        Parameters
        ----------
        rows
            The rows written, with ``seq``, in seq order.
        texts
            The text of each row for the keyword index (None: none, or later).
        sealed
            The vectors of sealed rows opened here (``store.sealed_vectors``), with ``seq``.
        replaced
            The seqs of the stored rows the put replaced (or deleted).
        dead_vectors
            The vectors of those rows, to remove from their indexes.
        """
        seqs = rows.column("seq").to_numpy()
        tenants = set(rows.column("tenant").to_pylist())
        self._allowed.committed(int(seqs.max()) if len(seqs) else 0, replaced, tenants)
        self._hits.append(rows, len(replaced))
        for key, label in dead_vectors:
            index = self._indexes.existing_vector(key)
            if index is not None:
                index.remove([label])
        self.add_vectors(rows)
        if sealed.num_rows:
            self.add_vectors(sealed)
        by_tenant: dict[str, list[KeywordDoc]] = {}
        columns = (rows.column(c).to_pylist() for c in ("tenant", "id", "seq", "tier", "privacy"))
        for tenant, id_, seq, tier, privacy, text in zip(*columns, texts, strict=True):
            by_tenant.setdefault(tenant, []).append(KeywordDoc(id_, seq, tier, privacy, text))
        for tenant, docs in by_tenant.items():
            # Seqs are unique across tenants: each index drops only the ones it holds.
            self._indexes.keyword(tenant).apply(docs, replaced)
        self._indexes.notify()

    def add_vectors(self, rows: pa.Table) -> None:
        """Add the live vectors of committed ``rows`` (with ``seq``) to their indexes."""
        groups: dict[VectorKey, list[int]] = {}
        columns = (
            rows.column(c).to_pylist()
            for c in ("tenant", "tier", "embed_model", "embedding_scale", "deleted")
        )
        for i, (tenant, tier, model, scale, deleted) in enumerate(zip(*columns, strict=True)):
            if scale is not None and not deleted:
                groups.setdefault((tenant, tier, model), []).append(i)
        for key, positions in groups.items():
            index = self._indexes.existing_vector(key)
            if index is None:
                # Opening reconciles with the committed records, which already hold these rows.
                self._indexes.vector(key, self._known_dimension(key))
                continue
            part = rows.take(pa.array(positions, pa.int64()))
            vectors = dequantize(
                part.column("embedding").combine_chunks(),
                part.column("embedding_scale").combine_chunks(),
            )
            index.add(part.column("seq").to_numpy(), vectors)
        self._indexes.notify()

    def _known_dimension(self, key: VectorKey) -> int:
        dim = self._dimension(key[0], key[2])
        if dim is None:  # the store registers a model with its first committed vector
            raise KeyError((key[0], key[2]))
        return dim

    def index_keywords(self, tenant: str, docs: list[KeywordDoc]) -> None:
        """Give ``docs`` of ``tenant`` to its keyword index (a row indexed late)."""
        self._indexes.keyword(tenant).apply(docs)

    def forget_filters(self) -> None:
        """Drop the allowed rows of every filter: what they admit changed (sealed fields were
        opened in place, under the write lock)."""
        self._allowed.clear()

    # -- reading ----------------------------------------------------------------------------
    def search(
        self,
        request: SearchRequest,
        query_vector: np.ndarray | None,
        embed_model: str | None,
        *,
        view: View | None = None,
    ) -> pa.Table:
        """Hits (``HIT_SCHEMA``), best first, filters applied before the top-k is cut.

        Parameters
        ----------
        request
            The search: tenant, tiers, query, mode, ``where`` and ``k``.
        query_vector
            The query's unit vector, or None (keyword only).
        embed_model
            The model of ``query_vector``.
        view
            The caller's rights (None: all of the tenant).
        """
        tiers = [t for t in _tiers_of(request.tier) if view is None or t in view.tiers]
        allowed = self._allowed_rows(request, tiers, view)
        depth = min(max(request.k * 2, _CANDIDATES_MIN), 2000)
        vector_hits = keyword_hits = None
        if request.mode != "keyword" and query_vector is not None and embed_model:
            vector_hits = self._vector_candidates(
                request.tenant,
                tiers,
                embed_model,
                query_vector,
                depth,
                None if allowed is None else allowed.seqs,
            )
        if request.mode != "vector" and request.query:
            # A clearance alone is a range inside tantivy's query, much cheaper than a set
            # of allowed rows (bench/privacy.py); a where or a reader list needs the set.
            by_rows = bool(request.where) or (view is not None and view.reader is not None)
            keyword_hits = self._indexes.keyword(request.tenant).search(
                request.query,
                depth,
                tiers,
                allowed if by_rows else None,
                view.max_privacy if view is not None and not by_rows else None,
            )
        return self._hits.take(fuse(vector_hits, keyword_hits, request.k))

    def _allowed_rows(
        self, request: SearchRequest, tiers: list[str], view: View | None
    ) -> AllowedRows | None:
        """Live rows a ``where`` and the caller's view admit, cached and brought up to date
        by writes (agents repeat filters); None when neither filters more than ``tiers``."""
        if not request.where and not _filters_rows(view):
            return None
        key = json.dumps(
            [
                request.tenant,
                tiers,
                request.where,
                view and [view.tiers, view.max_privacy, view.reader],
            ],
            sort_keys=True,
        )
        return self._allowed.get(
            key, request.tenant, lambda after: self._allowed_seqs(request, tiers, view, after)
        )

    def _vector_candidates(
        self,
        tenant: str,
        tiers: list[str],
        model: str,
        query: np.ndarray,
        depth: int,
        allowed: np.ndarray | None,
    ) -> list[tuple[int, float]]:
        dim = self._dimension(tenant, model)
        if dim is None:
            return []
        if len(query) != dim:
            raise InvalidVectorError(
                f"query vector has dimension {len(query)}; model {model!r} stores {dim}",
                expected=dim,
                got=len(query),
            )
        found: list[tuple[int, float]] = []
        for tier in tiers:
            index = self._indexes.vector((tenant, tier, model), dim)
            if len(index):
                labels, distances = index.search(query, depth, allowed)
                found.extend((int(s), float(d)) for s, d in zip(labels, distances, strict=True))
        return sorted(found, key=lambda pair: pair[1])[:depth]

    # -- upkeep -----------------------------------------------------------------------------
    def checkpoint(self) -> None:
        """Save the indexes that changed (they are rebuilt if this never runs)."""
        self._indexes.checkpoint()

    def close(self) -> None:
        """Stop the index builder, save what changed and release every index file."""
        self._indexes.close()


def _tiers_of(tier: str | list[str] | None) -> list[str]:
    if tier is None:
        return list(TIERS)
    return [tier] if isinstance(tier, str) else list(tier)


def _filters_rows(view: View | None) -> bool:
    """Whether ``view`` hides rows of the tiers it admits (a clearance or a reader list)."""
    return view is not None and (view.reader is not None or view.max_privacy < MAX_CLEARANCE)
