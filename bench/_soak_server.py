"""``aimem serve`` as its own process, as a user runs it: start, find its address, stop.

The soak measures the server a user runs, so it starts the real command (port 0,
``--embedder none``, a token of its own) on a data directory and reads the
address from the line ``aimem serve`` prints. Its log goes to ``serve.log``
beside the data directory; a server that dies early raises with the log's tail.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

AIMEM = [sys.executable, "-c", "from aios_memory.client.cli import main; main()"]
TOKEN = "soak-bench-token"
START_SECONDS = 300.0  # a restart on 100k memories loads its indexes first
STOP_SECONDS = 120.0
_URI = re.compile(r"grpc://127\.0\.0\.1:\d+")


@contextlib.contextmanager
def serve(data: Path, keys: Path) -> Iterator[str]:
    """Run ``aimem serve --data DATA``; yield its address; SIGTERM it on exit."""
    data.mkdir(parents=True, exist_ok=True)
    log_path = data.parent / "serve.log"
    start = log_path.stat().st_size if log_path.exists() else 0  # a restart appends
    command = [*AIMEM, "serve", "--data", str(data), "--port", "0", "--embedder", "none"]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [*command, "--token", TOKEN, "--keys", str(keys)],
            stdout=log,
            stderr=log,
            env={**os.environ, "AIMEM_KEYS": str(keys)},
        )
    try:
        yield _address(proc, log_path, start)
    finally:
        _stop(proc)


def _address(proc: subprocess.Popen[bytes], log_path: Path, start: int) -> str:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        found = _URI.search(log_path.read_bytes()[start:].decode(errors="replace"))
        if found:
            return found.group(0)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    _stop(proc)
    tail = log_path.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"aimem serve gave no address; its log ends:\n{tail}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        # SIGTERM not honoured in time (issue 16 item 0): the soak must not hang on it.
        proc.kill()
        proc.wait()
