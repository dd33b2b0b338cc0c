"""Could the vector index file be smaller? hnswlib (float32 only) against usearch f32/f16/i8.

The server's hnswlib file stores every vector as float32 (1,536 bytes at 384
dimensions) beside the graph, which alone exceeds the 1,000 bytes/memory
target once the index is persisted. This builds the same seeded clustered
vectors into each index with the same M / ef_construction / ef, saves it, and
reports bytes per vector, build time, query latency and recall@10 against
exact search. Needs only numpy and hnswlib (usearch rows appear when the
``usearch`` package is importable; the `[bench]` extra installs it).

Example::

    .venv/bin/python bench/vector_index_bytes.py --size 100000 --queries 1000
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import base_parser, emit, latency_ms, log, quick  # noqa: E402
from _vectors import Dataset, exact_top_k, make_dataset, overlap_at_k  # noqa: E402

K = 10


def hnswlib_index(
    data: Dataset, m: int, ef_construction: int, ef: int, path: Path
) -> tuple[Callable[[np.ndarray], list[int]], float]:
    """Build, save and reload an hnswlib index; the search function and the build seconds."""
    import hnswlib

    start = time.perf_counter()
    index = hnswlib.Index(space="cosine", dim=data.vectors.shape[1])
    index.init_index(max_elements=len(data.vectors), M=m, ef_construction=ef_construction)
    index.add_items(data.vectors, np.arange(len(data.vectors)), num_threads=2)
    seconds = time.perf_counter() - start
    index.save_index(str(path))
    index.set_ef(ef)
    index.set_num_threads(1)
    return lambda q: index.knn_query(q, k=K)[0][0].tolist(), seconds


def usearch_index(dtype: str) -> Callable[..., tuple[Callable[[np.ndarray], list[int]], float]]:
    """A builder like ``hnswlib_index`` for a usearch index storing ``dtype`` scalars.

    For ``cos`` with ``i8``, usearch normalizes each vector and then multiplies
    by 127, so 384-d unit vectors use about +-24 of the int8 range (checked with
    ``Index.get(key, dtype="i8")``; scaling the input first makes no difference).
    The server's own int8 codes scale by the largest component instead.
    """

    def build(
        data: Dataset, m: int, ef_construction: int, ef: int, path: Path
    ) -> tuple[Callable[[np.ndarray], list[int]], float]:
        from usearch.index import Index

        start = time.perf_counter()
        index = Index(
            ndim=data.vectors.shape[1],
            metric="cos",
            dtype=dtype,
            connectivity=m,
            expansion_add=ef_construction,
            expansion_search=ef,
        )
        index.add(np.arange(len(data.vectors)), data.vectors, threads=2)
        seconds = time.perf_counter() - start
        index.save(str(path))
        return lambda q: [int(x) for x in index.search(q, K, threads=1).keys], seconds

    return build


def builders() -> dict[str, Callable[..., Any]]:
    """The index kinds available here."""
    found: dict[str, Callable[..., Any]] = {"hnswlib_f32": hnswlib_index}
    try:
        import usearch  # noqa: F401
    except ImportError:
        log("usearch is not importable: only hnswlib is measured")
        return found
    for dtype in ("f32", "f16", "i8"):
        found[f"usearch_{dtype}"] = usearch_index(dtype)
    return found


def measure(
    name: str, build: Callable[..., Any], data: Dataset, truth: np.ndarray, args: Any
) -> None:
    """Build, save, query; one JSON line."""
    with tempfile.TemporaryDirectory(prefix="vib-") as folder:
        path = Path(folder) / "index.bin"
        search, build_s = build(data, args.m, args.ef_construction, args.ef, path)
        size = path.stat().st_size
        for q in data.queries[:20]:
            search(q)
        seconds, found = [], []
        for q in data.queries:
            start = time.perf_counter()
            found.append(search(q))
            seconds.append(time.perf_counter() - start)
    n = len(data.vectors)
    emit(
        "vector_index_bytes",
        {
            "size": n,
            "queries": len(data.queries),
            "dim": data.vectors.shape[1],
            "m": args.m,
            "ef_construction": args.ef_construction,
            "ef": args.ef,
            "seed": args.seed,
            "index": name,
        },
        index=name,
        file_bytes=size,
        bytes_per_vector=round(size / n, 1),
        build_s=round(build_s, 2),
        **latency_ms(seconds),
        **{"recall@10_vs_exact": overlap_at_k(found, truth, K)},
        usearch_version=_usearch(),
    )


def _usearch() -> str | None:
    try:
        import usearch

        return usearch.__version__
    except ImportError:
        return None


def main() -> None:
    """Every index kind on the same data, in turn."""
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=100000, help="vectors")
    parser.add_argument("--queries", type=int, default=1000, help="queries")
    parser.add_argument("--m", type=int, default=16, help="graph degree M")
    parser.add_argument("--ef-construction", type=int, default=200, help="ef at build")
    parser.add_argument("--ef", type=int, default=64, help="ef at search")
    parser.add_argument("--seed", type=int, default=0, help="data seed")
    args = parser.parse_args()
    if quick():
        args.size, args.queries = 2000, 50
    data = make_dataset(args.size, args.queries, seed=args.seed)
    truth = exact_top_k(data.vectors, data.queries, K)
    for name, build in builders().items():
        log(f"{name}: building {args.size}")
        measure(name, build, data, truth, args)


if __name__ == "__main__":
    main()
