"""Long texts of ordinary words for tests that store big memories."""

from __future__ import annotations

import numpy as np

__all__ = ["long_text"]

_WORDS = [
    "garden",
    "harbour",
    "violin",
    "lantern",
    "meadow",
    "ferry",
    "orchard",
    "bakery",
    "glacier",
    "canyon",
    "library",
    "market",
    "bicycle",
    "festival",
    "thunder",
    "pepper",
    "compass",
    "window",
    "river",
    "mountain",
]


def long_text(chars: int, tail: str, seed: int = 0) -> str:
    """Sentences of ordinary words, ``chars`` long, ending with ``tail`` (a word found
    nowhere else, so a keyword search for it finds the text by its end)."""
    rng = np.random.default_rng(seed)
    sentences = []
    size = 0
    while size < chars:
        words = rng.choice(_WORDS, 12)
        sentence = f"On day {len(sentences)} the {' '.join(words)}."
        sentences.append(sentence)
        size += len(sentence) + 1
    return " ".join(sentences)[: chars - len(tail) - 1] + " " + tail
