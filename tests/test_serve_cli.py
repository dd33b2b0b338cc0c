"""`aimem serve` as a user runs it: a real process, its token file, a client command, SIGTERM."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

AIMEM = [sys.executable, "-c", "from aios_memory.client.cli import main; main()"]


def wait_for_uri(process: subprocess.Popen, seconds: float = 30, scheme: str = "grpc") -> str:
    """The ``scheme://127.0.0.1:port`` address ``aimem serve`` prints on stderr."""
    deadline = time.monotonic() + seconds
    seen = ""
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        seen += line
        found = re.search(re.escape(scheme) + r"://127\.0\.0\.1:\d+", line)
        if found:
            return found.group(0)
        if process.poll() is not None:
            break
    raise AssertionError(f"the server printed no {scheme} address:\n{seen}")


@contextlib.contextmanager
def serving(data: Path, env: dict[str, str]) -> Iterator[tuple[str, dict[str, str]]]:
    """A real `aimem serve` process; yields its address and a client environment."""
    with subprocess.Popen(
        [*AIMEM, "serve", "--data", str(data), "--port", "0", "--embedder", "none"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as server:
        try:
            uri = wait_for_uri(server)
            yield uri, {**env, "AIMEM_SERVER": uri, "AIMEM_TOKEN_FILE": str(data / "token")}
        finally:
            server.send_signal(signal.SIGTERM)
            assert server.wait(timeout=30) == 0
            assert "stopping" in server.stderr.read()


def aimem(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([*AIMEM, *args], env=env, capture_output=True, text=True)


def test_serve_generates_a_private_token_serves_and_stops_cleanly(tmp_path: Path):
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIMEM_")}
    with serving(data, env) as (_, client_env):
        assert stat.S_IMODE((data / "token").stat().st_mode) == 0o600
        stored = aimem(
            "remember", "the spare key is under the blue pot", "--tier", "core", env=client_env
        )
        assert stored.returncode == 0, stored.stderr
        out = aimem("recall", "spare key", "--mode", "keyword", "--json", env=client_env)
        assert json.loads(out.stdout)[0]["text"] == "the spare key is under the blue pot"
        refused = aimem("stats", "--token", "wrong", env=client_env)
        assert refused.returncode == 1 and "token" in refused.stderr.lower()
    with serving(data, env) as (_, client_env):
        out = aimem("stats", "--json", env=client_env)
        assert json.loads(out.stdout)["tiers"]["core"]["memories"] == 1
