"""Hybrid recall over indexes derived from the records: no SQL, no records of its own.

::

    hybrid          HybridSearch: the index set, the hit cache, the allowed rows of each
                    filter and the fusion of the two arms, told of every committed write
    index_set       every derived index of a data directory, opened lazily, built off the
                    write path, saved atomically with checksums
    vector_index    one hnswlib graph per (tenant, tier, model), with a pending tail
    keyword_index   BM25 per tenant on tantivy, with a staged tail (_keyword_tail) that
                    searches score themselves, so no read commits
    allowed_rows    the rows a filter admits, in the form each index takes, brought up
                    to date by writes
    fusion          reciprocal rank fusion
    _hit_cache      hit rows in memory, in O(log n) Arrow chunks
    _rw_lock        searches share an index, build steps have it alone

Every index can be rebuilt from the records; the store answers its questions through
callbacks (live labels, vectors, the keyword backlog, hit rows, allowed rows).
"""

from .hybrid import HybridSearch
from .index_set import IndexSet
from .keyword_index import KeywordDoc, KeywordIndex
from .vector_index import HnswParams, VectorIndex

__all__ = ["HybridSearch", "IndexSet", "HnswParams", "VectorIndex", "KeywordIndex", "KeywordDoc"]
