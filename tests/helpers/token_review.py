"""TEST DOUBLE of a Kubernetes API server's service-account tokens, for Vault's Kubernetes auth.

It is NOT Kubernetes. No kube-apiserver can run here, and Vault's (OpenBao's) Kubernetes auth
method checks every login with the API server's TokenReview, so this loopback server plays the
two halves of the API server that a login involves, after the Kubernetes API reference and
documentation (authentication.k8s.io/v1 TokenReview; "Managing Service Accounts", bound
service account tokens; ServiceAccountTokenProjection):

- ``mint(namespace, account, audiences)``: a service-account token as the API server issues
  it for a TokenRequest (what the kubelet asks for a projected ``serviceAccountToken`` volume,
  or for the pod's default token): a JWT signed RS256 with the server's key, claims ``iss``,
  ``sub`` (``system:serviceaccount:<namespace>:<account>``), ``aud`` (the requested audiences;
  none requested: the API server's own, ``API_AUDIENCE``), ``iat``, ``nbf``, ``exp`` and
  ``kubernetes.io`` (``namespace``, ``serviceaccount.name``/``uid``);
- ``POST /apis/authentication.k8s.io/v1/tokenreviews``: the token is authenticated when its
  signature is the server's, it has not expired, its account exists, and its audiences
  intersect ``spec.audiences`` (empty: the API server's audience, as the reference says of
  TokenReviewSpec.audiences); ``status.audiences`` is that intersection, ``status.user`` the
  account (username, uid, groups ``system:serviceaccounts`` and
  ``system:serviceaccounts:<namespace>``). Otherwise ``authenticated`` is false with an
  ``error``, answered 201 like every TokenReview create.

The server speaks plain HTTP on 127.0.0.1; ``ca_pem`` is a CA certificate for Vault's
``kubernetes_ca_cert`` (required with ``disable_local_ca_jwt``), unused over HTTP.
"""

from __future__ import annotations

import base64
import datetime
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

ISSUER = "https://kubernetes.default.svc.cluster.local"
# The API server's audience (--api-audiences defaults to the issuer): what the pod's default
# token is for, and what a TokenReview without spec.audiences checks.
API_AUDIENCE = ISSUER


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class TokenApi:
    """The API server's token signer and its TokenReview endpoint."""

    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048))
    accounts: dict[tuple[str, str], str] = field(default_factory=dict)  # (ns, name) -> uid
    reviews: list[dict[str, Any]] = field(default_factory=list)  # TokenReview specs received
    url: str = ""

    def add_account(self, namespace: str, name: str) -> None:
        self.accounts[(namespace, name)] = str(uuid.uuid4())

    def mint(self, namespace: str, account: str, audiences: list[str] | None = None,
             seconds: int = 3600) -> str:
        """A token of the account, as a TokenRequest answers it (the account must exist)."""
        uid = self.accounts[(namespace, account)]
        now = int(time.time())
        header = {"alg": "RS256", "kid": "tai-test"}
        claims = {"iss": ISSUER, "sub": f"system:serviceaccount:{namespace}:{account}",
                  "aud": list(audiences or [API_AUDIENCE]), "iat": now, "nbf": now,
                  "exp": now + seconds,
                  "kubernetes.io": {"namespace": namespace,
                                    "serviceaccount": {"name": account, "uid": uid}}}
        signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = self.key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing}.{_b64(signature)}"

    @property
    def ca_pem(self) -> str:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "token-review-double")])
        start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(self.key, hashes.SHA256()))
        return cert.public_bytes(serialization.Encoding.PEM).decode()

    def review(self, spec: dict[str, Any]) -> dict[str, Any]:
        """TokenReviewStatus of spec (authentication.k8s.io/v1)."""
        self.reviews.append(dict(spec))
        try:
            head, body, signature = str(spec.get("token") or "").split(".")
            self.key.public_key().verify(_unb64(signature), f"{head}.{body}".encode(),
                                         padding.PKCS1v15(), hashes.SHA256())
            claims = json.loads(_unb64(body))
        except (ValueError, InvalidSignature):
            return {"authenticated": False, "error": "invalid bearer token"}
        if claims.get("exp", 0) < time.time():
            return {"authenticated": False, "error": "invalid bearer token, token has expired"}
        info = claims.get("kubernetes.io") or {}
        namespace = info.get("namespace", "")
        name = (info.get("serviceaccount") or {}).get("name", "")
        if (namespace, name) not in self.accounts:
            return {"authenticated": False,
                    "error": f'serviceaccounts "{name}" not found'}
        wanted = list(spec.get("audiences") or [API_AUDIENCE])
        common = [a for a in claims.get("aud") or [] if a in wanted]
        if not common:
            return {"authenticated": False,
                    "error": "invalid bearer token, token audiences "
                             f"{json.dumps(claims.get('aud'))} is invalid for the target "
                             f"audiences {json.dumps(wanted)}"}
        return {"authenticated": True, "audiences": common, "user": {
            "username": claims["sub"], "uid": self.accounts[(namespace, name)],
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}",
                       "system:authenticated"]}}


@contextmanager
def token_api() -> Iterator[TokenApi]:
    """The double on 127.0.0.1 (a free port); ``url`` is its base URL."""
    api = TokenApi()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if self.path.split("?")[0] != "/apis/authentication.k8s.io/v1/tokenreviews":
                self._answer(404, {"apiVersion": "v1", "kind": "Status", "status": "Failure",
                                   "reason": "NotFound", "code": 404,
                                   "message": "the server could not find the requested "
                                              "resource"})
                return
            spec = body.get("spec") or {}
            self._answer(201, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                               "metadata": {"creationTimestamp": None}, "spec": spec,
                               "status": api.review(spec)})

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
