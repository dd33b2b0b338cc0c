"""The QA part of ``consolidation.py``: the local model answers from a store's top 10, then judges.

Each answer is one ``chat_text`` call (a short-answer prompt over the retrieved texts, each
prefixed with its date when the memory has one), each verdict one ``chat_json`` call (``{"correct":
true|false}``) by the same model, given the question, the gold answer and the model's answer;
except where the verdict is plain without it (the gold answer's very words: right; "unknown" or
nothing: wrong), which saves a call (rows say ``judged: false``).

This is the slow part (several seconds a question on 2 cores), so every result is appended to a
JSONL cache as soon as it is made, keyed by the store, the question and a hash of what the
model was shown (the prompt version, the model's name and the texts): a run that stops resumes
where it stopped, and a changed retrieval is asked again rather than read back stale.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
from _consolidation_scoring import plain_words

PROMPT_VERSION = 1
ANSWER_TOKENS = 32
VERDICT_TOKENS = 16
MAX_CONTEXT_CHARS = 6000  # ten turns are ~1,500 characters; ten summaries of 200 tokens ~8,000
ANSWER_SYSTEM = (
    "You answer questions about a conversation between two people, using only the memories "
    "given. Answer in a few words (a name, a date, a short phrase), with no explanation. "
    "If the memories do not say, answer: unknown."
)
JUDGE_SYSTEM = (
    "You grade answers. Given a question, the correct answer and a proposed answer, say whether "
    "the proposed answer means the same as the correct one (a different wording, or a date in "
    'another format, is still correct). Reply with JSON: {"correct": true} or {"correct": false}.'
)


class Verdict(pydantic.BaseModel):
    """The judge's reply."""

    correct: bool


@dataclass(frozen=True)
class Asked:
    """One question to answer from one store's texts."""

    store: str
    question_key: str
    question: str
    gold: str
    category: int
    texts: tuple[str, ...]


def context_of(texts: Sequence[str]) -> str:
    """The memories as the model sees them: numbered, cut at ``MAX_CONTEXT_CHARS``."""
    lines = [f"{n}. {text}" for n, text in enumerate(texts, 1)]
    return "\n".join(lines)[:MAX_CONTEXT_CHARS]


def cache_key(asked: Asked, model_name: str) -> str:
    """Store, question and a digest of everything the model is shown."""
    digest = hashlib.sha256(
        json.dumps([PROMPT_VERSION, model_name, asked.question, asked.texts]).encode()
    ).hexdigest()[:16]
    return f"{asked.store}|{asked.question_key}|{digest}"


def answer_one(model: Any, asked: Asked) -> dict[str, Any]:
    """The model's answer and its verdict on it (one call each)."""
    start = time.perf_counter()
    prompt = f"Memories:\n{context_of(asked.texts)}\n\nQuestion: {asked.question}\nAnswer:"
    answer = model.chat_text(
        [{"role": "system", "content": ANSWER_SYSTEM}, {"role": "user", "content": prompt}],
        max_tokens=ANSWER_TOKENS,
    ).strip()
    obvious = _obvious_verdict(answer, asked.gold)
    if obvious is not None:
        return {"answer": answer, "correct": obvious, "judged": False, "s": _since(start)}
    judged = f"Question: {asked.question}\nCorrect answer: {asked.gold}\nProposed answer: {answer}"
    verdict = model.chat_json(
        [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": judged}],
        Verdict,
        max_tokens=VERDICT_TOKENS,
    )
    return {"answer": answer, "correct": verdict.correct, "judged": True, "s": _since(start)}


def _obvious_verdict(answer: str, gold: str) -> bool | None:
    """The verdict without asking, where asking could only waste a call: the same words as the
    gold answer are right, "unknown" or nothing is wrong (the judge takes ~5 s on 2 cores)."""
    words, gold_words = plain_words(answer), plain_words(gold)
    if words and words == gold_words:
        return True
    if not words or words == ["unknown"]:
        return False
    return None


def _since(start: float) -> float:
    return round(time.perf_counter() - start, 2)


class AnswerCache:
    """Answers already made, read from and appended to one JSONL file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[str, dict[str, Any]] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    self.done[row["key"]] = row

    def get_or_answer(self, model: Any, asked: Asked) -> tuple[dict[str, Any], bool]:
        """The cached row for ``asked``, or a new one (appended and flushed at once)."""
        key = cache_key(asked, model.name)
        if key in self.done:
            return self.done[key], True
        row = {"key": key, "store": asked.store, "category": asked.category, "gold": asked.gold}
        row.update(answer_one(model, asked))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(row) + "\n")
        self.done[key] = row
        return row, False
