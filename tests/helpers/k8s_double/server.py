"""The HTTP front end of the Kubernetes API TEST DOUBLE: loopback server, watches, request log.

Part of the Kubernetes API TEST DOUBLE (NOT Kubernetes). A ThreadingHTTPServer on 127.0.0.1
(HTTPS with a test CA when asked, as a GKE control plane serves its IP endpoint) hands every
request to ``handle``: the bearer token, the body (JSON, YAML for server-side apply, protobuf),
the faults of faults.py, then ``_dispatch`` (routing.py) and the JSON answer; ``?watch=true``
goes to ``_watch`` instead. Every request is recorded (``requests``, and the file that
``K8S_DOUBLE_LOG`` names).
"""

from __future__ import annotations

import contextlib
import copy
import ipaddress
import json
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import yaml

from .common import _HttpError
from .faults import FaultInjection, _Drop
from .patches import APPLY_PATCH
from .protobuf import PROTOBUF, decode_protobuf
from .store import _matches, _parse_selector

if TYPE_CHECKING:
    from .double import KubeApiDouble


@dataclass(frozen=True)
class RequestRecord:
    at: float
    method: str
    path: str
    query: str
    status: int
    content_type: str
    body: Any


def _tls_material() -> tuple[bytes, bytes, bytes]:
    """A test CA and a certificate for 127.0.0.1 it signed (PEM), with the key identifiers
    Python 3.13's strict verification (VERIFY_X509_STRICT) requires."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "k8s double test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(hours=4))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(ca_ski, critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(hours=4))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return (ca.public_bytes(serialization.Encoding.PEM),
            cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM,
                              serialization.PrivateFormat.TraditionalOpenSSL,
                              serialization.NoEncryption()))


class HttpFrontEnd(FaultInjection):
    """Every request, from the socket to the answer."""

    # -- HTTP ----------------------------------------------------------------------------

    def handle(self, h: _Handler, method: str) -> None:
        split = urlsplit(h.path)
        path, query = split.path.rstrip("/") or "/", parse_qs(split.query)
        if self.exec.serve(h, method, path, query):  # a WebSocket upgrade, not a JSON answer
            return
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        content_type = (h.headers.get("Content-Type") or "").split(";")[0].strip()
        body: Any = None
        status = 200
        answer: Any
        headers: dict[str, str] = {}
        try:
            if self.token is not None and h.headers.get("Authorization") != f"Bearer {self.token}":
                raise _HttpError(401, "Unauthorized", "Unauthorized")
            if raw:
                try:
                    body = (yaml.safe_load(raw) if content_type == APPLY_PATCH
                            else decode_protobuf(raw) if content_type == PROTOBUF
                            else json.loads(raw))
                except (ValueError, yaml.YAMLError) as exc:
                    if method == "DELETE":  # DeleteOptions: nothing the double needs
                        body = None
                    else:
                        raise _HttpError(400, "BadRequest",
                                         f"the body of the request was not valid JSON: {exc}"
                                         ) from exc
            if method == "GET" and query.get("watch", ["false"])[0] in ("true", "1"):
                self._watch(h, path, query)
                return
            fault = self._fault(method, path, raw.decode("utf-8", "replace"),
                                h.headers.get("Authorization"))
            if fault is not None and fault.delay > 0:
                time.sleep(fault.delay)
            if fault is not None and fault.action == "hold":
                fault.release.wait(fault.hold_timeout)
            if fault is not None and fault.action == "error":
                if fault.retry_after is not None:
                    headers["Retry-After"] = f"{fault.retry_after:g}"
                raise _HttpError(fault.status, fault.reason, fault.message)
            if fault is not None and fault.action in ("drop", "reset"):
                raise _Drop(reset=fault.action == "reset")
            with self._lock:
                if fault is not None and fault.action == "touch":
                    self._touch(path)
                status, answer = self._dispatch(method, path, query, body, content_type)
            if fault is not None and fault.delay_after > 0:
                time.sleep(fault.delay_after)
            if fault is not None and fault.action == "drop_after":
                raise _Drop
        except _HttpError as err:
            status, answer = err.code, err.status()
        except _Drop as drop:
            self._record(method, path, split.query, status=0, content_type=content_type,
                         body=body)
            h.close_connection = True
            if drop.reset:  # SO_LINGER 0: close() sends a RST instead of a FIN
                with contextlib.suppress(OSError):
                    h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                            b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    h.connection.close()
                return
            with contextlib.suppress(OSError):
                h.connection.shutdown(socket.SHUT_RDWR)
            return
        self._record(method, path, split.query, status=status, content_type=content_type,
                     body=body)
        data = json.dumps(answer).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.send_header("Audit-Id", str(uuid.uuid4()))
        for key, value in headers.items():
            h.send_header(key, value)
        h.end_headers()
        h.wfile.write(data)

    def _watch(self, h: _Handler, path: str, query: Mapping[str, list[str]]) -> None:
        """A watch: newline-delimited WatchEvents in a chunked answer (API reference: "Efficient
        detection of changes"), ADDED for what exists (or what changed after the given
        resourceVersion), then MODIFIED/DELETED as they happen, until timeoutSeconds."""
        with self._lock:
            route = self._route(path)
            if route is None:
                raise _HttpError(404, "NotFound",
                                 "the server could not find the requested resource")
            res, ns, by_namespace, name, _ = route
        since = int(query.get("resourceVersion", ["0"])[0] or 0)
        timeout = min(float(query.get("timeoutSeconds", ["300"])[0]), 300.0)
        label_sel = _parse_selector(query.get("labelSelector", [""])[0])
        field_sel = _parse_selector(query.get("fieldSelector", [""])[0])
        if name is not None:
            field_sel.append(("metadata.name", "=", name))
        self._record("GET", path, "watch", status=200, content_type="", body=None)
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()

        def matching() -> dict[tuple[str, str], dict[str, Any]]:
            out = {}
            for (q, ins, iname), obj in self._objects.items():
                if q != res.qualified or (by_namespace and ins != ns):
                    continue
                fields = {"metadata.name": iname, "metadata.namespace": ins}
                if _matches(label_sel, obj["metadata"].get("labels") or {}) and _matches(
                        field_sel, fields):
                    out[(ins, iname)] = obj
            return out

        def send(kind: str, obj: Mapping[str, Any]) -> None:
            data = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
            h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            h.wfile.flush()

        seen: dict[tuple[str, str], str] = {}
        deadline = time.time() + timeout
        try:
            with self._lock:
                current = matching()
                for key, obj in sorted(current.items()):
                    rv = obj["metadata"]["resourceVersion"]
                    if since == 0 or int(rv) > since:
                        send("ADDED", copy.deepcopy(obj))
                    seen[key] = rv
                if query.get("sendInitialEvents", ["false"])[0] == "true":
                    # the end of the initial events of a streaming list (KEP-3157)
                    send("BOOKMARK", {"kind": res.kind, "apiVersion": res.api_version,
                                      "metadata": {
                                          "resourceVersion": str(self._current_rv()),
                                          "annotations": {
                                              "k8s.io/initial-events-end": "true"}}})
            while time.time() < deadline and not self._stop.is_set():
                time.sleep(self.tick)
                with self._lock:
                    current = matching()
                    events = []
                    for key, obj in sorted(current.items()):
                        rv = obj["metadata"]["resourceVersion"]
                        if key not in seen:
                            events.append(("ADDED", copy.deepcopy(obj)))
                        elif seen[key] != rv:
                            events.append(("MODIFIED", copy.deepcopy(obj)))
                        seen[key] = rv
                    for key in [k for k in seen if k not in current]:
                        del seen[key]
                        gone = next((d[4] for d in reversed(self._deleted)
                                     if (d[1], d[2]) == key and d[0] == res.qualified), None)
                        if gone is not None:
                            events.append(("DELETED", copy.deepcopy(gone)))
                for kind, obj in events:
                    send(kind, obj)
            h.wfile.write(b"0\r\n\r\n")
            h.wfile.flush()
        except OSError:
            pass
        h.close_connection = True

    def _record(self, method: str, path: str, query: str, *, status: int, content_type: str,
                body: Any) -> None:
        if self.log_file:
            with Path(self.log_file).open("a", encoding="utf-8") as log:
                log.write(f"{method} {path}?{query} {status} {content_type}\n")
        self.requests.append(RequestRecord(time.time(), method, path, query, status,
                                           content_type, body))


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up (helm and kubectl close idle keep-alive connections) is
        not an error of the double; anything else is printed as usual."""
        import sys

        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    double: KubeApiDouble

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.double.handle(self, "GET")

    def do_POST(self) -> None:
        self.double.handle(self, "POST")

    def do_PUT(self) -> None:
        self.double.handle(self, "PUT")

    def do_PATCH(self) -> None:
        self.double.handle(self, "PATCH")

    def do_DELETE(self) -> None:
        self.double.handle(self, "DELETE")
