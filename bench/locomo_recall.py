"""Does ``recall`` find the evidence? LoCoMo recall@5/@10 per mode, through the real server.

All conversations are imported into one server (embedder ``local``, tier
``long_term``); each question of categories 1-4 is asked with
``where={"conversation": name}``, k=10, in ``hybrid``, ``vector`` and
``keyword`` mode (in turn, question by question). The vector and keyword
arms are also fetched 50 deep and fused here with other weights, to see
whether the server's fusion (RRF, k=60, equal weights) can do better.

Example::

    .venv/bin/python bench/locomo_recall.py --data PATH/TO/locomo-dev
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    Question,
    base_parser,
    connect,
    conversation_files,
    data_name,
    emit,
    latency_ms,
    load_questions,
    locomo_turns,
    log,
    quick,
    running_server,
    summarize_recall,
    wait_until_indexed,
)

K = 10
DEPTH = 50  # the server fuses its arms' top max(2k, 50)
MODES = ("hybrid", "vector", "keyword")
TARGET_HYBRID_R10 = 0.60
TIER = "long_term"
QUICK_QUESTIONS = 30

Arm = list[tuple[str, str, float]]  # (dia_id, memory id, score), best first


@dataclass
class Corpus:
    """What was imported: the items, their ids (same order), the questions and the time taken."""

    items: list[Any]
    ids: list[str]
    questions: list[Question]
    import_s: float


def import_all(client: Any, files: list[Path]) -> Corpus:
    """Import every conversation into the server."""
    questions, items = [], []
    for path in files:
        turns = locomo_turns(path)
        items += turns
        questions += load_questions(path, {t.metadata["dia_id"] for t in turns})
    start = time.perf_counter()
    ids = client.remember_many(items, tier=TIER)
    return Corpus(items, ids, questions, time.perf_counter() - start)


def ask(client: Any, question: Question, mode: str, k: int) -> Arm:
    """One recall restricted to the question's conversation."""
    hits = client.recall(
        question.text, k=k, mode=mode, tier=TIER, where={"conversation": question.conversation}
    )
    return [(h.metadata["dia_id"], h.id, h.score) for h in hits]


def run_questions(client: Any, questions: list[Question]) -> dict[str, Any]:
    """Every mode at k=10 and both arms at DEPTH, question by question; hits and durations."""
    calls = {mode: (mode, K) for mode in MODES}
    calls.update({f"{arm}@{DEPTH}": (arm, DEPTH) for arm in ("vector", "keyword")})
    found: dict[str, list[Arm]] = {name: [] for name in calls}
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for number, question in enumerate(questions):
        for name, (mode, k) in calls.items():
            start = time.perf_counter()
            found[name].append(ask(client, question, mode, k))
            seconds[name].append(time.perf_counter() - start)
        if number % 100 == 0:
            log(f"    question {number}/{len(questions)}")
    return {"found": found, "seconds": seconds}


# --- fusion, re-done here on the two arms --------------------------------------------------


def rrf(
    vector: Arm, keyword: Arm, c: float = 60.0, w_vector: float = 1.0, w_keyword: float = 1.0
) -> list[str]:
    """Weighted reciprocal rank fusion; ties broken by memory id (time order) like the server."""
    scores: dict[tuple[str, str], float] = {}
    for arm, weight in ((vector, w_vector), (keyword, w_keyword)):
        for rank, (dia_id, memory_id, _) in enumerate(arm):
            key = (memory_id, dia_id)
            scores[key] = scores.get(key, 0.0) + weight / (c + rank + 1)
    ranked = sorted(scores.items(), key=lambda pair: (-pair[1], pair[0][0]))
    return [dia_id for (_, dia_id), _ in ranked]


def convex(vector: Arm, keyword: Arm, alpha: float) -> list[str]:
    """``alpha * cosine + (1 - alpha) * bm25 / max bm25`` (a missing arm scores 0)."""
    top = max((score for _, _, score in keyword), default=1.0) or 1.0
    scores: dict[tuple[str, str], float] = {}
    for dia_id, memory_id, score in vector:
        scores[(memory_id, dia_id)] = alpha * score
    for dia_id, memory_id, score in keyword:
        key = (memory_id, dia_id)
        scores[key] = scores.get(key, 0.0) + (1 - alpha) * score / top
    ranked = sorted(scores.items(), key=lambda pair: (-pair[1], pair[0][0]))
    return [dia_id for (_, dia_id), _ in ranked]


def fusions() -> dict[str, Callable[[Arm, Arm], list[str]]]:
    """The fusion rules to try, by name."""
    rules: dict[str, Callable[[Arm, Arm], list[str]]] = {}
    for c in (1, 10, 30, 60, 100):
        rules[f"rrf_c{c}"] = lambda v, kw, c=c: rrf(v, kw, c)
    for w in (0.5, 0.75, 1.5, 2.0, 3.0):
        rules[f"rrf_c60_keyword_x{w}"] = lambda v, kw, w=w: rrf(v, kw, 60, 1.0, w)
    for alpha in (0.3, 0.5, 0.7):
        rules[f"convex_alpha{alpha}"] = lambda v, kw, a=alpha: convex(v, kw, a)
    return rules


