"""TLS and mutual TLS: the server, the SDK, `aimem serve`, `aimem sync` device -> cloud.

Every certificate is made by the test session (``support.certs``): a CA, a server
certificate for 127.0.0.1/localhost, client certificates from that CA and
from another one. Failed handshakes must come back as our
``ConnectionFailedError`` with a message that names the option to fix it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.certs import Authority, Pair, make_authority
from test_serve_cli import wait_for_uri

from aios_memory.client import ConnectionFailedError, InvalidValueError, MemoryClient
from aios_memory.flight_server import RunningServer, ServerSettings
from aios_memory.sync import FlightReplica, sync_once

AIMEM = [sys.executable, "-c", "from aios_memory.client.cli import main; main()"]
TEXT = "the spare key is under the blue pot"


@dataclass(frozen=True)
class Pki:
    """The session's certificates."""

    ca: Authority
    other_ca: Authority
    server: Pair
    client: Pair
    foreign_client: Pair


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca, other = make_authority(folder / "ca"), make_authority(folder / "other", "other-ca")
    return Pki(ca, other, ca.server_pair(), ca.client_pair("device"), other.client_pair("stranger"))


@pytest.fixture
def tls_server(start: Callable[..., Any], pki: Pki) -> RunningServer:
    return start("tls", tls_cert=pki.server.cert, tls_key=pki.server.key)


@pytest.fixture
def mtls_server(start: Callable[..., Any], pki: Pki) -> RunningServer:
    return start(
        "mtls",
        role="cloud",
        tls_cert=pki.server.cert,
        tls_key=pki.server.key,
        tls_client_ca=pki.ca.cert,
    )


def stats_of(uri: str, token: str, **tls: Any) -> dict[str, Any]:
    with MemoryClient(uri, token, timeout=10, **tls) as mem:
        return mem.stats()


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AIMEM_")}


# -- TLS --------------------------------------------------------------------------------------


def test_remember_and_recall_over_tls(tls_server: RunningServer, pki: Pki):
    assert re.fullmatch(r"grpc\+tls://127\.0\.0\.1:\d+", tls_server.uri)
    with MemoryClient(tls_server.uri, tls_server.token, tls_root_certs=pki.ca.cert) as mem:
        ids = mem.remember(TEXT, tier="core")
        hits = mem.recall("spare key", mode="keyword", k=1)
    assert [(h.id, h.text) for h in hits] == [(ids[0], TEXT)]


def test_the_ca_can_be_given_as_pem_bytes(tls_server: RunningServer, pki: Pki):
    stats = stats_of(tls_server.uri, tls_server.token, tls_root_certs=pki.ca.cert.read_bytes())
    assert "tiers" in stats


def test_a_plain_client_is_told_to_use_grpc_tls(tls_server: RunningServer):
    plain = tls_server.uri.replace("grpc+tls://", "grpc://")
    with pytest.raises(ConnectionFailedError, match=r"connect with grpc\+tls://.*--tls-ca"):
        stats_of(plain, tls_server.token)


@pytest.mark.parametrize("trust", ["other", "system"])
def test_a_server_certificate_from_an_untrusted_ca_is_refused(tls_server, pki, trust):
    roots = {"tls_root_certs": pki.other_ca.cert} if trust == "other" else {}
    with pytest.raises(
        ConnectionFailedError, match="not signed by a CA this client trusts: pass --tls-ca"
    ):
        stats_of(tls_server.uri, tls_server.token, **roots)


def test_a_tls_client_is_told_when_the_server_is_plain(server: RunningServer, pki: Pki):
    uri = server.uri.replace("grpc://", "grpc+tls://")
    with pytest.raises(ConnectionFailedError, match="does not serve TLS: connect with grpc://"):
        stats_of(uri, server.token, tls_root_certs=pki.ca.cert)


# -- mutual TLS -------------------------------------------------------------------------------


def test_mtls_admits_a_client_certificate_from_the_trusted_ca(mtls_server, pki: Pki):
    stats = stats_of(
        mtls_server.uri,
        mtls_server.token,
        tls_root_certs=pki.ca.cert,
        tls_cert=pki.client.cert,
        tls_key=pki.client.key,
    )
    assert "tiers" in stats


def test_mtls_refuses_a_client_without_a_certificate(mtls_server, pki: Pki):
    with pytest.raises(
        ConnectionFailedError,
        match="requires a client certificate: pass --tls-client-cert and --tls-client-key",
    ):
        stats_of(mtls_server.uri, mtls_server.token, tls_root_certs=pki.ca.cert)


def test_mtls_refuses_a_client_certificate_from_another_ca(mtls_server, pki: Pki):
    with pytest.raises(ConnectionFailedError, match="refused this client certificate"):
        stats_of(
            mtls_server.uri,
            mtls_server.token,
            tls_root_certs=pki.ca.cert,
            tls_cert=pki.foreign_client.cert,
            tls_key=pki.foreign_client.key,
        )


