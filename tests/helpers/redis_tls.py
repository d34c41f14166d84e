"""Test certificates and ACL passwords for real redis-server nodes with TLS and ACL users.

The certificates are made here with the `cryptography` package: a throw-away CA and one node
certificate for localhost / 127.0.0.1 that serves both TLS ends (Redis presents it to clients,
and to peers on the cluster bus and for replication, as the chart's cert-manager certificate
does). The passwords are random, one file per user, named as the Vault agent renders them in
the chart's pods (redis-user-<user>).
"""

from __future__ import annotations

import datetime
import ipaddress
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class RedisTls:
    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.crt"

    @property
    def cert(self) -> Path:
        return self.folder / "tls.crt"

    @property
    def key(self) -> Path:
        return self.folder / "tls.key"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_tls(folder: Path, *, common_name: str = "test-redis-ca") -> RedisTls:
    """A CA (ca.crt) and a node certificate and key (tls.crt, tls.key) under folder."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name(common_name))
          .issuer_name(_name(common_name)).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, key_cert_sign=True, crl_sign=True,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    node_key = ec.generate_private_key(ec.SECP256R1())
    node = (x509.CertificateBuilder().subject_name(_name("redis"))
            .issuer_name(ca.subject).public_key(node_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            # Python's default TLS context (X509 strict) needs the key identifiers, which
            # cert-manager's certificates carry too.
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(node_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    tls = RedisTls(folder)
    tls.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    tls.cert.write_bytes(node.public_bytes(serialization.Encoding.PEM))
    tls.key.write_bytes(_pem_key(node_key))
    tls.key.chmod(0o600)
    return tls


@dataclass
class RedisPasswords:
    """One random password per ACL user, in <folder>/redis-user-<user> (0600)."""

    folder: Path
    users: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def make(cls, folder: Path, users: Iterable[str]) -> RedisPasswords:
        folder.mkdir(parents=True, exist_ok=True)
        out = cls(folder)
        for user in users:
            out.users[user] = secrets.token_urlsafe(24)
            path = out.file(user)
            path.write_text(out.users[user])
            path.chmod(0o600)
        return out

    def file(self, user: str) -> Path:
        return self.folder / f"redis-user-{user}"
