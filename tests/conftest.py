"""Fixtures: real servers on 127.0.0.1 port 0 over real DuckDB files in a temp directory."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aios_memory.flight_server import RunningServer, ServerSettings, start_server

TOKEN = "test-token"


@pytest.fixture(autouse=True)
def key_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's own end-to-end encryption key store (clients and device servers default to
    ``AIMEM_KEYS``): nothing touches ~/.config or the OS keyring."""
    path = tmp_path / "keys"
    monkeypatch.setenv("AIMEM_KEYS", str(path))
    monkeypatch.setenv("AIMEM_KEYRING", "0")
    monkeypatch.delenv("AIMEM_ENCRYPT_AT", raising=False)
    return path


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Start servers with chosen settings; ``data_dir`` defaults to one shared temp folder.

    Returns a context manager factory so a test can stop a server and start
    another on the same data (a restart).
    """
    stack = contextlib.ExitStack()

    @contextlib.contextmanager
    def make(**settings: Any) -> Iterator[RunningServer]:
        settings.setdefault("data_dir", tmp_path / "data")
        settings.setdefault("port", 0)
        settings.setdefault("token", TOKEN)
        settings.setdefault("embedder", "none")
        settings.setdefault("checkpoint_seconds", 0)
        with start_server(ServerSettings(**settings)) as running:
            yield running

    with stack:
        yield make


@pytest.fixture
def start(server_factory: Callable[..., Any], tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Start named servers (``start("cloud", role="cloud")``), each on its own data directory."""
    stack = contextlib.ExitStack()

    def make(name: str, **settings: Any) -> RunningServer:
        return stack.enter_context(server_factory(data_dir=tmp_path / name, **settings))

    with stack:
        yield make


@pytest.fixture
def server(server_factory: Callable[..., Any]) -> Iterator[RunningServer]:
    """A server with the embedder off: tests supply vectors or search by keyword."""
    with server_factory() as running:
        yield running


@pytest.fixture
def client(server: RunningServer) -> Iterator[Any]:
    from aios_memory.client import MemoryClient

    with MemoryClient(server.uri, server.token, timeout=30) as connected:
        yield connected


def unit_vectors(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    """Seeded random unit vectors."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """llama-cpp-python's OpenAI-compatible server over SmolLM2-135M on a loopback port, shared
    by the session: ``.url`` ends in ``/v1``, ``.model`` is its name. Skipped without the
    ``[lm]`` extra and the server's ``[test]`` dependencies (failed under AIMEM_REQUIRE_LM=1)."""
    from support.llm_server import llm_server as run_llm_server
    from support.llm_server import missing_server_parts

    missing = missing_server_parts()
    if missing:
        if os.environ.get("AIMEM_REQUIRE_LM") == "1":
            pytest.fail(f"AIMEM_REQUIRE_LM=1 but the LLM test server lacks {missing}")
        pytest.skip(f"the LLM test server needs {missing}")
    with run_llm_server(tmp_path_factory.mktemp("llm_server")) as running:
        yield running
