"""A summary held to its budget after the model wrote it.

Small models do not keep to "at most N words" (Qwen2.5-Coder-1.5B wrote 360-455 tokens
a session whatever the budget), so the budget is enforced on the answer: whole sentences
are kept while they fit, counted by the model's own tokenizer. A first sentence longer
than the whole budget is cut at a word and marked with an ellipsis, so a cut is never
mistaken for what the model said.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["fit_summary", "ELLIPSIS"]

ELLIPSIS = "…"
# A sentence ends at . ! or ? (or one of them and a closing quote or bracket) and white space.
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+")


def fit_summary(text: str, budget: int, count: Callable[[str], int]) -> tuple[str, int]:
    """``text`` cut to at most ``budget`` tokens (by ``count``), and the tokens cut off."""
    text = " ".join(text.split())
    total = count(text)
    if total <= budget:
        return text, 0
    kept = _whole_sentences(text, budget, count) or _words(text, budget, count)
    return kept, total - count(kept)


def _whole_sentences(text: str, budget: int, count: Callable[[str], int]) -> str:
    sentences = [s for s in _SENTENCE_END.split(text) if s]
    kept = ""
    for sentence in sentences:
        longer = f"{kept} {sentence}".strip()
        if count(longer) > budget:
            break
        kept = longer
    return kept


def _words(text: str, budget: int, count: Callable[[str], int]) -> str:
    words = text.split(" ")
    low, high = 0, len(words)  # the most words whose prefix, with the ellipsis, fits
    while low < high:
        middle = (low + high + 1) // 2
        if count(" ".join(words[:middle]) + ELLIPSIS) <= budget:
            low = middle
        else:
            high = middle - 1
    return " ".join(words[:low]).rstrip(",;:") + ELLIPSIS
