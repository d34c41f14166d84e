"""A TEST DOUBLE of the Cloud Storage JSON API (objects only), on loopback.

No Cloud Storage server can run on these machines, so the backup tests upload to and restore
from this double. Its paths, parameters and bodies come from Google's discovery document
storage.v1 (``googleapiclient/discovery_cache/documents/storage.v1.json``, revision 20261009),
never from the project's code:

* ``objects.insert``: ``POST /upload/storage/v1/b/{bucket}/o`` (``mediaUpload.protocols.simple
  .path``) with ``uploadType=media`` (``name`` parameter, the body is the bytes) or
  ``uploadType=multipart`` (``multipart/related``: an ``Object`` resource as JSON, then the
  bytes); ``ifGenerationMatch=0`` makes it fail with 412 when the object exists.
* ``objects.list``: ``GET /storage/v1/b/{bucket}/o`` with ``prefix``, ``maxResults`` and
  ``pageToken``; answers an ``Objects`` resource (``kind``, ``items``, ``nextPageToken``).
* ``objects.get``: ``GET /storage/v1/b/{bucket}/o/{object}``; the ``Object`` resource, or the
  bytes with ``alt=media``.

``Object`` fields set: kind, id, name, bucket, generation and metageneration (int64 as strings,
as the discovery document's ``format: int64`` says), contentType, size (uint64 as a string),
md5Hash (base64), timeCreated, updated, metadata. Errors use the JSON API's error body
(``{"error": {"code", "message", "errors": [...]}}``, Cloud Storage documentation "HTTP status
and error codes"). Objects are kept in memory; tests reach them through ``objects`` (for
example to corrupt one) and can make the double refuse writes (``read_only``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class StoredBlob:
    data: bytes
    resource: dict[str, Any]


@dataclass
class GcsDouble:
    bucket: str
    objects: dict[str, StoredBlob] = field(default_factory=dict)
    generation: int = 1_700_000_000_000_000
    read_only: bool = False
    page_size: int = 1000
    lock: threading.Lock = field(default_factory=threading.Lock)

    def put(self, name: str, data: bytes, resource: dict[str, Any]) -> dict[str, Any]:
        self.generation += 1
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = {
            "kind": "storage#object", "id": f"{self.bucket}/{name}/{self.generation}",
            "name": name, "bucket": self.bucket, "generation": str(self.generation),
            "metageneration": "1",
            "contentType": resource.get("contentType") or "application/octet-stream",
            "size": str(len(data)),
            "md5Hash": base64.b64encode(hashlib.md5(data).digest()).decode(),
            "timeCreated": now, "updated": now,
        }
        if resource.get("metadata"):
            body["metadata"] = {str(k): str(v) for k, v in resource["metadata"].items()}
        self.objects[name] = StoredBlob(data, body)
        return body


def _error(code: int, message: str, reason: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message,
                                 "errors": [{"message": message, "domain": "global",
                                             "reason": reason}]}}).encode()


def _handler(state: GcsDouble) -> type[BaseHTTPRequestHandler]:
    prefix_objects = f"/storage/v1/b/{state.bucket}/o"
    upload_path = f"/upload/storage/v1/b/{state.bucket}/o"

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if url.path != upload_path:
                self._send(404, _error(404, "Not Found", "notFound"))
                return
            kind = query.get("uploadType")
            if kind == "media":
                resource: dict[str, Any] = {"name": query.get("name"),
                                            "contentType": self.headers.get("Content-Type")}
                data = body
            elif kind == "multipart":
                ctype = self.headers.get("Content-Type") or ""
                message = BytesParser(policy=HTTP).parsebytes(
                    f"Content-Type: {ctype}\r\n\r\n".encode() + body)
                parts = list(message.iter_parts())
                if len(parts) != 2:
                    self._send(400, _error(400, "multipart upload needs 2 parts", "invalid"))
                    return
                head, media = (p.get_payload(decode=True) for p in parts)
                resource = json.loads(head if isinstance(head, bytes) else b"{}")
                data = media if isinstance(media, bytes) else b""
            else:
                self._send(400, _error(400, f"unsupported uploadType {kind}", "invalid"))
                return
            name = str(resource.get("name") or "")
            if not name:
                self._send(400, _error(400, "Required: name", "required"))
                return
            with state.lock:
                if state.read_only:
                    self._send(403, _error(403, "caller does not have storage.objects.create "
                                           "access", "forbidden"))
                    return
                if query.get("ifGenerationMatch") == "0" and name in state.objects:
                    self._send(412, _error(412, "At least one of the pre-conditions you "
                                           "specified did not hold.", "conditionNotMet"))
                    return
                created = state.put(name, data, resource)
            self._send(200, json.dumps(created).encode())

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            if url.path == prefix_objects:
                self._list(query)
                return
            if not url.path.startswith(prefix_objects + "/"):
                self._send(404, _error(404, "Not Found", "notFound"))
                return
            name = unquote(url.path[len(prefix_objects) + 1:])
            with state.lock:
                blob = state.objects.get(name)
            if blob is None:
                self._send(404, _error(404, f"No such object: {state.bucket}/{name}",
                                       "notFound"))
            elif query.get("alt") == "media":
                self._send(200, blob.data, str(blob.resource["contentType"]))
            else:
                self._send(200, json.dumps(blob.resource).encode())

        def _list(self, query: dict[str, str]) -> None:
            prefix = query.get("prefix", "")
            size = min(int(query.get("maxResults") or state.page_size), state.page_size)
            with state.lock:
                names = sorted(n for n in state.objects if n.startswith(prefix))
                start = names.index(query["pageToken"]) if query.get("pageToken") in names else 0
                page = names[start:start + size]
                body: dict[str, Any] = {"kind": "storage#objects",
                                        "items": [state.objects[n].resource for n in page]}
            if start + size < len(names):
                body["nextPageToken"] = names[start + size]
            if not body["items"]:
                del body["items"]
            self._send(200, json.dumps(body).encode())

    return Handler


@contextmanager
def gcs_double(bucket: str, *, page_size: int = 1000) -> Iterator[tuple[str, GcsDouble]]:
    """Serve the double on 127.0.0.1; yields (endpoint URL, state)."""
    state = GcsDouble(bucket, page_size=page_size)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
