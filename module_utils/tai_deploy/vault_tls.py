"""The TLS material of Vault's listener: a private CA per region and a server certificate.

Both keys stay in one encrypted file (see vault_secrets); the CA certificate, which is public,
is also written in plain text so that the controller (and the agent injector's callers) can
verify Vault. The server certificate is re-issued when it is about to expire or when its names
change; the CA is created once and kept, so clients keep trusting a renewed server certificate.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .vault_secrets import (
    Cipher,
    MaterialError,
    load_encrypted_document,
    save_encrypted_document,
    write_private_atomic,
)


@dataclass(frozen=True)
class ServerSpec:
    """What the server certificate must say."""

    common_name: str
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...] = ()
    validity_days: int = 365
    renew_before_days: int = 30

    def __post_init__(self) -> None:
        if self.renew_before_days >= self.validity_days:
            raise MaterialError(f"renew_before_days ({self.renew_before_days}) must be shorter "
                                f"than validity_days ({self.validity_days})")
        for ip in self.ip_addresses:
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                raise MaterialError(f"{ip!r} is not an IP address") from None


@dataclass(frozen=True)
class TlsMaterial:
    ca_cert: str
    server_cert: str
    ca_key: str = field(repr=False)
    server_key: str = field(repr=False)

    def to_document(self) -> dict[str, Any]:
        return {"vault_tls": {"ca_crt": self.ca_cert, "ca_key": self.ca_key,
                              "tls_crt": self.server_cert, "tls_key": self.server_key}}

    @classmethod
    def from_document(cls, doc: Any, source: str) -> TlsMaterial:
        body = doc.get("vault_tls") if isinstance(doc, Mapping) else None
        keys = ("ca_crt", "ca_key", "tls_crt", "tls_key")
        if not isinstance(body, Mapping) or not all(isinstance(body.get(k), str) for k in keys):
            raise MaterialError(f"{source} does not hold Vault TLS material "
                                f"(vault_tls.{{{','.join(keys)}}})")
        return cls(ca_cert=body["ca_crt"], server_cert=body["tls_crt"], ca_key=body["ca_key"],
                   server_key=body["tls_key"])


@dataclass
class TlsResult:
    actions: list[str] = field(default_factory=list)
    ca_cert: str = ""
    server_not_after: str = ""
    server_serial: str = ""

    @property
    def changed(self) -> bool:
        return bool(self.actions)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def new_ca(common_name: str, validity_days: int, now: datetime) -> tuple[str, str]:
    """A self-signed CA (EC P-256) that may sign server certificates only (path length 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=validity_days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256()))
    return _pem_key(key), cert.public_bytes(serialization.Encoding.PEM).decode()


def issue_server(ca_key_pem: str, ca_cert_pem: str, spec: ServerSpec, now: datetime
                 ) -> tuple[str, str]:
    """A server certificate for the names in spec, signed by the CA."""
    ca_key = serialization.load_pem_private_key(ca_key_pem.encode(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise MaterialError("the CA key is not an EC key")
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem.encode())
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in spec.dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in spec.ip_addresses]
    not_after = min(now + timedelta(days=spec.validity_days), ca_cert.not_valid_after_utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                        spec.common_name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True,
                                         key_cert_sign=False, crl_sign=False,
                                         content_commitment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return _pem_key(key), cert.public_bytes(serialization.Encoding.PEM).decode()


def reissue_reason(cert_pem: str, ca_cert_pem: str, spec: ServerSpec, now: datetime
                   ) -> str | None:
    """Why the server certificate must be re-issued, or None when it is still good."""
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem.encode())
    if cert.issuer != ca_cert.subject:
        return "it was not issued by the stored CA"
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return "it was not issued by the stored CA"
    if cert.not_valid_after_utc - now <= timedelta(days=spec.renew_before_days):
        return f"it expires on {cert.not_valid_after_utc.date().isoformat()}"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    have = (sorted(san.get_values_for_type(x509.DNSName)),
            sorted(str(ip) for ip in san.get_values_for_type(x509.IPAddress)))
    want = (sorted(spec.dns_names), sorted(str(ipaddress.ip_address(i))
                                           for i in spec.ip_addresses))
    if have != want:
        return "its names differ from the wanted ones"
    return None


def _describe(cert_pem: str) -> tuple[str, str]:
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    return cert.not_valid_after_utc.isoformat(), format(cert.serial_number, "x")


def ensure_tls(path: str | Path, cipher: Cipher, spec: ServerSpec, *, ca_common_name: str,
               ca_validity_days: int = 3650, ca_cert_file: str | Path | None = None,
               check: bool = False, now: datetime | None = None) -> TlsResult:
    """Create the CA once, (re)issue the server certificate when needed, write atomically."""
    moment = now or datetime.now(UTC)
    result = TlsResult()
    doc = load_encrypted_document(path, cipher)
    material = None if doc is None else TlsMaterial.from_document(doc, str(path))
    if material is None:
        result.actions.append("create the CA")
        ca_key, ca_cert = new_ca(ca_common_name, ca_validity_days, moment)
        reason: str | None = "there is none"
    else:
        ca_key, ca_cert = material.ca_key, material.ca_cert
        if x509.load_pem_x509_certificate(ca_cert.encode()).not_valid_after_utc <= moment:
            raise MaterialError(f"the CA in {path} has expired; rotating a CA is a deliberate "
                                "operation (move the file away to create a new one)")
        reason = reissue_reason(material.server_cert, ca_cert, spec, moment)
    if reason is not None:
        result.actions.append(f"issue the server certificate ({reason})")
        server_key, server_cert = issue_server(ca_key, ca_cert, spec, moment)
    else:
        assert material is not None
        server_key, server_cert = material.server_key, material.server_cert
    if result.actions and not check:
        new = TlsMaterial(ca_cert=ca_cert, server_cert=server_cert, ca_key=ca_key,
                          server_key=server_key)
        save_encrypted_document(path, new.to_document(), cipher,
                                header="# Vault TLS material (CA and server keys). Keep it "
                                       "encrypted.\n")
    if ca_cert_file is not None:
        target = Path(ca_cert_file)
        current = target.read_text() if target.is_file() else None
        if current != ca_cert:
            result.actions.append(f"write the CA certificate to {target}")
            if not check:
                write_private_atomic(target, ca_cert.encode(), mode=0o644)
    result.ca_cert = ca_cert
    result.server_not_after, result.server_serial = _describe(server_cert)
    return result

