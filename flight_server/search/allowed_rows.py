"""The rows a filtered search may return, in the form each index takes, each made once.

The store caches one per distinct filter (a ``where``, a token's view) until
the next write. Converting 10,000 allowed rows for tantivy (a Python list,
then a term-set query) and checking them for hnswlib took about 10 ms of a
27 ms filtered search at 20,000 memories (bench/privacy.py); agents repeat
their filters, so the conversions are paid once per filter, not per query.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

__all__ = ["AllowedRows"]


class AllowedRows:
    """Sorted, unique row sequence numbers, with memoized derived forms."""

    def __init__(self, seqs: np.ndarray) -> None:
        self.seqs = np.unique(np.asarray(seqs, np.uint64))
        self._memo: dict[Hashable, Any] = {}

    def __len__(self) -> int:
        return len(self.seqs)

    def memo(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """``make()``, computed once per ``key`` for these rows."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def as_list(self) -> list[int]:
        """The rows as Python ints (what tantivy's term-set query takes)."""
        return self.memo("list", self.seqs.tolist)
