"""Which vector layout should storage v2 keep? Bytes, add rate, start-up, speed and recall.

Issue 18 asks for one stored copy of each vector (today: int8 in DuckDB plus a float32
copy inside the saved hnswlib graph, 1,684 bytes a vector) and 300 bytes a memory
all-in. Each layout below is built on the same seeded vectors (``_vectors.py``:
clustered, 384-d) at each ``--sizes``, side by side in one run:

- ``hnswlib_f32``: today. Stored: the int8 column (388 bytes) and the saved graph.
- ``binary_int8``: one copy, the int8 column; in memory, centred sign codes (48 bytes,
  made from the int8 at start) pick ``--depth`` candidates by Hamming distance (faiss
  ``IndexBinaryFlat``), rescored exactly against the int8 vectors.
- ``ivf_sq8``: faiss IVF over 8-bit scalar codes; stored: the codes and a 2-byte list id.
- ``rabitq_flat_Nbit`` / ``ivf_rabitq_Nbit``: faiss RaBitQ codes (1, 2 or 4 bits a
  dimension plus per-vector factors), scanned whole or through an IVF; stored: the codes
  (and the list id).

For each: stored bytes a vector, add rate in batches of 1,000 (2 threads, the ingest
path), seconds to make it searchable again from what is stored (start-up), single-query
p50/p99 on one thread, recall@10 against exact float32, and the same with a filter that
keeps 10% of the rows (a bitmap, no over-fetch). ``--data`` adds LoCoMo: evidence
recall@10 alone and fused with the server's keyword arm, on real e5 vectors, through
``embedding_bytes.py``'s harness (one conversation a tenant, the mean or RaBitQ centre
taken from the OTHER conversations, as a shared per-model constant would be).

Example::

    .venv/bin/python bench/vector_layouts.py --sizes 100000,1000000 \\
        --data PATH/TO/locomo-dev --embeddings /tmp/locomo-e5.npz
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Before numpy and faiss load: one BLAS thread, and OpenMP threads that sleep when idle.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import base_parser, emit, latency_ms, log, quick  # noqa: E402
from _vectors import exact_top_k, make_dataset  # noqa: E402

K = 10
ADD_BATCH = 1000
ADD_THREADS = 2
DEFAULT_SIZES = "100000"
DEFAULT_DEPTH = 200
FILTER_GROUP = 3  # rows whose group is this one: 1/GROUPS of them (10%)


@dataclass
class Built:
    """A layout after ``add``: how to search it, what it stores, how to reopen it."""

    search: Callable[[np.ndarray, np.ndarray | None], np.ndarray]
    stored_bytes: float  # a vector, on disk, everything the layout needs
    reopen: Callable[[], Any]  # rebuild the searchable structure from what is stored
    memory_bytes: float  # a vector, in memory while serving


Layout = Callable[[np.ndarray, np.ndarray], Built]  # (vectors, training sample) -> Built


def _faiss() -> Any:
    import faiss

    return faiss


def _int8(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from aios_memory.client.codec.vectors import quantize

    codes, scales = quantize(vectors)
    return codes, scales.astype(np.float32)


def _add_batched(add: Callable[[np.ndarray], None], vectors: np.ndarray) -> None:
    for first in range(0, len(vectors), ADD_BATCH):
        add(vectors[first : first + ADD_BATCH])


def _bitmap_selector(allowed: np.ndarray, n: int) -> tuple[Any, np.ndarray]:
    faiss = _faiss()
    mask = np.zeros(n, bool)
    mask[allowed] = True
    packed = np.packbits(mask, bitorder="little")
    return faiss.IDSelectorBitmap(n, faiss.swig_ptr(packed)), packed  # keep packed alive


# --- the layouts -------------------------------------------------------------------------------


def hnswlib_f32(vectors: np.ndarray, _: np.ndarray) -> Built:
    """Today's layout: hnswlib's graph (it keeps float32 vectors) beside the int8 column."""
    import hnswlib

    n, dim = vectors.shape
    index = hnswlib.Index(space="ip", dim=dim)
    index.init_index(n, M=16, ef_construction=200)
    index.set_num_threads(ADD_THREADS)
    start = [0]

    def add(batch: np.ndarray) -> None:
        index.add_items(batch, np.arange(start[0], start[0] + len(batch)))
        start[0] += len(batch)

    _add_batched(add, vectors)
    index.set_num_threads(1)
    folder = tempfile.mkdtemp(prefix="layout-hnsw-")
    path = os.path.join(folder, "index.hnsw")
    index.save_index(path)
    file_bytes = os.path.getsize(path) / n
    mask = np.zeros(n, bool)

    def search(q: np.ndarray, allowed: np.ndarray | None) -> np.ndarray:
        if allowed is None:
            index.set_ef(64)
            return index.knn_query(q, K)[0][0]
        index.set_ef(310)  # the server's filtered ef
        return index.knn_query(q, K, filter=mask.__getitem__)[0][0]

    def reopen() -> Any:
        again = hnswlib.Index(space="ip", dim=dim)
        again.load_index(path, max_elements=n)
        return again

    search.prepare = lambda allowed: mask.__setitem__(allowed, True)  # type: ignore[attr-defined]
    return Built(search, file_bytes + 388, reopen, file_bytes + 388)


def binary_int8(depth: int) -> Layout:
    """Centred sign codes for candidates, int8 for the exact order: one stored copy."""

    def build(vectors: np.ndarray, sample: np.ndarray) -> Built:
        faiss = _faiss()
        mean = sample.mean(axis=0).astype(np.float32)
        codes, scales = _int8(vectors)
        index = faiss.IndexBinaryFlat(vectors.shape[1])

        def add_from_int8(rows: slice) -> None:
            decoded = codes[rows].astype(np.float32) * scales[rows, None]
            index.add(np.packbits(decoded > mean, axis=1))

        for first in range(0, len(vectors), ADD_BATCH):
            add_from_int8(slice(first, first + ADD_BATCH))

        def search(q: np.ndarray, allowed: np.ndarray | None) -> np.ndarray:
            query_code = np.packbits(q > mean)[None, :]
            params = None
            if allowed is not None:
                params = faiss.SearchParameters()
                params.sel = search.selector  # type: ignore[attr-defined]
            _, found = index.search(query_code, depth, params=params)
            rows = found[0][found[0] >= 0]
            scores = (codes[rows].astype(np.float32) @ q) * scales[rows]
            return rows[np.argsort(-scores)[:K]]

        def reopen() -> Any:
            index.reset()
            for first in range(0, len(vectors), 65536):
                add_from_int8(slice(first, first + 65536))
            return index

        def prepare(allowed: np.ndarray) -> None:
            search.selector, search.packed = _bitmap_selector(allowed, len(vectors))  # type: ignore[attr-defined]

        search.prepare = prepare  # type: ignore[attr-defined]
        return Built(search, 388, reopen, 388 + vectors.shape[1] / 8)

    return build


def faiss_codes(kind: str, bits: int, nprobe: int = 0) -> Layout:
    """faiss ``IndexRaBitQ`` / ``IndexIVFRaBitQ`` / ``IndexIVFScalarQuantizer`` (8 bits)."""

    def build(vectors: np.ndarray, sample: np.ndarray) -> Built:
        faiss = _faiss()
        n, dim = vectors.shape
        nlist = max(16, int(np.sqrt(n)))
        index = _faiss_index(kind, bits, dim, nlist)
        faiss.omp_set_num_threads(ADD_THREADS)
        index.train(sample)
        _add_batched(index.add, vectors)
        faiss.omp_set_num_threads(1)
        ivf = kind != "rabitq_flat"
        stored = index.sa_code_size()  # an IVF's includes the list number (1-2 bytes)

        def params(allowed: np.ndarray | None) -> Any:
            p = _search_params(kind, nprobe)
            if allowed is not None:
                p.sel = search.selector  # type: ignore[attr-defined]
            return p

        def search(q: np.ndarray, allowed: np.ndarray | None) -> np.ndarray:
            _, found = index.search(q[None, :], K, params=params(allowed))
            return found[0]

        def prepare(allowed: np.ndarray) -> None:
            search.selector, search.packed = _bitmap_selector(allowed, n)  # type: ignore[attr-defined]

        search.prepare = prepare  # type: ignore[attr-defined]
        refill = _ivf_reopen(index) if ivf else _flat_reopen(index)

        def reopen() -> Any:
            again = refill()
            _check_same(index, again, sample[:20], _search_params(kind, nprobe))
            return again

        return Built(search, stored, reopen, stored + (8 if ivf else 0))

    return build


def _faiss_index(kind: str, bits: int, dim: int, nlist: int) -> Any:
    faiss = _faiss()
    ip = faiss.METRIC_INNER_PRODUCT
    if kind == "rabitq_flat":
        return faiss.IndexRaBitQ(dim, ip, bits) if bits > 1 else faiss.IndexRaBitQ(dim, ip)
    quantizer = faiss.IndexFlatIP(dim)
    if kind == "ivf_sq8":
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, ip
        )
    elif bits > 1:
        index = faiss.IndexIVFRaBitQ(quantizer, dim, nlist, ip, True, bits)
    else:
        index = faiss.IndexIVFRaBitQ(quantizer, dim, nlist, ip)
    return index


def _search_params(kind: str, nprobe: int) -> Any:
    faiss = _faiss()
    if kind == "rabitq_flat":
        params = faiss.RaBitQSearchParameters()
        params.qb = 8
        return params
    params = (
        faiss.IVFRaBitQSearchParameters() if kind == "ivf_rabitq" else faiss.SearchParametersIVF()
    )
    params.nprobe = nprobe
    if kind == "ivf_rabitq":
        params.qb = 8
    return params


def _check_same(index: Any, again: Any, queries: np.ndarray, params: Any) -> None:
    """A reopened index must answer exactly as the one it was rebuilt from."""
    if not np.array_equal(
        index.search(queries, K, params=params)[1], again.search(queries, K, params=params)[1]
    ):
        raise AssertionError("the index rebuilt from its stored codes answers differently")


def _flat_reopen(index: Any) -> Callable[[], Any]:
    """Start-up from stored codes: a fresh index of the same centre, the codes added as they are."""
    faiss = _faiss()
    codes = faiss.vector_to_array(index.codes).reshape(index.ntotal, index.code_size).copy()

    def reopen() -> Any:
        again = faiss.clone_index(index)
        again.reset()
        again.add_sa_codes(codes)
        return again

    return reopen


def _ivf_reopen(index: Any) -> Callable[[], Any]:
    """Start-up from stored (list id, code) rows: each list refilled from them, no re-encoding."""
    faiss = _faiss()
    lists = faiss.extract_index_ivf(index).invlists
    stored = []
    for number in range(lists.nlist):
        size = lists.list_size(number)
        if size:
            ids = faiss.rev_swig_ptr(lists.get_ids(number), size).copy()
            codes = faiss.rev_swig_ptr(lists.get_codes(number), size * lists.code_size).copy()
            stored.append((number, ids, codes))

    def reopen() -> Any:
        again = faiss.clone_index(index)
        again.reset()
        target = faiss.extract_index_ivf(again).invlists
        for number, ids, codes in stored:
            target.add_entries(number, len(ids), faiss.swig_ptr(ids), faiss.swig_ptr(codes))
        again.ntotal = index.ntotal
        return again

    return reopen


def layouts(depth: int) -> dict[str, Layout]:
    """Every layout compared, by name."""
    out: dict[str, Layout] = {
        "hnswlib_f32": hnswlib_f32,
        f"binary_int8_depth{depth}": binary_int8(depth),
        "ivf_sq8_nprobe16": faiss_codes("ivf_sq8", 8, 16),
    }
    for bits in (1, 2, 4):
        out[f"rabitq_flat_{bits}bit"] = faiss_codes("rabitq_flat", bits)
        out[f"ivf_rabitq_{bits}bit_nprobe16"] = faiss_codes("ivf_rabitq", bits, 16)
    return out


# --- measuring ---------------------------------------------------------------------------------


def recall_vs_exact(found: list[np.ndarray], truth: np.ndarray) -> float:
    """Mean share of the exact top 10 found."""
    hits = [
        len(set(f[:K].tolist()) & set(t.tolist())) / K for f, t in zip(found, truth, strict=True)
    ]
    return round(float(np.mean(hits)), 4)


def queries_timed(
    search: Callable[[np.ndarray, np.ndarray | None], np.ndarray],
    queries: np.ndarray,
    allowed: np.ndarray | None,
) -> tuple[list[np.ndarray], dict[str, float]]:
    """Every query once, one at a time, as the server asks them."""
    found, seconds = [], []
    for q in queries:
        start = time.perf_counter()
        found.append(search(q, allowed))
        seconds.append(time.perf_counter() - start)
    return found, latency_ms(seconds)


def measure(name: str, layout: Layout, data: Any, truth: dict[str, Any], params: dict) -> None:
    """Build, reopen and query one layout; one JSON line."""
    vectors, sample = data.vectors, data.vectors[: min(len(data.vectors), 100_000)]
    start = time.perf_counter()
    built = layout(vectors, sample)
    add_s = time.perf_counter() - start
    start = time.perf_counter()
    built.reopen()
    reopen_s = time.perf_counter() - start
    found, plain = queries_timed(built.search, data.queries, None)
    built.search.prepare(truth["allowed"])  # type: ignore[attr-defined]
    found_f, filtered = queries_timed(built.search, data.queries, truth["allowed"])
    n = len(vectors)
    emit(
        "vector_layouts",
        {**params, "layout": name, "rows": n},
        layout=name,
        rows=n,
        stored_bytes_per_vector=round(built.stored_bytes, 1),
        memory_bytes_per_vector=round(built.memory_bytes, 1),
        add_per_s=round(n / add_s, 1),
        reopen_s=round(reopen_s, 3),
        query=plain,
        recall_at_10=recall_vs_exact(found, truth["plain"]),
        filtered_query=filtered,
        filtered_recall_at_10=recall_vs_exact(found_f, truth["filtered"]),
    )
    log(
        f"  {name} at {n:,}: {built.stored_bytes:.0f} B, add {n / add_s:,.0f}/s, reopen "
        f"{reopen_s:.2f} s, p50 {plain['p50_ms']} ms, R@10 {recall_vs_exact(found, truth['plain'])}"
    )


def run_size(n: int, queries: int, chosen: dict[str, Layout], params: dict) -> None:
    """Every layout at one size, on one dataset."""
    data = make_dataset(n, queries, seed=params["seed"])
    allowed = np.flatnonzero(data.groups == FILTER_GROUP)
    truth = {
        "allowed": allowed,
        "plain": exact_top_k(data.vectors, data.queries, K),
        "filtered": exact_top_k(data.vectors, data.queries, K, rows=allowed),
    }
    log(f"{n:,} vectors, {queries} queries, filter keeps {len(allowed) / n:.0%}")
    for name, layout in chosen.items():
        measure(name, layout, data, truth, params)


# --- LoCoMo: what the layouts keep of recall on real vectors ------------------------------------


def locomo_methods() -> list[Any]:
    """Today's int8, the binary/int8 layout and RaBitQ codes, as ``embedding_bytes`` methods."""
    import embedding_bytes as eb

    out = [
        eb.Method("float32", 1536, eb.exact(np.float32)),
        eb.Method("int8", 388, eb.int8, "today"),
        eb.Method("int8/other_centered", 388, eb.int8_centered("other")),
        # A conversation has 369-680 turns: 100 candidates, not all of them, go to the int8.
        eb.Method("binary_int8_depth100", 388, _locomo_binary_int8(100)),
    ]
    for bits in (1, 2, 4):
        size = _faiss().IndexRaBitQ(384, _faiss().METRIC_INNER_PRODUCT, bits).code_size
        out.append(eb.Method(f"rabitq_flat_{bits}bit", size, _locomo_rabitq(bits)))
    return out


