"""Snapshots in a Google Cloud Storage bucket: upload, list, read back, through the JSON API.

Used in two places with the same code:

* in the cluster, by the snapshot CronJobs (``backup_job``), which run this file with a plain
  Python image: hence only the standard library (urllib) and a token from the GKE metadata
  server, which hands out the workload-identity token of the pod's Kubernetes service account;
* on the controller, by the restore playbooks, over google-auth's ``AuthorizedSession``
  (Application Default Credentials), or anonymously for a loopback test double only.

Paths and bodies are those of the Cloud Storage JSON API (discovery document storage.v1):
``POST /upload/storage/v1/b/{bucket}/o?uploadType=multipart`` (objects.insert, media upload,
the metadata part is an ``Object``), ``GET /storage/v1/b/{bucket}/o?prefix=`` (objects.list, an
``Objects`` page with ``nextPageToken``), ``GET /storage/v1/b/{bucket}/o/{object}`` (objects.get,
the ``Object``) and the same with ``alt=media`` (the bytes).

What a snapshot is, beside its bytes: the object's custom ``metadata`` (string to string) holds
``tai-kind``, ``tai-region``, ``tai-created`` (UTC, RFC 3339), ``tai-sha256`` and the kind's own
facts (Vault version; Redis node id and slot ranges). ``ifGenerationMatch=0`` makes every
upload a create: a snapshot is never overwritten (the bucket's retention policy refuses that
anyway).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import secrets
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlencode, urlsplit

GOOGLE_STORAGE = "https://storage.googleapis.com"
METADATA_TOKEN_URL = ("http://metadata.google.internal/computeMetadata/v1/instance/"
                      "service-accounts/default/token")
STORAGE_SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"
CHUNK = 1 << 20


class StoreError(RuntimeError):
    """A bucket operation failed; the message is one sentence without credentials."""


class Transport(Protocol):
    """One HTTP exchange; returns (status, body bytes). Streaming targets get the body written."""

    def send(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None,
             sink: Path | None = None) -> tuple[int, bytes]: ...


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class MetadataToken:
    """Access tokens of the pod's identity from the GKE metadata server (workload identity)."""

    def __init__(self, url: str = METADATA_TOKEN_URL, timeout: float = 10.0) -> None:
        self.url = url
        self.timeout = timeout

    def __call__(self) -> str:
        request = urllib.request.Request(self.url, headers={"Metadata-Flavor": "Google"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                data = json.load(resp)
        except (OSError, ValueError) as exc:
            raise StoreError(f"the metadata server gave no access token ({exc}); is workload "
                             "identity enabled for this pod's service account?") from None
        token = data.get("access_token") if isinstance(data, dict) else None
        if not token:
            raise StoreError("the metadata server answered without an access token")
        return str(token)


class UrllibTransport:
    """Standard-library HTTP with a bearer token from ``token`` (None: anonymous, loopback)."""

    def __init__(self, token: MetadataToken | None, timeout: float = 300.0) -> None:
        self._token = token
        self.timeout = timeout

    def send(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None,
             sink: Path | None = None) -> tuple[int, bytes]:
        all_headers = dict(headers)
        if self._token is not None:
            all_headers["Authorization"] = f"Bearer {self._token()}"
        elif not is_loopback(url):
            raise StoreError(f"refusing an anonymous request to {url}: only a loopback test "
                             "double may be used without credentials")
        request = urllib.request.Request(url, data=body, method=method, headers=all_headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                return int(resp.status), _drain(resp, sink)
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read()
        except OSError as exc:
            raise StoreError(f"cannot reach {urlsplit(url).netloc}: {exc}") from None


class SessionTransport:
    """A ``requests`` session: google-auth's AuthorizedSession on the controller."""

    def __init__(self, session: Any, timeout: float = 300.0) -> None:
        self._session = session
        self.timeout = timeout

    def send(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None,
             sink: Path | None = None) -> tuple[int, bytes]:
        import requests

        try:
            resp = self._session.request(method, url, headers=dict(headers), data=body,
                                         timeout=self.timeout, stream=sink is not None)
        except requests.exceptions.RequestException as exc:
            raise StoreError(f"cannot reach {urlsplit(url).netloc}: {exc}") from None
        if sink is not None and resp.status_code == 200:
            with sink.open("wb") as out:
                for chunk in resp.iter_content(CHUNK):
                    out.write(chunk)
            return 200, b""
        return int(resp.status_code), bytes(resp.content)


def _drain(resp: Any, sink: Path | None) -> bytes:
    if sink is None:
        return bytes(resp.read())
    with sink.open("wb") as out:
        while chunk := resp.read(CHUNK):
            out.write(chunk)
    return b""


def controller_transport(auth_kind: str, endpoint: str) -> Transport:
    """google-auth Application Default Credentials, or anonymous for a loopback endpoint."""
    if auth_kind == "none":
        if not is_loopback(endpoint):
            raise StoreError(f"anonymous access (auth_kind none) is allowed only for a loopback "
                             f"test double, not {endpoint}")
        return UrllibTransport(None)
    if auth_kind != "application":
        raise StoreError(f"auth_kind {auth_kind!r} is not application or none")
    try:
        import google.auth
        from google.auth.transport.requests import AuthorizedSession
    except ImportError:  # pragma: no cover - the project's environment has google-auth
        raise StoreError("google-auth is required on the controller") from None
    credentials, _ = google.auth.default(scopes=[STORAGE_SCOPE])
    return SessionTransport(AuthorizedSession(credentials))  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class StoredObject:
    """The parts of a storage.v1 ``Object`` the restores use."""

    name: str
    size: int
    generation: str
    metadata: dict[str, str]

    @classmethod
    def from_resource(cls, data: Mapping[str, Any]) -> StoredObject:
        return cls(name=str(data.get("name") or ""), size=int(data.get("size") or 0),
                   generation=str(data.get("generation") or ""),
                   metadata={str(k): str(v) for k, v in (data.get("metadata") or {}).items()})


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class BackupStore:
    """One bucket of one Cloud Storage endpoint."""

    def __init__(self, bucket: str, transport: Transport, endpoint: str = GOOGLE_STORAGE
                 ) -> None:
        if not bucket or "/" in bucket:
            raise StoreError(f"bucket name {bucket!r} is not valid")
        if urlsplit(endpoint).scheme == "http" and not is_loopback(endpoint):
            raise StoreError(f"endpoint {endpoint} uses plain http, allowed only for loopback")
        self.bucket = bucket
        self.endpoint = endpoint.rstrip("/")
        self._transport = transport

    def _url(self, path: str, **query: str) -> str:
        clean = {k: v for k, v in query.items() if v}
        return f"{self.endpoint}{path}" + (f"?{urlencode(clean)}" if clean else "")

    def _fail(self, action: str, status: int, body: bytes) -> StoreError:
        try:
            message = str(json.loads(body)["error"]["message"])
        except (ValueError, KeyError, TypeError):
            message = body[:200].decode(errors="replace").strip() or "no message"
        hint = {403: "the identity may not do this", 404: "it does not exist",
                412: "an object of that name exists already"}.get(status, "")
        return StoreError(f"cannot {action} in gs://{self.bucket}: HTTP {status}"
                          + (f" ({hint})" if hint else "") + f": {message}")

    def upload(self, name: str, source: Path, metadata: Mapping[str, str], *,
               content_type: str = "application/octet-stream") -> StoredObject:
        """objects.insert with uploadType=multipart: the Object resource, then the bytes."""
        resource = {"name": name, "contentType": content_type,
                    "metadata": {str(k): str(v) for k, v in metadata.items()}}
        boundary = f"tai-{secrets.token_hex(12)}"
        head = (f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n"
                f"{json.dumps(resource)}\r\n--{boundary}\r\nContent-Type: {content_type}\r\n\r\n")
        body = head.encode() + source.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
        url = self._url(f"/upload/storage/v1/b/{quote(self.bucket, safe='')}/o",
                        uploadType="multipart", ifGenerationMatch="0")
        status, data = self._transport.send(
            "POST", url, {"Content-Type": f"multipart/related; boundary={boundary}"}, body)
        if status != 200:
            raise self._fail(f"upload {name}", status, data)
        return StoredObject.from_resource(json.loads(data))

    def list(self, prefix: str) -> list[StoredObject]:
        """Every object under prefix (all pages of objects.list), in name order."""
        found: list[StoredObject] = []
        token = ""
        while True:  # one page per pass, not a wait
            url = self._url(f"/storage/v1/b/{quote(self.bucket, safe='')}/o", prefix=prefix,
                            pageToken=token)
            status, data = self._transport.send("GET", url, {}, None)
            if status != 200:
                raise self._fail(f"list {prefix}", status, data)
            page = json.loads(data)
            found.extend(StoredObject.from_resource(i) for i in page.get("items") or [])
            token = str(page.get("nextPageToken") or "")
            if not token:
                return sorted(found, key=lambda o: o.name)

    def get(self, name: str) -> StoredObject | None:
        url = self._url(f"/storage/v1/b/{quote(self.bucket, safe='')}/o/{quote(name, safe='')}")
        status, data = self._transport.send("GET", url, {}, None)
        if status == 404:
            return None
        if status != 200:
            raise self._fail(f"read {name}", status, data)
        return StoredObject.from_resource(json.loads(data))

    def download(self, name: str, dest: Path) -> None:
        url = self._url(f"/storage/v1/b/{quote(self.bucket, safe='')}/o/{quote(name, safe='')}",
                        alt="media")
        dest.parent.mkdir(parents=True, exist_ok=True)
        status, data = self._transport.send("GET", url, {}, None, sink=dest)
        if status != 200:
            raise self._fail(f"download {name}", status, data)


# --- snapshots: names, the facts beside them, and the checks every restore makes --------------

def utc_stamp(moment: datetime) -> str:
    """A sortable UTC name part: 20261201T203000Z."""
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def snapshot_metadata(kind: str, region: str, created: datetime, sha256: str,
                      **facts: str) -> dict[str, str]:
    """The custom metadata written beside every snapshot object."""
    return {"tai-kind": kind, "tai-region": region, "tai-created": rfc3339(created),
            "tai-sha256": sha256, **{f"tai-{k.replace('_', '-')}": v for k, v in facts.items()}}


def check_origin(obj: StoredObject, *, kind: str, region: str, allow_other_region: bool) -> None:
    """Refuse (one sentence) a snapshot of another kind, without its facts, or of another region."""
    meta = obj.metadata
    if meta.get("tai-kind") != kind or not meta.get("tai-sha256"):
        raise StoreError(f"gs object {obj.name} is not a {kind} snapshot written by the backup "
                         "job (its tai-kind/tai-sha256 metadata is missing); refusing to restore "
                         "it")
    source = meta.get("tai-region", "")
    if source != region and not allow_other_region:
        raise StoreError(f"snapshot {obj.name} comes from region {source or 'unknown'}, not "
                         f"{region}; refusing to restore it unless the restore is told that this "
                         "is intended (allow another region)")


def verify_download(obj: StoredObject, path: Path) -> str:
    """The file's sha256, after refusing a file whose sha256 differs from the recorded one."""
    actual = sha256_file(path)
    expected = obj.metadata.get("tai-sha256", "")
    if actual != expected:
        raise StoreError(f"snapshot {obj.name} is corrupt: its sha256 is {actual}, but "
                         f"{expected or 'nothing'} was recorded when it was taken; refusing to "
                         "restore it")
    return actual


def in_cluster_store(bucket: str, endpoint: str | None = None) -> BackupStore:
    """The store of a snapshot job: workload identity, unless pointed at a loopback double."""
    target = endpoint or os.environ.get("TAI_BACKUP_STORAGE_ENDPOINT") or GOOGLE_STORAGE
    token = None if is_loopback(target) else MetadataToken()
    return BackupStore(bucket, UrllibTransport(token), target)
