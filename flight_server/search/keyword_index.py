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

import shutil
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import tantivy

from aios_memory.flight_server._files import read_manifest, verify_files, write_manifest

from ._stopwords import STOPWORDS
from .allowed_rows import AllowedRows

__all__ = ["KeywordDoc", "KeywordIndex"]

_WRITER_HEAP = 32 * 1024 * 1024
# Bump when the analyzer or the schema changes: an index built with another is rebuilt.
# v2 added privacy, so a clearance filters inside the query (bench/privacy.py).
ANALYZER = "en_memory_v2"
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
    """One tenant's BM25 index over every tier, thread-safe."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._schema = _schema()
        self._analyzer = _analyzer()
        self._lock = threading.Lock()
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

    def apply(self, docs: Iterable[KeywordDoc]) -> None:
        """Stage new versions and the removal of replaced or deleted ones.

        A tantivy commit fsyncs several files (17-55 ms measured here), which
        one-memory writes would pay every time; staged changes are committed
        by the next search (so a search always sees every write) or by
        ``flush`` from the background, whichever comes first.
        """
        with self._lock:
            for doc in docs:
                self._writer.delete_documents_by_term("id", doc.id)
                if doc.text is not None:
                    document = tantivy.Document(
                        id=doc.id, seq=doc.seq, tier=doc.tier, text=doc.text
                    )
                    document.add_unsigned("privacy", doc.privacy)  # a bare int would be i64
                    self._writer.add_document(document)
                self._staged_top = max(self._staged_top, doc.seq)
            if self._staged_since is None:
                self._staged_since = time.monotonic()

    def flush(self, older_than: float = 0.0) -> None:
        """Commit staged changes (only those staged ``older_than`` seconds ago or more)."""
        with self._lock:
            since = self._staged_since
            if since is None or time.monotonic() - since < older_than:
                return
            self._writer.commit()
            self._index.reload()
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
            clauses.append(
                (tantivy.Occur.Must, tantivy.Query.term_set_query(self._schema, "tier", tiers))
            )
        if max_privacy is not None:
            clauses.append(
                (
                    tantivy.Occur.Must,
                    tantivy.Query.range_query(
                        self._schema, "privacy", tantivy.FieldType.Unsigned, 0, max_privacy
                    ),
                )
            )
        if allowed is not None:
            clauses.append(
                (
                    tantivy.Occur.Must,
                    allowed.memo(
                        ("tantivy-seq", id(self)),
                        lambda: tantivy.Query.term_set_query(
                            self._schema, "seq", allowed.as_list()
                        ),
                    ),
                )
            )
        self.flush()
        searcher = self._index.searcher()
        result = searcher.search(tantivy.Query.boolean_query(clauses), limit)
        return [
            (int(searcher.doc(address)["seq"][0]), float(score)) for score, address in result.hits
        ]

    def __len__(self) -> int:
        self.flush()
        return int(self._index.searcher().num_docs)

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
