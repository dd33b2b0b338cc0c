"""Test certificates made with ``cryptography``: a CA, a server cert for 127.0.0.1, a client cert.

Nothing here touches the network or the system trust store; every file is
PEM in a directory the caller owns (a pytest ``tmp_path``).
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Authority", "Pair", "make_authority"]

_VALID = datetime.timedelta(days=2)


@dataclass(frozen=True)
class Pair:
    """A certificate and its private key, as PEM files."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Authority:
    """A self-signed CA that can sign server and client certificates."""

    name: str
    cert: Path
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    folder: Path

    def server_pair(self, name: str = "server") -> Pair:
        """A server certificate for ``localhost`` and ``127.0.0.1`` (SAN), signed by this CA."""
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        return self._issue(name, names, ExtendedKeyUsageOID.SERVER_AUTH)

    def client_pair(self, name: str = "client") -> Pair:
        """A client certificate (for mutual TLS) signed by this CA."""
        return self._issue(
            name, [x509.DNSName(f"{name}.device.test")], ExtendedKeyUsageOID.CLIENT_AUTH
        )

    def _issue(
        self, name: str, names: list[x509.GeneralName], usage: x509.ObjectIdentifier
    ) -> Pair:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            _builder(f"{self.name} {name}", key.public_key())
            .issuer_name(self.certificate.subject)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        cert = builder.sign(self.key, hashes.SHA256())
        return Pair(
            _write(self.folder / f"{name}.crt", _pem(cert)),
            _write(self.folder / f"{name}.key", _key_pem(key)),
        )


def make_authority(folder: Path, name: str = "test-ca") -> Authority:
    """A new CA whose certificate is written to ``folder/ca.crt``."""
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(name, key.public_key())
        .issuer_name(_subject(name))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return Authority(name, _write(folder / "ca.crt", _pem(cert)), key, cert, folder)


def _subject(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(common_name: str, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    # Backdated a little so a clock a few seconds behind still accepts the certificate.
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(_subject(common_name))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + _VALID)
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