def _locomo_binary_int8(depth: int) -> Callable[[Any, dict], Any]:
    def build(c: Any, conv_means: dict) -> Any:
        import embedding_bytes as eb

        mean = conv_means["other"].astype(np.float32)
        codes, scales = _int8(c.passages)
        decoded = codes.astype(np.float32) * scales[:, None]
        signs = np.packbits(decoded > mean, axis=1)

        def search(q: np.ndarray) -> Any:
            distances = np.bitwise_count(signs ^ np.packbits(q > mean)).sum(axis=1)
            rows = np.argsort(distances, kind="stable")[:depth]
            scores = np.full(len(codes), -np.inf, np.float32)
            scores[rows] = (codes[rows].astype(np.float32) @ q) * scales[rows]
            return eb._top(scores, eb.DEPTH)[: min(eb.DEPTH, len(rows))]

        return search

    return build


def _locomo_rabitq(bits: int) -> Callable[[Any, dict], Any]:
    def build(c: Any, conv_means: dict) -> Any:
        import embedding_bytes as eb

        faiss = _faiss()
        index = (
            faiss.IndexRaBitQ(384, faiss.METRIC_INNER_PRODUCT, bits)
            if bits > 1
            else (faiss.IndexRaBitQ(384, faiss.METRIC_INNER_PRODUCT))
        )
        index.train(conv_means["other"][None, :].astype(np.float32))  # its centre: that mean
        index.add(c.passages.astype(np.float32))
        params = _search_params("rabitq_flat", 0)

        def search(q: np.ndarray) -> Any:
            scores, rows = index.search(q[None, :].astype(np.float32), eb.DEPTH, params=params)
            return [
                (int(r), 1.0 - float(s)) for r, s in zip(rows[0], scores[0], strict=True) if r >= 0
            ]

        return search

    return build


