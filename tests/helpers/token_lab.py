"""TEST DOUBLES for the GKE credential plugin test: Google's OAuth 2.0 token endpoint and a
Kubernetes API server's /version, both on loopback. Neither is Google nor Kubernetes.

OAuth 2.0 token endpoint (``POST /token``, form-encoded), the grants as Google documents them
(an ``authorized_user`` ADC file cannot be pointed here: google-auth always sends its refresh
to https://oauth2.googleapis.com/token, so the tests use a service-account key, whose
``token_uri`` google-auth honours):

- JWT bearer (RFC 7523 section 2.1; https://developers.google.com/identity/protocols/oauth2/
  service-account#httprest): ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`` and
  ``assertion``, a JWT signed RS256 by the service account's key with ``iss`` the account,
  ``aud`` https://oauth2.googleapis.com/token, ``scope``, ``iat`` and ``exp`` (at most one
  hour). The double VERIFIES the signature with the public key of the key it was given
  (google.auth.jwt), so a token is only issued for a key that really signed the assertion.
- Refresh token (RFC 6749 section 6): ``grant_type=refresh_token``, ``client_id``,
  ``client_secret``, ``refresh_token``.

Success is ``{"access_token", "expires_in", "token_type": "Bearer"}`` (RFC 6749 section 5.1);
failure is HTTP 400 ``{"error": "invalid_grant", "error_description"}`` (section 5.2).

Kubernetes API: ``GET /version`` answers a version.Info object when the request carries
``Authorization: Bearer <a token the token endpoint issued>``, else 401 with a
``Status`` object (reason Unauthorized), as kube-apiserver does. It serves HTTPS with a test CA,
so kubectl verifies the server as it would a real cluster.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import secrets
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GOOGLE_TOKEN_AUD = "https://oauth2.googleapis.com/token"


@dataclass
class TokenEndpoint:
    """State of the token endpoint double."""

    public_keys: dict[str, bytes] = field(default_factory=dict)  # account -> public key PEM
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # refresh token -> client id
    issued: list[str] = field(default_factory=list)
    requests: list[dict[str, str]] = field(default_factory=list)
    url: str = ""

    def grant(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        from google.auth import exceptions, jwt

        self.requests.append(form)
        grant = form.get("grant_type", "")
        if grant == JWT_BEARER:
            assertion = form.get("assertion", "")
            try:
                unverified = jwt.decode(assertion, verify=False)  # type: ignore[no-untyped-call]
                key = self.public_keys.get(str(unverified.get("iss")))
                if key is None:
                    return _oauth_error("invalid_grant", "Invalid JWT: unknown issuer.")
                # Google's documented audience, whatever URI the assertion is posted to.
                claims = jwt.decode(  # type: ignore[no-untyped-call]
                    assertion, certs=key.decode(), audience=GOOGLE_TOKEN_AUD)
            except (ValueError, exceptions.GoogleAuthError) as exc:
                return _oauth_error("invalid_grant", f"Invalid JWT Signature: {exc}")
            if int(claims["exp"]) - int(claims["iat"]) > 3600:
                return _oauth_error("invalid_grant", "Invalid JWT: exp too far in the future.")
            if "cloud-platform" not in str(claims.get("scope", "")):
                return _oauth_error("invalid_scope", "The cloud-platform scope is required.")
        elif grant == "refresh_token":
            if self.refresh_tokens.get(form.get("refresh_token", "")) != form.get("client_id"):
                return _oauth_error("invalid_grant", "Token has been expired or revoked.")
        else:
            return _oauth_error("unsupported_grant_type", f"Invalid grant_type: {grant}")
        token = f"ya29.double-{secrets.token_urlsafe(12)}"
        self.issued.append(token)
        return 200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}


def _oauth_error(code: str, description: str) -> tuple[int, dict[str, Any]]:
    return 400, {"error": code, "error_description": description}


@contextmanager
def token_endpoint() -> Iterator[TokenEndpoint]:
    state = TokenEndpoint()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            form = {k: v[0] for k, v in parse_qs(raw).items()}
            status, body = state.grant(form)
            _answer(self, status, body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    with _serving(Handler, None) as port:
        state.url = f"http://127.0.0.1:{port}/token"
        yield state


def service_account_key(path: Path, endpoint: TokenEndpoint,
                        account: str = "tai-deployer@tai-production.iam.gserviceaccount.com",
                        *, register: bool = True) -> Path:
    """A service-account key file (the JSON format of iam keys.create) whose token_uri is the
    double; the double knows its public key unless ``register`` is false."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    if register:
        endpoint.public_keys[account] = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "tai-production",
        "private_key_id": secrets.token_hex(20), "private_key": pem, "client_email": account,
        "client_id": "1234567890", "token_uri": endpoint.url,
        "auth_uri": "https://accounts.google.com/o/oauth2/auth"}))
    return path


@dataclass
class ApiServer:
    url: str
    ca_data: str  # base64 PEM, as GKE's masterAuth.clusterCaCertificate
    seen: list[str] = field(default_factory=list)  # Authorization headers received


@contextmanager
def api_server(tmp: Path, endpoint: TokenEndpoint) -> Iterator[ApiServer]:
    """HTTPS /version that accepts only bearer tokens the token endpoint issued."""
    ca_pem, cert_pem, key_pem = _tls_material()
    (tmp / "server.pem").write_bytes(cert_pem + ca_pem)
    (tmp / "server.key").write_bytes(key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp / "server.pem", tmp / "server.key")
    issued = endpoint.issued
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            auth = self.headers.get("Authorization", "")
            seen.append(auth)
            token = auth.removeprefix("Bearer ")
            if not auth.startswith("Bearer ") or token not in issued:
                _answer(self, 401, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                    "status": "Failure", "message": "Unauthorized",
                                    "reason": "Unauthorized", "code": 401})
                return
            if self.path != "/version":
                _answer(self, 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                    "reason": "NotFound", "code": 404})
                return
            _answer(self, 200, {"major": "1", "minor": "34", "gitVersion": "v1.34.1-gke.1000",
                                "platform": "linux/amd64"})

        def log_message(self, format: str, *args: Any) -> None:
            return

    with _serving(Handler, context) as port:
        yield ApiServer(f"https://127.0.0.1:{port}", base64.b64encode(ca_pem).decode(), seen)


def _answer(handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


@contextmanager
def _serving(handler: type[BaseHTTPRequestHandler],
             context: ssl.SSLContext | None) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def _tls_material() -> tuple[bytes, bytes, bytes]:
    """A test CA and a server certificate for 127.0.0.1 signed by it (PEM)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tai test cluster CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(hours=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return (ca.public_bytes(serialization.Encoding.PEM),
            cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM,
                              serialization.PrivateFormat.TraditionalOpenSSL,
                              serialization.NoEncryption()))
