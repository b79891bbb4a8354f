"""TLS for the API and the peer links: a local CA for devnets, node certificates, SSL contexts.

`devnet init --tls` calls `make_local_ca` once and `issue_certificate` for every node: each node
home gets `tls.crt`, `tls.key` (mode 0600) and `ca.pem`; the devnet directory gets `ca.pem` for
clients. The CA's private key is never written to disk: it signs the devnet's certificates and is
dropped, so nobody can later mint a certificate the nodes would trust. A production network uses
certificates from the institutions' own PKI instead (`[api]`/`[p2p]` tls_cert, tls_key, tls_ca).

Certificates use ECDSA P-256 (widely supported by TLS stacks) and are made with the
`cryptography` package; nothing here implements cryptography itself.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CERT_DAYS = 825


class TlsError(ValueError):
    """A certificate, key or CA file is missing or unusable (the operator's to fix)."""


@dataclass(frozen=True, slots=True)
class LocalCA:
    """A CA held in memory only: its certificate and the key that signs node certificates."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "MedLedger devnet"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def make_local_ca(name: str = "MedLedger devnet CA", *, days: int = CERT_DAYS) -> LocalCA:
    """A fresh self-signed CA (path length 0: it signs node certificates only)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(name)
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5)).not_valid_after(now + _dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return LocalCA(certificate=cert, key=key)


def issue_certificate(ca: LocalCA, common_name: str, hosts: list[str], *, days: int = CERT_DAYS) -> tuple[bytes, bytes]:
    """A node certificate for `hosts` (IP addresses or DNS names), usable as TLS server and client:
    (certificate PEM, private key PEM unencrypted; write it with `write_private`)."""
    if not hosts:
        raise TlsError("a certificate needs at least one host name or address")
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name)).issuer_name(ca.certificate.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5)).not_valid_after(now + _dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def write_private(path: Path, data: bytes) -> None:
    """Write a private key readable by its owner only (never overwrites)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """An SSL context serving `cert_file` (TLS 1.2 or later)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(cert_file), str(key_file))
    except FileNotFoundError as exc:
        raise TlsError(f"TLS certificate or key not found: {exc.filename}") from None
    except ssl.SSLError as exc:
        raise TlsError(f"cannot use TLS certificate {cert_file} with key {key_file}: {exc.reason or exc}") from None
    return ctx


def client_context(ca_file: Path | None) -> ssl.SSLContext:
    """An SSL context that verifies servers against `ca_file` (or the system's trust store)."""
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file) if ca_file else None)
    except FileNotFoundError:
        raise TlsError(f"CA file not found: {ca_file}") from None
    except ssl.SSLError as exc:
        raise TlsError(f"cannot read CA file {ca_file}: {exc.reason or exc}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx
