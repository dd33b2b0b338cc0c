"""TLS for the client: certificates from files or bytes, and what a failed handshake means.

gRPC reports every failed handshake as ``FlightUnavailableError`` with the
reason buried in its message (measured with pyarrow 26)::

    plain client -> TLS server          "... UNAVAILABLE: ...: Socket closed"
    TLS client, CA that did not sign    "... Ssl handshake failed ... certificate verify failed"
    TLS client, name not in the cert    "... Peer name 127.0.0.1 is not in peer certificate"
    TLS client -> plain server          "... Ssl handshake failed ... wrong version number"
    mTLS server, no or foreign cert     "... UNAVAILABLE: ...: Socket closed"

``tls_failure`` turns those into a message that names the option that fixes it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from aios_memory.schemas import InvalidValueError

__all__ = ["TlsOptions", "TLS_SCHEME", "tls_options", "tls_failure", "PemSource"]

TLS_SCHEME = "grpc+tls"
PemSource = str | os.PathLike[str] | bytes  # a file path, or the PEM text itself
_CONNECT_FAILED = "failed to connect to all addresses"


@dataclass(frozen=True)
class TlsOptions:
    """What a TLS client presents and trusts; PEM bytes, already read and checked.

    ``root_certs`` None trusts the system's roots. ``cert_chain`` and
    ``private_key`` (both or neither) are the client certificate for mutual TLS.
    """

    root_certs: bytes | None = None
    cert_chain: bytes | None = None
    private_key: bytes | None = None

    @property
    def has_client_cert(self) -> bool:
        return self.cert_chain is not None

    def flight_kwargs(self) -> dict[str, bytes]:
        """Keyword arguments for ``pyarrow.flight.FlightClient``."""
        pairs = {
            "tls_root_certs": self.root_certs,
            "cert_chain": self.cert_chain,
            "private_key": self.private_key,
        }
        return {name: value for name, value in pairs.items() if value is not None}


def tls_options(
    uri: str,
    root_certs: PemSource | None = None,
    cert: PemSource | None = None,
    key: PemSource | None = None,
) -> TlsOptions | None:
    """The TLS options for ``uri``: None for ``grpc://``, ``TlsOptions`` for ``grpc+tls://``.

    Raises ``InvalidValueError`` for TLS options on a plain address (the
    caller would believe its traffic encrypted), a certificate without its
    key, or a file that is missing or not PEM.
    """
    given = {"tls_root_certs": root_certs, "tls_cert": cert, "tls_key": key}
    if urlsplit(uri).scheme != TLS_SCHEME:
        named = [name for name, value in given.items() if value is not None]
        if named:
            raise InvalidValueError(
                f"{', '.join(named)} given for {uri}, which is not a TLS address: "
                f"connect with {TLS_SCHEME}://HOST:PORT",
                uri=uri,
            )
        return None
    if (cert is None) != (key is None):
        raise InvalidValueError(
            "a client certificate needs its key: pass both tls_cert and "
            "tls_key (--tls-client-cert and --tls-client-key)",
            uri=uri,
        )
    return TlsOptions(
        _pem(root_certs, "tls_root_certs", "CERTIFICATE"),
        _pem(cert, "tls_cert", "CERTIFICATE"),
        _pem(key, "tls_key", "PRIVATE KEY"),
    )


def _pem(source: PemSource | None, name: str, kind: str) -> bytes | None:
    if source is None:
        return None
    if isinstance(source, bytes):
        data, where = source, f"{name} (bytes)"
    else:
        where = f"{name} {os.fspath(source)}"
        try:
            with open(source, "rb") as file:
                data = file.read()
        except OSError as exc:
            raise InvalidValueError(f"cannot read {where}: {exc.strerror}") from None
    # gRPC answers a bad PEM only with "empty address list" at the first call.
    if b"-----BEGIN" not in data or kind.encode() + b"-----" not in data:
        raise InvalidValueError(
            f"{where} holds no PEM {kind.lower()} (expected a '-----BEGIN ...{kind}-----' block)"
        )
    return data


def tls_failure(reason: str, uri: str, tls: TlsOptions | None, flags: str) -> str | None:
    """What a failed connection to ``uri`` means for TLS, naming the fix; None if not TLS.

    ``flags`` prefixes the option names in the message (``--tls-``, or
    ``--cloud-tls-`` for ``aimem sync``).
    """
    if _CONNECT_FAILED not in reason:
        return None
    if tls is None:
        if "Socket closed" in reason:
            return (
                f"the server at {uri} closed the connection during setup: if it serves TLS, "
                f"connect with {TLS_SCHEME}://HOST:PORT and {flags}ca CA.pem"
            )
        return None
    if "certificate verify failed" in reason:
        return (
            f"the certificate of the server at {uri} is not signed by a CA this client "
            f"trusts: pass {flags}ca with the CA that signed the server's --tls-cert"
        )
    if "is not in peer certificate" in reason:
        return (
            f"the certificate of the server at {uri} does not name {urlsplit(uri).hostname}: "
            "connect by a name or address its certificate lists"
        )
    if "wrong version number" in reason:
        return f"the server at {uri} does not serve TLS: connect with grpc://HOST:PORT"
    if "Socket closed" in reason:
        if tls.has_client_cert:
            return (
                f"the server at {uri} refused this client certificate: use one signed by "
                f"the CA the server trusts (its --tls-client-ca) in {flags}client-cert"
            )
        return (
            f"the server at {uri} requires a client certificate: pass "
            f"{flags}client-cert and {flags}client-key"
        )
    return None
