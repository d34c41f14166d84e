"""cert-manager's controller, minimally, in the Kubernetes API TEST DOUBLE.

Part of the Kubernetes API TEST DOUBLE (NOT Kubernetes, NOT cert-manager): a Certificate whose
issuer exists gets its kubernetes.io/tls Secret and Ready=True (``certificates_issued = False``:
orders that never complete); nothing is asked of any ACME server.
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from .common import _now_iso
from .store import Store


def _self_signed(dns_names: list[str]) -> tuple[bytes, bytes]:
    """A self-signed certificate for dns_names and its key (PEM), issued by the double."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "k8s double cert-manager")])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now).not_valid_after(now + timedelta(days=90)))
    if dns_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName(n) for n in dns_names]), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM,
                              serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


class CertManager(Store):
    """The Certificates cert-manager's controller would issue."""

    def _issue_certificate(self, ns: str, cert: dict[str, Any], now: float) -> None:
        """cert-manager's controller, minimally (a DOUBLE, not cert-manager): a Certificate whose
        issuer (``spec.issuerRef``: an Issuer of its namespace or a ClusterIssuer) exists gets its
        Secret ``spec.secretName`` of type kubernetes.io/tls (tls.crt, tls.key, ca.crt; a
        self-signed key pair for ``spec.dnsNames``; labels of ``spec.secretTemplate``; the
        cert-manager.io/* annotations) and the condition Ready=True; without its issuer, or
        while ``certificates_issued`` is False (an ACME order that does not complete), Ready is
        False as cert-manager reports it (cert-manager.io/v1 CertificateStatus, docs
        "Certificate resource": https://cert-manager.io/docs/usage/certificate/). Nothing is
        asked of any ACME server or DNS."""
        spec = cert.get("spec") or {}
        generation = cert["metadata"].get("generation", 1)
        status = cert.get("status") or {}
        ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"),
                     None)
        if ready and ready.get("status") == "True" and ready.get(
                "observedGeneration") == generation:
            return
        ref = spec.get("issuerRef") or {}
        kind, issuer_name = str(ref.get("kind") or "Issuer"), str(ref.get("name"))
        issuer = self._objects.get(("clusterissuers.cert-manager.io", "", issuer_name)
                                   if kind == "ClusterIssuer"
                                   else ("issuers.cert-manager.io", ns, issuer_name))
        stamp = _now_iso(now)
        if issuer is None or not self.certificates_issued:
            message = (f'Referenced "{kind}" not found: {kind.lower()}.cert-manager.io '
                       f'"{ref.get("name")}" not found' if issuer is None
                       else "Issuing certificate as Secret does not exist")
            reason = "Pending" if issuer is None else "DoesNotExist"
            if not ready or ready.get("message") != message:
                self._set_status(cert, {**status, "conditions": [
                    {"type": "Ready", "status": "False", "reason": reason, "message": message,
                     "lastTransitionTime": stamp, "observedGeneration": generation}]})
            return
        names = [str(n) for n in spec.get("dnsNames") or []]
        crt, key = _self_signed(names)
        template = spec.get("secretTemplate") or {}
        secret_name = str(spec.get("secretName"))
        self._objects[("secrets", ns, secret_name)] = {
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": secret_name, "namespace": ns, "uid": str(uuid.uuid4()),
                         "creationTimestamp": stamp, "resourceVersion": str(next(self._rv)),
                         "labels": {**(template.get("labels") or {}),
                                    "controller.cert-manager.io/fao": "true"},
                         "annotations": {
                             **(template.get("annotations") or {}),
                             "cert-manager.io/certificate-name": cert["metadata"]["name"],
                             "cert-manager.io/issuer-name": str(ref.get("name")),
                             "cert-manager.io/issuer-kind": kind,
                             "cert-manager.io/issuer-group": str(ref.get("group") or ""),
                             "cert-manager.io/alt-names": ",".join(names)}},
            "data": {"tls.crt": base64.b64encode(crt).decode(),
                     "tls.key": base64.b64encode(key).decode(),
                     "ca.crt": base64.b64encode(crt).decode()}}
        self._set_status(cert, {
            "conditions": [{"type": "Ready", "status": "True", "reason": "Ready",
                            "message": "Certificate is up to date and has not expired",
                            "lastTransitionTime": stamp, "observedGeneration": generation}],
            "notBefore": stamp, "notAfter": _now_iso(now + 90 * 86400),
            "renewalTime": _now_iso(now + 60 * 86400),
            "revision": int(status.get("revision", 0)) + 1})
