"""A small Kubernetes REST client: JSON in, JSON out, errors as Status messages.

It reads a kubeconfig the way kubectl does (``KUBECONFIG`` or ``~/.kube/config``, a named or
the current context; server, CA, client certificate, bearer token, token file, ``exec``
credential plugins such as GKE's ``gke-gcloud-auth-plugin``) or takes an API server URL and a
token directly. Only what the blue-green swap needs: GET, POST, PUT and the three PATCH kinds,
with ``fieldValidation=Strict`` on writes so that a misspelt field is refused, not dropped.

Errors carry the API server's own Status message. 429 (throttled) and 503 answers are retried
after a short pause; a GET is retried once after a connection failure. Writes are never
retried blindly: callers use resourceVersion preconditions and ``update_with_retry``, which
re-reads the object after a 409 Conflict and recomputes its change.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
import yaml

PATCH_TYPES = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
}
_RETRY_STATUSES = (429, 503)
_MAX_RETRY_AFTER = 5.0


class KubeError(Exception):
    """A problem reaching or using the API; the message is meant for the person running it."""


class KubeConfigError(KubeError):
    """The kubeconfig or the connection options are unusable."""


class ApiError(KubeError):
    """The API server answered with an error Status."""

    def __init__(self, status: int, reason: str, message: str, *, method: str, path: str,
                 body: Mapping[str, Any] | None = None) -> None:
        self.status = status
        self.reason = reason
        self.api_message = message
        self.method = method
        self.path = path
        self.body = dict(body or {})
        super().__init__(f"{method} {path}: {status} {reason}: {message}")

    @property
    def conflict(self) -> bool:
        return self.status == 409 and self.reason != "AlreadyExists"

    @property
    def not_found(self) -> bool:
        return self.status == 404


@dataclass(frozen=True)
class ClusterAccess:
    """Where the API server is and how to authenticate; secrets are kept out of repr."""

    server: str
    token: str | None = field(default=None, repr=False)
    token_file: str | None = None
    ca_file: str | None = None
    ca_data: bytes | None = field(default=None, repr=False)
    client_cert_file: str | None = None
    client_cert_data: bytes | None = field(default=None, repr=False)
    client_key_file: str | None = None
    client_key_data: bytes | None = field(default=None, repr=False)
    verify: bool = True
    exec_config: Mapping[str, Any] | None = field(default=None, repr=False)
    proxy_url: str | None = None
    context: str | None = None
    source: str = "options"


# ------------------------------------------------------------------------------------------
# kubeconfig


def kubeconfig_paths(explicit: str | None = None) -> list[Path]:
    """The kubeconfig files kubectl would read: the explicit one, KUBECONFIG, ~/.kube/config."""
    if explicit:
        return [Path(explicit).expanduser()]
    env = os.environ.get("KUBECONFIG", "")
    if env:
        return [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    return [Path.home() / ".kube" / "config"]


def _merge_named(into: dict[str, dict[str, Any]], items: Any, kind: str, path: Path) -> None:
    if items is None:
        return
    if not isinstance(items, list):
        raise KubeConfigError(f"kubeconfig {path}: {kind} must be a list")
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise KubeConfigError(f"kubeconfig {path}: every entry of {kind} needs a name")
        # kubectl's merge rule: the first file that defines a name wins.
        into.setdefault(item["name"], item.get(kind[:-1]) or {})


def _read_kubeconfigs(paths: list[Path]) -> tuple[dict[str, dict[str, dict[str, Any]]], str | None]:
    merged: dict[str, dict[str, dict[str, Any]]] = {"clusters": {}, "users": {}, "contexts": {}}
    current: str | None = None
    found = False
    for path in paths:
        if not path.is_file():
            continue
        found = True
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise KubeConfigError(f"kubeconfig {path} cannot be read: {exc}") from exc
        if not isinstance(doc, dict):
            raise KubeConfigError(f"kubeconfig {path} is not a YAML mapping")
        for kind in ("clusters", "users", "contexts"):
            _merge_named(merged[kind], doc.get(kind), kind, path)
        if current is None and doc.get("current-context"):
            current = str(doc["current-context"])
    if not found:
        names = ", ".join(str(p) for p in paths)
        raise KubeConfigError(
            f"no kubeconfig found at {names}; run `gcloud container clusters get-credentials` "
            "for the region's cluster or pass kubeconfig/api_server")
    return merged, current


def _data(value: Any, what: str, context: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KubeConfigError(f"kubeconfig context {context}: {what} is not valid base64") from exc


def load_kubeconfig(path: str | None = None, context: str | None = None) -> ClusterAccess:
    """ClusterAccess of one context of the kubeconfig (kubectl's file search and merge)."""
    paths = kubeconfig_paths(path)
    merged, current = _read_kubeconfigs(paths)
    name = context or current
    where = ", ".join(str(p) for p in paths)
    if not name:
        raise KubeConfigError(f"kubeconfig {where} has no current-context; pass a context")
    if name not in merged["contexts"]:
        known = ", ".join(sorted(merged["contexts"])) or "none"
        raise KubeConfigError(
            f"context {name!r} is not in kubeconfig {where} (contexts: {known}); run "
            "`gcloud container clusters get-credentials` for that cluster")
    ctx = merged["contexts"][name]
    cluster = merged["clusters"].get(str(ctx.get("cluster")))
    if cluster is None:
        raise KubeConfigError(f"kubeconfig context {name}: cluster {ctx.get('cluster')!r} "
                              "is not defined")
    user = merged["users"].get(str(ctx.get("user")), {}) if ctx.get("user") else {}
    server = cluster.get("server")
    if not isinstance(server, str) or not server.startswith(("https://", "http://")):
        raise KubeConfigError(f"kubeconfig context {name}: the cluster has no http(s) server")
    if "auth-provider" in user:
        raise KubeConfigError(
            f"kubeconfig context {name}: the legacy auth-provider "
            f"{user['auth-provider'].get('name', '')!r} is not supported; regenerate the "
            "kubeconfig with gke-gcloud-auth-plugin (an exec plugin)")
    if "username" in user or "password" in user:
        raise KubeConfigError(f"kubeconfig context {name}: basic authentication is not "
                              "supported by Kubernetes any more; use a token or a certificate")
    return ClusterAccess(
        server=server.rstrip("/"),
        token=user.get("token"),
        token_file=user.get("tokenFile"),
        ca_file=cluster.get("certificate-authority"),
        ca_data=(_data(cluster["certificate-authority-data"], "certificate-authority-data", name)
                 if cluster.get("certificate-authority-data") else None),
        client_cert_file=user.get("client-certificate"),
        client_cert_data=(_data(user["client-certificate-data"], "client-certificate-data", name)
                          if user.get("client-certificate-data") else None),
        client_key_file=user.get("client-key"),
        client_key_data=(_data(user["client-key-data"], "client-key-data", name)
                         if user.get("client-key-data") else None),
        verify=not bool(cluster.get("insecure-skip-tls-verify")),
        exec_config=user.get("exec"),
        proxy_url=cluster.get("proxy-url"),
        context=name,
        source=where,
    )


def access_from_options(*, kubeconfig: str | None = None, context: str | None = None,
                        api_server: str | None = None, api_token: str | None = None,
                        ca_cert: str | None = None, validate_certs: bool = True) -> ClusterAccess:
    """The module's connection options: api_server (+ token) or a kubeconfig context."""
    if api_server:
        if not api_server.startswith(("https://", "http://")):
            raise KubeConfigError(f"api_server must be an http(s) URL, got {api_server!r}")
        return ClusterAccess(server=api_server.rstrip("/"), token=api_token, ca_file=ca_cert,
                             verify=validate_certs)
    access = load_kubeconfig(kubeconfig, context)
    if not validate_certs:
        access = dataclasses.replace(access, verify=False)
    return access


# ------------------------------------------------------------------------------------------
# exec credential plugins


def run_exec_plugin(config: Mapping[str, Any], server: str) -> dict[str, Any]:
    """Run a client-go exec credential plugin and return its ExecCredential status."""
    command = config.get("command")
    if not isinstance(command, str) or not command:
        raise KubeConfigError("kubeconfig exec plugin has no command")
    api_version = str(config.get("apiVersion") or "client.authentication.k8s.io/v1")
    binary = command if os.sep in command else shutil.which(command)
    if not binary:
        hint = str(config.get("installHint") or "").strip()
        raise KubeConfigError(f"kubeconfig exec plugin {command!r} was not found on PATH"
                              + (f"; {hint}" if hint else ""))
    env = dict(os.environ)
    for item in config.get("env") or []:
        if isinstance(item, dict) and "name" in item:
            env[str(item["name"])] = str(item.get("value", ""))
    spec: dict[str, Any] = {"interactive": False}
    if config.get("provideClusterInfo"):
        spec["cluster"] = {"server": server}
    env["KUBERNETES_EXEC_INFO"] = json.dumps(
        {"apiVersion": api_version, "kind": "ExecCredential", "spec": spec})
    args = [binary, *(str(a) for a in config.get("args") or [])]
    try:
        proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KubeConfigError(f"kubeconfig exec plugin {command!r} failed: {exc}") from exc
    if proc.returncode != 0:
        err = proc.stderr.strip().splitlines()[-1:] or ["no error output"]
        raise KubeConfigError(f"kubeconfig exec plugin {command!r} exited with "
                              f"{proc.returncode}: {err[0]}")
    try:
        cred = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise KubeConfigError(f"kubeconfig exec plugin {command!r} did not print an "
                              "ExecCredential JSON document") from exc
    status = cred.get("status") if isinstance(cred, dict) else None
    if not isinstance(status, dict) or not (status.get("token")
                                            or status.get("clientCertificateData")):
        raise KubeConfigError(f"kubeconfig exec plugin {command!r} returned no token and no "
                              "client certificate")
    return status


# ------------------------------------------------------------------------------------------
# client


def _status_message(resp: requests.Response) -> tuple[str, str, dict[str, Any] | None]:
    try:
        body = resp.json()
    except ValueError:
        text = resp.text.strip().splitlines()
        return resp.reason or "Error", (text[0] if text else resp.reason or ""), None
    if isinstance(body, dict):
        return (str(body.get("reason") or resp.reason or "Error"),
                str(body.get("message") or resp.reason or ""), body)
    return resp.reason or "Error", str(body), None


class KubeClient:
    """JSON over the Kubernetes REST API; one requests session per client."""

    def __init__(self, access: ClusterAccess, *, timeout: float = 30.0,
                 user_agent: str = "tai-deploy/blue-green") -> None:
        self.access = access
        self.timeout = timeout
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._session = requests.Session()
        self._session.headers.update({"User-Agent": user_agent, "Accept": "application/json"})
        self._session.trust_env = False
        if access.proxy_url:
            self._session.proxies = {"https": access.proxy_url, "http": access.proxy_url}
        self._exec_expiry: float | None = None
        self._configure_tls()
        self._token = access.token
        if access.token_file and not self._token:
            self._token = self._read_token_file(access.token_file)

    # -- setup ---------------------------------------------------------------------------

    def _materialise(self, name: str, data: bytes) -> str:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="tai-kube-")
        path = Path(self._tmp.name) / name
        path.write_bytes(data)
        path.chmod(0o600)
        return str(path)

    def _configure_tls(self) -> None:
        a = self.access
        if not a.verify:
            self._session.verify = False
        elif a.ca_data:
            self._session.verify = self._materialise("ca.crt", a.ca_data)
        elif a.ca_file:
            self._session.verify = a.ca_file
        cert = a.client_cert_file or (self._materialise("client.crt", a.client_cert_data)
                                      if a.client_cert_data else None)
        key = a.client_key_file or (self._materialise("client.key", a.client_key_data)
                                    if a.client_key_data else None)
        if cert and key:
            self._session.cert = (cert, key)

    @staticmethod
    def _read_token_file(path: str) -> str:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise KubeConfigError(f"token file {path} cannot be read: {exc}") from exc

    def _exec_credentials(self, force: bool = False) -> None:
        if self.access.exec_config is None:
            return
        if not force and self._token and (self._exec_expiry is None
                                          or time.time() < self._exec_expiry - 10):
            return
        status = run_exec_plugin(self.access.exec_config, self.access.server)
        self._token = status.get("token") or None
        if status.get("clientCertificateData") and status.get("clientKeyData"):
            self._session.cert = (
                self._materialise("exec.crt", str(status["clientCertificateData"]).encode()),
                self._materialise("exec.key", str(status["clientKeyData"]).encode()))
        expiry = status.get("expirationTimestamp")
        self._exec_expiry = _parse_time(expiry) if isinstance(expiry, str) else None

    def close(self) -> None:
        self._session.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> KubeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests ------------------------------------------------------------------------

    def request(self, method: str, path: str, *, body: Any = None,
                content_type: str = "application/json",
                params: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Send one request; return the JSON object or raise ApiError / KubeError."""
        self._exec_credentials()
        url = self.access.server + path
        data = None if body is None else json.dumps(body)
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            headers = {"Content-Type": content_type} if data is not None else {}
            if self._token:
                headers["Authorization"] = f"Bearer {self._token}"
            try:
                resp = self._session.request(method, url, data=data, headers=headers,
                                             params=dict(params or {}), timeout=self.timeout)
            except requests.exceptions.SSLError as exc:
                raise KubeError(f"{method} {path}: TLS failure talking to "
                                f"{self.access.server}: {exc}") from exc
            except requests.exceptions.RequestException as exc:
                if method == "GET" and attempt < 3:
                    time.sleep(0.2 * attempt)
                    continue
                raise KubeError(f"{method} {path}: cannot reach the API server "
                                f"{self.access.server}: {type(exc).__name__}: {exc}") from exc
            if resp.status_code in _RETRY_STATUSES and attempt < 4:
                try:
                    pause = float(resp.headers.get("Retry-After", "0.5"))
                except ValueError:
                    pause = 0.5
                time.sleep(min(max(pause, 0.1), _MAX_RETRY_AFTER))
                continue
            if (resp.status_code == 401 and self.access.exec_config is not None
                    and not refreshed):
                refreshed = True
                self._exec_credentials(force=True)
                continue
            if resp.status_code >= 400:
                reason, message, status_body = _status_message(resp)
                raise ApiError(resp.status_code, reason, message, method=method, path=path,
                               body=status_body)
            try:
                result = resp.json() if resp.content else {}
            except ValueError as exc:
                raise KubeError(f"{method} {path}: the API server did not answer JSON") from exc
            if not isinstance(result, dict):
                raise KubeError(f"{method} {path}: expected a JSON object")
            return result

    def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        return self.request("GET", path, params=params)

    def get_or_none(self, path: str) -> dict[str, Any] | None:
        try:
            return self.get(path)
        except ApiError as exc:
            if exc.not_found:
                return None
            raise

    def create(self, collection_path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self.request("POST", collection_path, body=dict(body),
                            params={"fieldValidation": "Strict"})

    def replace(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self.request("PUT", path, body=dict(body), params={"fieldValidation": "Strict"})

    def patch(self, path: str, body: Any, patch_type: str = "merge") -> dict[str, Any]:
        return self.request("PATCH", path, body=body, content_type=PATCH_TYPES[patch_type],
                            params={"fieldValidation": "Strict"})

    def update_with_retry(self, path: str,
                          change: Callable[[dict[str, Any]], dict[str, Any] | None],
                          *, attempts: int = 5) -> tuple[dict[str, Any], bool, int]:
        """Read, compute a merge patch, send it with the read resourceVersion; redo on 409.

        ``change`` gets the current object and returns the merge patch to apply, or None when
        the object is already as wanted. The patch is sent with ``metadata.resourceVersion``
        so the API server refuses it (409) if anybody changed the object in between; then the
        object is read again and ``change`` decides afresh. Returns the final object, whether
        it was patched, and the number of conflicts met.
        """
        conflicts = 0
        while True:
            current = self.get(path)
            patch = change(current)
            if patch is None:
                return current, False, conflicts
            meta = dict(patch.get("metadata") or {})
            meta["resourceVersion"] = current["metadata"]["resourceVersion"]
            try:
                return self.patch(path, {**patch, "metadata": meta}), True, conflicts
            except ApiError as exc:
                if not exc.conflict or conflicts + 1 >= attempts:
                    raise
                conflicts += 1
                time.sleep(min(0.05 * 2 ** conflicts, 1.0))


def _parse_time(text: str) -> float | None:
    from datetime import datetime

    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


# ------------------------------------------------------------------------------------------
# paths


def deployment_path(namespace: str, name: str | None = None, sub: str | None = None) -> str:
    path = f"/apis/apps/v1/namespaces/{quote(namespace)}/deployments"
    if name:
        path += f"/{quote(name)}"
        if sub:
            path += f"/{sub}"
    return path


def service_path(namespace: str, name: str | None = None) -> str:
    path = f"/api/v1/namespaces/{quote(namespace)}/services"
    return path + f"/{quote(name)}" if name else path
