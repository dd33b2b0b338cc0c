"""TLS for the server: check the certificate files once, and hand them to Flight.

gRPC answers a missing, unreadable or mismatched file only with "Server did
not start properly", so each file is parsed here first and the error names
the option and the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from aios_memory.schemas import InvalidValueError

__all__ = ["check_server_tls", "server_tls_kwargs"]


def check_server_tls(cert: Path | None, key: Path | None, client_ca: Path | None) -> None:
    """Raise ``InvalidValueError`` unless the TLS options make a server that can start."""
    if cert is None and key is None:
        if client_ca is not None:
            raise InvalidValueError("--tls-client-ca needs TLS: pass --tls-cert and --tls-key too")
        return
    if cert is None or key is None:
        raise InvalidValueError(
            "TLS needs both --tls-cert and --tls-key (the certificate and its private key, PEM)"
        )
    certificate = _certificates(cert, "--tls-cert")[0]
    private_key = _private_key(key)
    if not _same_key(certificate, private_key):
        raise InvalidValueError(
            f"--tls-key {key} is not the key of the certificate in --tls-cert {cert}"
        )
    if client_ca is not None:
        _certificates(client_ca, "--tls-client-ca")


def server_tls_kwargs(
    cert: Path | None, key: Path | None, client_ca: Path | None
) -> dict[str, Any]:
    """Keyword arguments for ``FlightServerBase``: none without TLS; mutual TLS with a client CA."""
    if cert is None or key is None:
        return {}
    kwargs: dict[str, Any] = {"tls_certificates": [(cert.read_bytes(), key.read_bytes())]}
    if client_ca is not None:
        kwargs.update(verify_client=True, root_certificates=client_ca.read_bytes())
    return kwargs


def _read(path: Path, option: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InvalidValueError(f"cannot read {option} {path}: {exc.strerror}") from None


def _certificates(path: Path, option: str) -> list[x509.Certificate]:
    try:
        found = x509.load_pem_x509_certificates(_read(path, option))
    except ValueError:
        found = []
    if not found:
        raise InvalidValueError(f"{option} {path} holds no PEM certificate")
    return found


def _private_key(path: Path) -> Any:
    try:
        return serialization.load_pem_private_key(_read(path, "--tls-key"), password=None)
    except (ValueError, TypeError) as exc:
        # TypeError: the key is encrypted; gRPC cannot ask for a passphrase.
        raise InvalidValueError(
            f"--tls-key {path} is not an unencrypted PEM private key ({exc})"
        ) from None


def _same_key(certificate: x509.Certificate, private_key: Any) -> bool:
    raw = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return bool(
        certificate.public_key().public_bytes(*raw) == private_key.public_key().public_bytes(*raw)
    )
