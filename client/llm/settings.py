"""What a chat model can be told: one frozen dataclass, its help table, and ``AIMEM_LLM_*``.

Precedence (as everywhere in aimem): defaults < ``AIMEM_LLM_*`` environment < CLI flags.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlsplit

from aios_memory.schemas import InvalidValueError

__all__ = ["LLMSettings", "LLM_SETTINGS_HELP", "STRUCTURED_MODES", "is_loopback_url"]

STRUCTURED_MODES = ("auto", "json_schema", "json_object", "none")
ENV_PREFIX = "AIMEM_LLM_"

LLM_SETTINGS_HELP = {
    "url": "OpenAI-compatible base URL ending in /v1 (OpenAI, Ollama, vLLM, llama.cpp's server); "
    "unset: the embedded local model (the [llm] extra)",
    "model": "the endpoint's model name; may be left out when the endpoint serves exactly one",
    "api_key": "the endpoint's API key; local endpoints need none",
    "model_path": "embedded model: a GGUF file to run instead of the packaged default "
    "(Qwen2.5-Coder-1.5B-Instruct, Q5_K_M)",
    "timeout_seconds": "seconds one request may take before it counts as failed",
    "retries": "extra attempts after the first (backoff 0.5 s, doubling, with jitter), for "
    "connection errors, timeouts, 429, 5xx and output that is not the JSON asked for",
    "structured": "how JSON is asked for: auto (json_schema, else json_object, else the prompt "
    "alone; remembers what worked), json_schema (OpenAI), json_object (llama.cpp-style "
    "schema grammar) or none (the prompt alone)",
    "threads": "embedded model: CPU threads for llama.cpp (default: all cores)",
    "context": "embedded model: context window in tokens (prompt plus answer)",
    "temperature": "sampling temperature; 0 is greedy and repeatable",
    "cache": "a JSON-lines file of answers: a request already answered there (same model, "
    "messages and settings) is replayed from it, and new answers are added (temperature 0 "
    "only; for repeatable re-runs and benchmarks)",
}

_ENV_NAMES = {
    "url": "URL",
    "model": "MODEL",
    "api_key": "API_KEY",
    "model_path": "MODEL_PATH",
    "timeout_seconds": "TIMEOUT",
    "retries": "RETRIES",
    "structured": "STRUCTURED",
    "threads": "THREADS",
    "context": "CONTEXT",
    "temperature": "TEMPERATURE",
    "cache": "CACHE",
}


@dataclass(frozen=True)
class LLMSettings:
    """Which chat model to use and how; see ``LLM_SETTINGS_HELP`` for each field.

    Raises
    ------
    InvalidValueError
        A field out of its range (``detail["setting"]`` names it).
    """

    url: str | None = None
    model: str | None = None
    api_key: str | None = None
    model_path: str | None = None
    timeout_seconds: float = 120.0
    retries: int = 2
    structured: str = "auto"
    threads: int | None = None
    context: int = 4096
    temperature: float = 0.0
    cache: str | None = None

    def __post_init__(self) -> None:
        for name, ok, rule in _RULES:
            if not ok(getattr(self, name)):
                raise InvalidValueError(
                    f"LLM setting {name}={getattr(self, name)!r}: {rule}", setting=name
                )
        if self.cache and self.temperature != 0:
            # A sampled answer is one of many: replaying it would hide that.
            raise InvalidValueError(
                f"LLM setting cache needs temperature 0, not {self.temperature}", setting="cache"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LLMSettings:
        """Settings from ``AIMEM_LLM_*`` (unset or empty variables keep the defaults).

        Raises
        ------
        InvalidValueError
            A value that does not parse or is out of range; the message names the variable.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in fields(cls):
            variable = ENV_PREFIX + _ENV_NAMES[field.name]
            raw = env.get(variable, "").strip()
            if raw:
                values[field.name] = _parse(variable, raw, _PARSERS.get(field.name, str))
        try:
            return cls(**values)
        except InvalidValueError as exc:
            variable = ENV_PREFIX + _ENV_NAMES[exc.detail["setting"]]
            raise InvalidValueError(f"{variable}: {exc.message}", variable=variable) from None

    @property
    def local(self) -> bool:
        """True when text never leaves this machine (embedded model or a loopback endpoint)."""
        return self.url is None or is_loopback_url(self.url)


def is_loopback_url(url: str) -> bool:
    """True for a URL whose host is 127.0.0.0/8, ::1 or localhost (no name lookup is made)."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parse(variable: str, raw: str, parser: Callable[[str], Any]) -> Any:
    try:
        return parser(raw)
    except ValueError:
        kind = getattr(parser, "__name__", "value")
        raise InvalidValueError(
            f"{variable}={raw!r} is not a valid {kind}", variable=variable
        ) from None


_PARSERS: dict[str, Callable[[str], Any]] = {
    "timeout_seconds": float,
    "retries": int,
    "threads": int,
    "context": int,
    "temperature": float,
}

_RULES: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("url", lambda v: v is None or urlsplit(v).scheme in ("http", "https"), "an http(s) URL"),
    ("timeout_seconds", lambda v: 0 < v <= 3600, "seconds in (0, 3600]"),
    ("retries", lambda v: 0 <= v <= 10, "an integer in 0..10"),
    ("structured", lambda v: v in STRUCTURED_MODES, f"one of {', '.join(STRUCTURED_MODES)}"),
    ("threads", lambda v: v is None or 1 <= v <= 256, "an integer in 1..256"),
    ("context", lambda v: 256 <= v <= 131072, "tokens in 256..131072"),
    ("temperature", lambda v: 0 <= v <= 2, "a number in [0, 2]"),
)
