"""Greedy sampling under a JSON-schema grammar, checking one token before masking them all.

llama-cpp-python puts the grammar in its sampler chain before the choice, so every step the
grammar walks all 151,936 tokens of Qwen's vocabulary: 36 ms of CPU a token here
(``bench/llm_speed.py``, ``grammar-cost``), a quarter or more of a token's time on 2 cores.
llama.cpp's own ``common_sampler`` does better, and this does the same: take the greedy
token, ask the grammar about that one token (0.02 ms), and only when the grammar refuses it
(10 of 404 steps in a LoCoMo session) mask the whole vocabulary. At temperature 0 the answer
is the same token for token (``tests/test_llm.py`` compares both).

The grammar must never be told of a token it refuses: llama.cpp aborts the process. So a
token is accepted only after the grammar allowed it, and a failure inside the callback
(which ctypes would swallow) ends the answer and is raised after it.
"""

from __future__ import annotations

import ctypes
import json
from typing import Any

import numpy as np

from aios_memory.schemas import LLMOutputError

__all__ = ["GreedyGrammar"]

_TOKEN_DATA = np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)


class _Candidates:
    """A ``llama_token_data_array`` over numpy memory, reused from step to step."""

    def __init__(self, llama_cpp: Any, size: int) -> None:
        self.data = np.recarray((size,), dtype=_TOKEN_DATA)
        self.array = llama_cpp.llama_token_data_array(
            data=self.data.ctypes.data_as(llama_cpp.llama_token_data_p),
            size=size,
            sorted=False,
            selected=-1,
        )

    def fill(self, ids: np.ndarray, logits: np.ndarray) -> None:
        self.data.id[:] = ids
        self.data.logit[:] = logits
        self.data.p[:] = 0.0
        self.array.size, self.array.sorted, self.array.selected = len(ids), False, -1


class GreedyGrammar:
    """A llama-cpp-python logits processor: the greedy token that ``schema``'s grammar allows.

    Use a new one per answer (it holds the grammar's state); ``close`` frees it, and
    ``check`` raises what went wrong inside the callback, if anything did.
    """

    def __init__(self, llama: Any, schema: dict[str, Any]) -> None:
        import llama_cpp
        from llama_cpp.llama_grammar import LlamaGrammar

        self._lib = llama_cpp
        grammar = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
        self._sampler = llama_cpp.llama_sampler_init_grammar(
            llama._model.vocab, grammar._grammar.encode(), grammar._root.encode()
        )
        self._ids = np.arange(llama.n_vocab(), dtype=np.intc)
        self._one = _Candidates(llama_cpp, 1)
        self._all = _Candidates(llama_cpp, len(self._ids))
        self._end = llama.token_eos()
        self.steps = 0
        self.masked = 0  # steps where the greedy token was refused and the vocabulary masked
        self.error: Exception | None = None

    def __call__(self, input_ids: Any, logits: np.ndarray) -> np.ndarray:
        chosen = self._end
        if self.error is None:
            try:
                chosen = self._choose(logits)
            except Exception as exc:  # raised by ``check``: ctypes would only print it
                self.error = exc
                chosen = self._end
        only = np.full_like(logits, -np.inf)
        only[chosen] = 0.0
        return only

    def check(self) -> None:
        """Raise the error that ended the answer early, if one did."""
        if self.error is not None:
            raise LLMOutputError(f"sampling under the JSON grammar failed: {self.error}")

    def close(self) -> None:
        if self._sampler is not None:
            self._lib.llama_sampler_free(self._sampler)
            self._sampler = None

    def _choose(self, logits: np.ndarray) -> int:
        self.steps += 1
        token = int(np.argmax(logits))
        if not self._allows(token, logits):
            self.masked += 1
            token = self._best_allowed(logits)
        self._lib.llama_sampler_accept(self._sampler, token)
        return token

    def _allows(self, token: int, logits: np.ndarray) -> bool:
        self._one.fill(self._ids[token : token + 1], logits[token : token + 1])
        self._lib.llama_sampler_apply(self._sampler, ctypes.byref(self._one.array))
        return bool(np.isfinite(self._one.data.logit[0]))

    def _best_allowed(self, logits: np.ndarray) -> int:
        self._all.fill(self._ids, logits)
        self._lib.llama_sampler_apply(self._sampler, ctypes.byref(self._all.array))
        masked = self._all.data.logit
        token = int(np.argmax(masked))
        if not np.isfinite(masked[token]):
            raise RuntimeError("the grammar allows no token here")
        return token
