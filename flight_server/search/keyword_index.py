"""BM25 keyword search per tenant, on tantivy, derived from the records.

tantivy was chosen over bm25s and DuckDB's fts extension because it adds
documents incrementally and keeps its index on disk (bm25s and ``PRAGMA
create_fts_index`` rebuild from scratch on every change); bench/RESULTS.md
has the quality and speed figures.

The index is a cache like the vector index: a checkpoint writes a manifest
with the hash of every file and the highest ``seq`` indexed; on open the
files must match it, then only rows written after that ``seq`` are applied.
A crash between checkpoints, a missing file or a changed byte costs a rebuild.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tantivy

from aios_memory.flight_server._files import read_manifest, verify_files, write_manifest

from ._keyword_tail import StagedDoc, Tail, bm25, explained_stats
from ._stopwords import STOPWORDS
from .allowed_rows import AllowedRows

__all__ = ["KeywordDoc", "KeywordIndex"]

_WRITER_HEAP = 32 * 1024 * 1024
# Bump when the analyzer or the schema changes: an index built with another is rebuilt.
# v2 added privacy, so a clearance filters inside the query (bench/privacy.py).
ANALYZER = "en_memory_v2"
# A filter keeping at least this share of the documents is answered from unfiltered hits
# (``_overfetched``); a narrower one by a term set of its rows, as tantivy filters.
OVERFETCH_MIN_SHARE = 0.02
_LOCK_FILES = {".tantivy-writer.lock", ".tantivy-meta.lock", "manifest.json", "manifest.json.tmp"}


@dataclass(frozen=True)
class KeywordDoc:
    """What the keyword index needs of a record: ``text`` None means remove ``id``."""

    id: str
    seq: int
    tier: str
    privacy: int
    text: str | None


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("id", tokenizer_name="raw")
    builder.add_integer_field("seq", stored=True, indexed=True, fast=True)
    builder.add_text_field("tier", tokenizer_name="raw")
    builder.add_unsigned_field("privacy", indexed=True, fast=True)
    builder.add_text_field("text", tokenizer_name=ANALYZER, index_option="freq")
    return builder.build()


def _analyzer() -> tantivy.TextAnalyzer:
    """Words, lowercased, function words dropped, English-stemmed (bench/keyword_engines.py)."""
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(40))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.custom_stopword(sorted(STOPWORDS)))
        .filter(tantivy.Filter.stemmer("english"))
        .build()
    )


class KeywordIndex:
    """One tenant's BM25 index over every tier, thread-safe.

    Changes are staged in tantivy's writer and in a ``Tail`` that searches score
    themselves; the background builder commits them (``flush``), never a search.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._schema = _schema()
        self._analyzer = _analyzer()
        self._lock = threading.Lock()  # the writer's: apply, flush, checkpoint
        # Swaps of the searcher and the tail happen together under this one, so a search
        # never sees a committed change twice or a staged one not at all.
        self._view_lock = threading.Lock()
        self._tail = Tail()
        self.commits = 0
        self._writer_lost = False  # a full disk killed it: the tail is restaged at flush
        self.watermark = 0
        self.rebuilt = False
        self.dirty = False
        self._staged_since: float | None = None
        self._staged_top = 0
        self._index, self._writer = self._open()

    def _open(self) -> tuple[tantivy.Index, tantivy.IndexWriter]:
        manifest = read_manifest(self.directory)
        if (
            manifest is not None
            and manifest.get("analyzer") == ANALYZER
            and self._files_match(manifest)
        ):
            self.watermark = int(manifest.get("watermark", 0))
        else:
            self.rebuilt = self.directory.exists()  # a first open builds, it does not rebuild
            shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            index = tantivy.Index(self._schema, path=str(self.directory), reuse=True)
        except (ValueError, OSError):
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory.mkdir(parents=True)
            self.watermark, self.rebuilt = 0, True
            index = tantivy.Index(self._schema, path=str(self.directory), reuse=True)
        index.register_tokenizer(ANALYZER, _analyzer())
        return index, index.writer(heap_size=_WRITER_HEAP, num_threads=1)

    def _files_match(self, manifest: dict) -> bool:
        listed = set(manifest.get("files", {}))
        present = (
            {p.name for p in self.directory.iterdir()} - _LOCK_FILES
            if self.directory.exists()
            else set()
        )
        return listed == present and verify_files(self.directory, manifest)

    def apply(self, docs: Iterable[KeywordDoc], dead: Iterable[int] = ()) -> None:
        """Stage new versions and the removal of replaced or deleted ones.

        ``dead`` are the seqs of the stored versions these docs replace or delete. A
        tantivy commit fsyncs several files (17-55 ms measured here), which one-memory
        writes would pay every time: staged changes are searched in the tail at once
        and committed by ``flush`` from the background.
        """
        staged: dict[str, StagedDoc] = {}
        with self._lock:
            for doc in docs:
                staged[doc.id] = self._staged(doc)
                self._staged_top = max(self._staged_top, doc.seq)
            if staged and self._staged_since is None:
                self._staged_since = time.monotonic()
            # The tail first: it is what searches read, and it never fails.
            with self._view_lock:
                self._tail = self._tail.with_changes(staged, dead)
            if self._writer_lost:
                return  # the next flush stages the whole tail into a new writer
            try:
                for id_, one in staged.items():
                    self._stage(id_, one)
            except ValueError:  # a full disk killed the writer; the write itself is committed
                self._writer_lost = True

    def _stage(self, id_: str, doc: StagedDoc) -> None:
        """Give one staged version to the writer (lock held)."""
        self._writer.delete_documents_by_term("id", id_)
        if doc.text is not None:
            document = tantivy.Document(id=id_, seq=doc.seq, tier=doc.tier, text=doc.text)
            document.add_unsigned("privacy", doc.privacy)  # a bare int would be i64
            self._writer.add_document(document)

    def _restage(self) -> None:
        """After a failed commit or add (a full disk): a fresh writer holding the tail again.

        tantivy gives up a writer whose worker met an I/O error; the tail still has every
        staged version, so nothing is lost and this flush commits it all (lock held). Raises
        while the disk is still full; ``_writer_lost`` stays set until it succeeds."""
        with contextlib.suppress(ValueError):
            self._writer.rollback()
        del self._writer  # its lock file goes with it
        self._writer = self._index.writer(heap_size=_WRITER_HEAP, num_threads=1)
        for id_, doc in self._tail.docs.items():
            self._stage(id_, doc)
        self._writer_lost = False

    def _staged(self, doc: KeywordDoc) -> StagedDoc:
        return StagedDoc(doc.seq, doc.tier, doc.privacy, doc.text, self._analyzer.analyze)

    def flush(self, older_than: float = 0.0) -> None:
        """Commit staged changes (only those staged ``older_than`` seconds ago or more)."""
        with self._lock:
            since = self._staged_since
            if since is None or time.monotonic() - since < older_than:
                return
            try:
                if self._writer_lost:
                    self._restage()
                self._writer.commit()
            except ValueError:
                self._writer_lost = True
                raise
            self.commits += 1
            with self._view_lock:
                self._index.reload()
                self._tail = Tail()
            self.watermark = max(self.watermark, self._staged_top)
            self._staged_since = None
            self.dirty = True

    def search(
        self,
        text: str,
        limit: int,
        tiers: list[str] | None = None,
        allowed: AllowedRows | None = None,
        max_privacy: int | None = None,
    ) -> list[tuple[int, float]]:
        """``(seq, bm25 score)`` best first; ``tiers``, ``allowed`` and ``max_privacy``
        restrict inside the query. ``tiers`` None is every tier; an empty list is none."""
        # The query goes through the index's own analyzer, then an OR of its terms: no
        # query syntax to escape, and a question of only function words matches nothing.
        terms = sorted(set(self._analyzer.analyze(text)))
        # No tiers is what a view of no tiers leaves (a write-only token, or a tier asked
        # outside the view): it must match nothing, not lose its tier clause.
        if not terms or tiers == [] or (allowed is not None and not len(allowed)):
            return []
        query = tantivy.Query.boolean_query(
            [
                (tantivy.Occur.Should, tantivy.Query.term_query(self._schema, "text", term))
                for term in terms
            ]
        )
        clauses = [(tantivy.Occur.Must, query)]
        if tiers:
            clauses.append(_filter(tantivy.Query.term_set_query(self._schema, "tier", tiers)))
        if max_privacy is not None:
            clauses.append(
                _filter(
                    tantivy.Query.range_query(
                        self._schema, "privacy", tantivy.FieldType.Unsigned, 0, max_privacy
                    )
                )
            )
        with self._view_lock:
            tail, searcher = self._tail, self._index.searcher()
        hits, first = None, None
        if allowed is not None:
            found = self._overfetched(searcher, clauses, limit, allowed, tail.dead)
            if found is not None:
                hits, first = found
            clauses.append(
                allowed.memo(
                    ("tantivy-seq", id(self)),
                    lambda: _filter(
                        tantivy.Query.term_set_query(self._schema, "seq", allowed.as_list())
                    ),
                )
            )
        # Hits the tail killed are dropped after the cut: fetch enough to make up for them.
        full = tantivy.Query.boolean_query(clauses)
        if hits is None:
            result = searcher.search(full, limit + len(tail.dead))
            first = result.hits[0][1] if result.hits else None
            hits = {
                seq: float(score)
                for score, address in result.hits
                if (seq := int(searcher.doc(address)["seq"][0])) not in tail.dead
            }
        if tail:
            staged = tail.matching(
                terms, tiers, None if allowed is None else allowed.seqs, max_privacy
            )
            if staged:
                hits.update(self._tail_hits(searcher, full, first, tail, staged, terms))
        return sorted(hits.items(), key=lambda hit: (-hit[1], hit[0]))[:limit]

    def _overfetched(
        self,
        searcher: tantivy.Searcher,
        clauses: list[tuple[tantivy.Occur, tantivy.Query]],
        limit: int,
        allowed: AllowedRows,
        dead: set[int] | frozenset[int],
    ) -> tuple[dict[int, float], tantivy.DocAddress | None] | None:
        """The allowed hits among enough unfiltered ones and the best one's address, or None
        when that cannot tell.

        A broad filter as a term set of every allowed row made tantivy intersect 100,000
        terms a query at 1M documents (91 ms, bench/RESULTS.md 15c). Filters do not score, so
        the best allowed rows among the unfiltered top ``want`` are the filtered query's top
        ``limit`` whenever ``limit`` of them are there, or the unfiltered hits ran out.
        """
        share = len(allowed) / max(int(searcher.num_docs), 1)
        if share < OVERFETCH_MIN_SHARE:
            return None
        want = int(limit / share * 3) + 10 + len(dead)
        result = searcher.search(tantivy.Query.boolean_query(clauses), want)
        seqs = np.fromiter(
            (int(searcher.doc(address)["seq"][0]) for _, address in result.hits),
            np.uint64,
            len(result.hits),
        )
        at = np.minimum(np.searchsorted(allowed.seqs, seqs), len(allowed.seqs) - 1)
        keep = (allowed.seqs[at] == seqs) & ~np.isin(seqs, np.fromiter(dead, np.uint64))
        kept = [(hit, int(seq)) for hit, seq, k in zip(result.hits, seqs, keep, strict=True) if k]
        hits = {seq: float(score) for (score, _), seq in kept}
        if len(hits) >= limit or len(result.hits) < want:
            return hits, (kept[0][0][1] if kept else None)
        return None

    def _tail_hits(
        self,
        searcher: tantivy.Searcher,
        query: tantivy.Query,
        committed_hit: tantivy.DocAddress | None,
        tail: Tail,
        staged: list[StagedDoc],
        terms: list[str],
    ) -> dict[int, float]:
        """BM25 scores of the staged docs with the statistics the committed hits were
        scored with (tantivy's explanation of one of them), so equal texts score equal."""
        stats = explained_stats(query, searcher, committed_hit) if committed_hit else None
        if stats is None:  # no committed hit: estimate, counting the staged texts too
            texts = tail.texts()
            mean = sum(d.length for d in texts) / max(len(texts), 1)
            num_docs = int(searcher.num_docs) + len(texts)
            extra = {t: sum(1 for d in texts if d.terms and t in d.terms) for t in terms}
        else:
            num_docs, mean = stats
            extra = {}
        doc_freq = {t: int(searcher.doc_freq("text", t)) + extra.get(t, 0) for t in terms}
        return {doc.seq: bm25(doc, terms, doc_freq, num_docs, mean) for doc in staged}

    def __len__(self) -> int:
        """Documents searchable now, staged ones included (no commit)."""
        with self._view_lock:
            tail, searcher = self._tail, self._index.searcher()
        committed_dead = sum(
            len(searcher.search(tantivy.Query.term_query(self._schema, "seq", seq), 1).hits)
            for seq in tail.dead
        )
        return int(searcher.num_docs) - committed_dead + len(tail.texts())

    def checkpoint(self) -> None:
        """Record the files and watermark so the next open can trust them."""
        self.flush()
        with self._lock:
            self._writer.wait_merging_threads()
            self._writer = self._index.writer(heap_size=_WRITER_HEAP, num_threads=1)
            self._writer.garbage_collect_files()
            names = sorted(
                p.name
                for p in self.directory.iterdir()
                if p.name not in _LOCK_FILES and p.is_file()
            )
            write_manifest(self.directory, names, watermark=self.watermark, analyzer=ANALYZER)
            self.dirty = False

    def close(self) -> None:
        self.flush()
        if self.dirty or self.rebuilt:
            self.checkpoint()
        with self._lock:
            self._writer.wait_merging_threads()


def _filter(query: tantivy.Query) -> tuple[tantivy.Occur, tantivy.Query]:
    """A clause that restricts without scoring: a hit's score is its BM25 alone (before, each
    filter added the same 1.0 to every hit, so ranks are unchanged), which the tail can
    reproduce."""
    return tantivy.Occur.Must, tantivy.Query.const_score_query(query, 0.0)