def report_modes(questions: list[Question], run: dict[str, Any], params: dict[str, Any]) -> None:
    """One line per server mode: recall overall and per category, and latency."""
    for name, arms in run["found"].items():
        rows = [(q, [dia for dia, _, _ in arm]) for q, arm in zip(questions, arms, strict=False)]
        summary = summarize_recall(rows)
        extra = (
            {"meets_target": summary["recall@10"] >= TARGET_HYBRID_R10} if name == "hybrid" else {}
        )
        emit(
            "locomo_recall",
            {**params, "mode": name},
            source="server",
            mode=name,
            **summary,
            latency=latency_ms(run["seconds"][name]),
            **extra,
        )


def report_fusions(questions: list[Question], run: dict[str, Any], params: dict[str, Any]) -> None:
    """One line per fusion rule, computed here from the two arms at DEPTH."""
    vectors, keywords = run["found"][f"vector@{DEPTH}"], run["found"][f"keyword@{DEPTH}"]
    for name, rule in fusions().items():
        rows = [
            (q, rule(v, kw)[:K]) for q, v, kw in zip(questions, vectors, keywords, strict=False)
        ]
        emit(
            "locomo_recall",
            {**params, "fusion": name, "depth": DEPTH},
            source="client_fusion",
            mode=f"fused/{name}",
            **summarize_recall(rows),
        )


def local_keyword_arm(corpus: Corpus, stopwords: str) -> list[Arm]:
    """What if the server's keyword arm removed stopwords? The same turns in a local tantivy
    index per conversation (en_stem + the ``stopwords`` list, see keyword_engines.py)."""
    from keyword_engines import TantivyEngine

    by_conversation: dict[str, list[tuple[str, str, str]]] = {}
    for item, memory_id in zip(corpus.items, corpus.ids, strict=False):
        by_conversation.setdefault(item.metadata["conversation"], []).append(
            (item.text, item.metadata["dia_id"], memory_id)
        )
    arms: list[Arm] = []
    with tempfile.TemporaryDirectory(prefix="kw-what-if-") as folder:
        engines = {}
        for name, turns in by_conversation.items():
            engines[name] = TantivyEngine(f"en_stem_{stopwords}", "terms", Path(folder))
            engines[name].build([text for text, _, _ in turns])
        for question in corpus.questions:
            turns = by_conversation[question.conversation]
            rows = engines[question.conversation].search(question.text, DEPTH)
            arms.append([(turns[r][1], turns[r][2], 0.0) for r in rows])
    return arms


def report_what_if(corpus: Corpus, run: dict[str, Any], params: dict[str, Any]) -> None:
    """Hybrid with a stopword-aware keyword arm: server vector arm + local tantivy arm."""
    vectors = run["found"][f"vector@{DEPTH}"]
    for stopwords in ("none", "stop", "stopplus"):  # "none": the control, like the server
        keywords = local_keyword_arm(corpus, stopwords)
        rules = {
            "keyword_only": lambda v, kw: [dia for dia, _, _ in kw],
            "rrf_c60": lambda v, kw: rrf(v, kw, 60),
            "rrf_c10": lambda v, kw: rrf(v, kw, 10),
        }
        for name, rule in rules.items():
            rows = [
                (q, rule(v, kw)[:K])
                for q, v, kw in zip(corpus.questions, vectors, keywords, strict=False)
            ]
            emit(
                "locomo_recall",
                {
                    **params,
                    "keyword_arm": f"local tantivy en_stem_{stopwords}",
                    "fusion": name,
                    "depth": DEPTH,
                },
                source="what_if",
                mode=f"what_if/{stopwords}/{name}",
                **summarize_recall(rows),
            )


def main() -> None:
    """Import, ask, report."""
    parser = base_parser(__doc__.split("\n")[0], data=True)
    args = parser.parse_args()
    files = conversation_files(args.data)
    with (
        running_server(embedder="local", checkpoint_seconds=0) as running,
        connect(running, timeout=3600.0) as client,
    ):
        log(f"importing {len(files)} conversations")
        corpus = import_all(client, files)
        corpus.questions = corpus.questions[:QUICK_QUESTIONS] if quick() else corpus.questions
        log(
            f"imported {len(corpus.ids)} memories in {corpus.import_s:.1f} s; "
            f"{len(corpus.questions)} questions"
        )
        wait_until_indexed(client)
        run = run_questions(client, corpus.questions)
    params = {
        "data": data_name(args.data),
        "conversations": [p.stem for p in files],
        "memories": len(corpus.ids),
        "k": K,
        "tier": TIER,
        "embedder": "local",
        "categories": [1, 2, 3, 4],
        "import_s": round(corpus.import_s, 1),
    }
    report_modes(corpus.questions, run, params)
    report_fusions(corpus.questions, run, params)
    report_what_if(corpus, run, params)


if __name__ == "__main__":
    main()