def run_locomo(args: Any, params: dict) -> None:
    """Evidence recall@10 of each layout's vectors, alone and fused with BM25."""
    import embedding_bytes as eb
    from _common import conversation_files, summarize_recall

    conversations = eb.load(conversation_files(args.data))
    log(f"LoCoMo: embedding {sum(len(c.texts) for c in conversations)} turns (or the cache)")
    eb.embed(conversations, args.embeddings)
    chosen = locomo_methods()
    result = eb.run(conversations, chosen)
    base = result["methods"]["int8"]
    for m in chosen:
        got = result["methods"][m.name]
        emit(
            "vector_layouts",
            {**params, "layout": m.name, "data": "locomo"},
            layout=m.name,
            data="locomo",
            stored_bytes_per_vector=m.bytes_per_vector,
            alone={**summarize_recall(got["alone"]), **eb.versus(got["alone"], base["alone"])},
            fused={**summarize_recall(got["fused"]), **eb.versus(got["fused"], base["fused"])},
            query=latency_ms(got["s"]),
        )


def main() -> None:
    """Every layout at every size, then LoCoMo when ``--data`` is given."""
    parser = base_parser(__doc__.split("\n")[0], data=True, data_optional=True)
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="comma-separated vector counts")
    parser.add_argument("--queries", type=int, default=500, help="queries at each size")
    parser.add_argument("--depth", type=int, default=DEFAULT_DEPTH, help="binary_int8 candidates")
    parser.add_argument("--layouts", default="", help="comma-separated names (default: all)")
    parser.add_argument("--seed", type=int, default=3, help="data seed")
    parser.add_argument("--embeddings", default="", help="LoCoMo embeddings cache (.npz)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if quick():
        sizes, args.queries = [5000], 50
    chosen = layouts(args.depth)
    if args.layouts:
        chosen = {name: chosen[name] for name in args.layouts.split(",")}
    params = {"seed": args.seed, "dim": 384, "k": K, "add_batch": ADD_BATCH, "depth": args.depth}
    for n in sizes:
        run_size(n, args.queries, chosen, params)
    if args.data:
        run_locomo(args, params)


if __name__ == "__main__":
    main()