def test_a_sync_round_moves_records_from_device_to_cloud_over_mtls(start, mtls_server, pki):
    device = start("device")
    with MemoryClient(device.uri, device.token) as mem:
        ids = mem.remember([f"device memory {i}" for i in range(25)], tier="long_term")
    cloud = FlightReplica(
        mtls_server.uri,
        mtls_server.token,
        tls_root_certs=pki.ca.cert,
        tls_cert=pki.client.cert,
        tls_key=pki.client.key,
    )
    with FlightReplica(device.uri, device.token) as local, cloud:
        report = sync_once(local, cloud)
    assert (report.sent, report.received) == (25, 0)
    with MemoryClient(
        mtls_server.uri,
        mtls_server.token,
        tls_root_certs=pki.ca.cert,
        tls_cert=pki.client.cert,
        tls_key=pki.client.key,
    ) as mem:
        assert sorted(m.id for m in mem.get(ids)) == sorted(ids)


def test_aimem_sync_names_the_cloud_options_when_the_cloud_wants_a_certificate(
    start, mtls_server, pki
):
    device = start("device")
    common = [
        "sync",
        "--once",
        "--local",
        device.uri,
        "--local-token",
        device.token,
        "--cloud",
        mtls_server.uri,
        "--cloud-token",
        mtls_server.token,
        "--cloud-tls-ca",
        str(pki.ca.cert),
    ]
    refused = subprocess.run(
        [*AIMEM, *common], env=env(), capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 1
    assert "pass --cloud-tls-client-cert and --cloud-tls-client-key" in refused.stderr
    synced = subprocess.run(
        [*AIMEM, *common, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **env(),
            "AIMEM_CLOUD_TLS_CLIENT_CERT": str(pki.client.cert),
            "AIMEM_CLOUD_TLS_CLIENT_KEY": str(pki.client.key),
        },
    )
    assert synced.returncode == 0, synced.stderr
    assert json.loads(synced.stdout)["round_trips"] >= 1


# -- validation -------------------------------------------------------------------------------


def test_server_settings_refuse_tls_options_that_cannot_work(tmp_path: Path, pki: Pki):
    cases = [
        ({"tls_key": pki.server.key}, "both --tls-cert and --tls-key"),
        ({"tls_client_ca": pki.ca.cert}, "--tls-client-ca needs TLS"),
        ({"tls_cert": pki.server.cert, "tls_key": pki.client.key}, "is not the key of"),
        ({"tls_cert": pki.server.key, "tls_key": pki.server.key}, "holds no PEM certificate"),
        ({"tls_cert": tmp_path / "missing.crt", "tls_key": pki.server.key}, "cannot read"),
    ]
    for options, message in cases:
        with pytest.raises(InvalidValueError, match=message):
            ServerSettings(data_dir=tmp_path, **options)


def test_client_refuses_tls_options_that_cannot_work(pki: Pki):
    with pytest.raises(InvalidValueError, match="not a TLS address"):
        MemoryClient("grpc://127.0.0.1:1", tls_root_certs=pki.ca.cert)
    with pytest.raises(InvalidValueError, match="needs its key"):
        MemoryClient("grpc+tls://127.0.0.1:1", tls_cert=pki.client.cert)
    with pytest.raises(InvalidValueError, match="holds no PEM certificate"):
        MemoryClient("grpc+tls://127.0.0.1:1", tls_root_certs=pki.client.key)


# -- aimem serve ------------------------------------------------------------------------------


def test_aimem_serve_with_a_certificate_serves_grpc_tls(tmp_path: Path, pki: Pki):
    data = tmp_path / "data"
    command = [
        *AIMEM,
        "serve",
        "--data",
        str(data),
        "--port",
        "0",
        "--embedder",
        "none",
        "--tls-cert",
        str(pki.server.cert),
        "--tls-key",
        str(pki.server.key),
    ]
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env()) as server:
        try:
            uri = wait_for_uri(server, scheme="grpc+tls")
            client_env = {
                **env(),
                "AIMEM_SERVER": uri,
                "AIMEM_TOKEN_FILE": str(data / "token"),
                "AIMEM_TLS_CA": str(pki.ca.cert),
            }
            ok = subprocess.run(
                [*AIMEM, "stats", "--json"],
                env=client_env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert ok.returncode == 0, ok.stderr
            assert "tiers" in json.loads(ok.stdout)
            client_env.pop("AIMEM_TLS_CA")
            plain = subprocess.run(
                [*AIMEM, "stats", "--server", uri.replace("+tls", "")],
                env=client_env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert plain.returncode == 1 and "grpc+tls://" in plain.stderr
        finally:
            server.send_signal(signal.SIGTERM)
            assert server.wait(timeout=30) == 0
