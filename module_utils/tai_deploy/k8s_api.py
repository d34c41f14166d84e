"""The project's Kubernetes calls: JSON in, JSON out, errors as Status messages.

Requests go through the ``kubernetes`` client's ApiClient (KubeClient; the blue-green swap
takes a measured thin path over requests, see KubeClient). The connection options
are kubernetes.core's (access_from_options: kubeconfig, context, host, api_key, ca_cert,
client_cert, client_key, validate_certs, proxy). The kubeconfig is read here the way kubectl
does (``KUBECONFIG`` or ``~/.kube/config``, a named or the current context; server, CA, client
certificate, bearer token, token file, ``exec`` credential plugins such as GKE's
``gke-gcloud-auth-plugin``) rather than by kubernetes.config.load_kube_config: its messages
(the missing context, the plugin not on PATH with its install hint, the unsupported
auth-provider) name the fix, and the file is read without importing the client. Only what the
blue-green swap, the prune and the gates need: GET, POST, PUT, DELETE and the three PATCH
kinds, with ``fieldValidation=Strict`` on writes so that a misspelt field is refused, not
dropped.

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
import math
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

import yaml

from .poll import poll

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
                        host: str | None = None, api_key: str | None = None,
                        ca_cert: str | None = None, client_cert: str | None = None,
                        client_key: str | None = None, validate_certs: bool | None = None,
                        proxy: str | None = None) -> ClusterAccess:
    """The connection options of kubernetes.core's k8s modules (its args_common AUTH_ARG_SPEC).

    ``host`` (with ``api_key``) names the API server instead of a kubeconfig context; otherwise
    the kubeconfig context is read and any option given here overrides what it says, as in
    kubernetes.core. ``validate_certs`` None means the kubeconfig's (or, with ``host``, yes).
    """
    if host:
        if not host.startswith(("https://", "http://")):
            raise KubeConfigError(f"host must be an http(s) URL, got {host!r}")
        return ClusterAccess(server=host.rstrip("/"), token=api_key, ca_file=ca_cert,
                             client_cert_file=client_cert, client_key_file=client_key,
                             verify=validate_certs is not False, proxy_url=proxy)
    access = load_kubeconfig(kubeconfig, context)
    overrides: dict[str, Any] = {}
    if api_key:
        overrides.update(token=api_key, token_file=None, exec_config=None)
    if ca_cert:
        overrides.update(ca_file=ca_cert, ca_data=None)
    if client_cert:
        overrides.update(client_cert_file=client_cert, client_cert_data=None)
    if client_key:
        overrides.update(client_key_file=client_key, client_key_data=None)
    if validate_certs is not None:
        overrides["verify"] = validate_certs
    if proxy:
        overrides["proxy_url"] = proxy
    return dataclasses.replace(access, **overrides) if overrides else access


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


def _status_message(status: int, reason: str | None, data: bytes
                    ) -> tuple[str, str, dict[str, Any] | None]:
    try:
        body = json.loads(data) if data else None
    except ValueError:
        text = data.decode("utf-8", "replace").strip().splitlines()
        return reason or "Error", (text[0] if text else reason or ""), None
    if isinstance(body, dict):
        return (str(body.get("reason") or reason or "Error"),
                str(body.get("message") or reason or ""), body)
    return reason or "Error", str(body) if body is not None else (reason or ""), None


class _TlsFailure(Exception):
    """The transport could not verify (or set up) TLS with the API server."""


class _Unreachable(Exception):
    """The transport got no answer (connection refused, reset, timed out)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")


@dataclass
class _Reply:
    status: int
    reason: str | None
    headers: Mapping[str, str]
    content: bytes


class _KubernetesTransport:
    """The kubernetes client's ApiClient: its Configuration holds server, TLS, proxy, token.

    The typed API classes (AppsV1Api, DynamicClient) are not used: callers speak paths and
    JSON bodies, and the DynamicClient's discovery would cost a round trip per API group.

    Import cost in a module process (python -X importtime, on top of ansible.module_utils.basic,
    requests and yaml): ``kubernetes.client`` adds 0.47-1.7 s on the shared 2-core machine (5
    runs at load 4.5: 0.47, 0.71, 0.89, 1.10, 1.71 s; 0.90-1.28 s at load 14): it imports every
    generated model and API class, and no part of it can be imported alone.
    """

    def __init__(self, access: ClusterAccess, user_agent: str, cert: tuple[str, str] | None
                 ) -> None:
        try:
            from kubernetes.client import ApiClient, Configuration
        except ImportError:
            raise KubeConfigError("the kubernetes Python library is not installed on the "
                                  "host that runs the module (pip install kubernetes)") from None
        config = Configuration(host=access.server)
        # One attempt per request: KubeClient's retries are the ones the callers rely on.
        config.retries = False
        if access.proxy_url:
            config.proxy = access.proxy_url
        if not access.verify:
            config.verify_ssl = False
        elif access.ca_data:
            config.ca_cert_data = access.ca_data.decode("utf-8", "replace")
        elif access.ca_file:
            config.ssl_ca_cert = access.ca_file
        if cert:
            config.cert_file, config.key_file = cert
        self._config = config
        self._api = ApiClient(config)
        self._api.user_agent = user_agent

    def set_token(self, token: str | None) -> None:
        self._config.api_key.pop("BearerToken", None)
        if token:
            self._config.api_key["BearerToken"] = token
            self._config.api_key_prefix["BearerToken"] = "Bearer"

    def set_cert(self, cert: tuple[str, str]) -> None:
        from kubernetes.client import rest

        self._config.cert_file, self._config.key_file = cert
        # The connection pool holds the certificate: a new one takes the new pair.
        self._api.rest_client.close()
        self._api.rest_client = rest.RESTClientObject(self._config)

    def send(self, method: str, path: str, *, params: Mapping[str, str],
             headers: dict[str, str], body: Any, timeout: float) -> _Reply:
        import urllib3
        from kubernetes.client.exceptions import ApiException

        _, url, headers, data, _ = self._api.param_serialize(
            method, path, query_params=list(params.items()), header_params=headers, body=body,
            auth_settings=["BearerToken"])
        try:
            # (connect, read) as requests' single timeout was: each phase, not the total.
            resp = self._api.call_api(method, url, header_params=headers, body=data,
                                      _request_timeout=(timeout, timeout))
            content = resp.read() or b""  # type: ignore[no-untyped-call]
        except ApiException as exc:  # the client's wrapping of urllib3's SSLError
            raise _TlsFailure(str(exc.reason)) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise _Unreachable(exc) from exc
        return _Reply(resp.status, resp.reason, resp.headers, content)

    def close(self) -> None:
        self._api.close()  # type: ignore[no-untyped-call]


class _RequestsTransport:
    """A requests session: the thin path of the blue-green swap (see KubeClient)."""

    def __init__(self, access: ClusterAccess, user_agent: str, cert: tuple[str, str] | None
                 ) -> None:
        import requests

        self._server = access.server
        self._session = requests.Session()
        self._session.headers.update({"User-Agent": user_agent})
        self._session.trust_env = False
        if access.proxy_url:
            self._session.proxies = {"https": access.proxy_url, "http": access.proxy_url}
        self._ca_tmp: str | None = None
        if not access.verify:
            self._session.verify = False
        elif access.ca_data:
            handle, self._ca_tmp = tempfile.mkstemp(prefix="tai-kube-ca-")
            with os.fdopen(handle, "wb") as out:
                out.write(access.ca_data)
            self._session.verify = self._ca_tmp
        elif access.ca_file:
            self._session.verify = access.ca_file
        if cert:
            self._session.cert = cert
        self._token: str | None = None

    def set_token(self, token: str | None) -> None:
        self._token = token

    def set_cert(self, cert: tuple[str, str]) -> None:
        self._session.cert = cert

    def send(self, method: str, path: str, *, params: Mapping[str, str],
             headers: dict[str, str], body: Any, timeout: float) -> _Reply:
        import requests

        if self._token:
            headers = {**headers, "Authorization": f"Bearer {self._token}"}
        data = None if body is None else json.dumps(body)
        url = self._server + path
        try:
            resp = self._session.request(method, url, data=data, headers=headers,
                                         params=dict(params), timeout=timeout)
        except requests.exceptions.SSLError as exc:
            raise _TlsFailure(str(exc)) from exc
        except requests.exceptions.RequestException as exc:
            raise _Unreachable(exc) from exc
        return _Reply(resp.status_code, resp.reason, resp.headers, resp.content)

    def close(self) -> None:
        self._session.close()
        if self._ca_tmp:
            Path(self._ca_tmp).unlink(missing_ok=True)


class KubeClient:
    """JSON over the Kubernetes REST API, sent through the kubernetes client's ApiClient.

    The answers are classified here (Status messages, retries), whichever transport sends the
    requests. ``thin=True`` sends them with a requests session instead: the blue-green swap
    module does, because its switch-back after a failed post-swap check is a new module process
    on the rollback's clock (docs/bluegreen.md: goal worst < 2 s). Measured with
    ``benchmarks/bluegreen_bench.py --rollback-runs 2 --only-rollback`` on the shared 2-core
    machine, same load, one after the other: with the kubernetes client median 3.21 s, worst
    4.39 s; with requests median 1.44 s, worst 1.81 s. The import of ``kubernetes.client``
    (0.5-1.7 s, see _KubernetesTransport) is the difference. The other users (tai_prune,
    tai_analysis_gate's lease) use the kubernetes client.
    """

    def __init__(self, access: ClusterAccess, *, timeout: float = 30.0,
                 user_agent: str = "tai-deploy/blue-green", thin: bool = False) -> None:
        self.access = access
        self.timeout = timeout
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._exec_expiry: float | None = None
        a = access
        cert = a.client_cert_file or (self._materialise("client.crt", a.client_cert_data)
                                      if a.client_cert_data else None)
        key = a.client_key_file or (self._materialise("client.key", a.client_key_data)
                                    if a.client_key_data else None)
        pair = (cert, key) if cert and key else None
        self._transport: _KubernetesTransport | _RequestsTransport = (
            _RequestsTransport(access, user_agent, pair) if thin
            else _KubernetesTransport(access, user_agent, pair))
        token = access.token
        if access.token_file and not token:
            token = self._read_token_file(access.token_file)
        self._set_token(token)

    # -- setup ---------------------------------------------------------------------------

    def _materialise(self, name: str, data: bytes) -> str:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="tai-kube-")
        path = Path(self._tmp.name) / name
        path.write_bytes(data)
        path.chmod(0o600)
        return str(path)

    def _set_token(self, token: str | None) -> None:
        self._token = token
        self._transport.set_token(token)

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
        self._set_token(status.get("token") or None)
        if status.get("clientCertificateData") and status.get("clientKeyData"):
            self._transport.set_cert((
                self._materialise("exec.crt", str(status["clientCertificateData"]).encode()),
                self._materialise("exec.key", str(status["clientKeyData"]).encode())))
        expiry = status.get("expirationTimestamp")
        self._exec_expiry = _parse_time(expiry) if isinstance(expiry, str) else None

    def close(self) -> None:
        self._transport.close()
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
        attempt = 0
        refreshed = False
        # Not poll(): each answer says whether and when to send again (Retry-After; a 401 once,
        # at once, with fresh credentials; a GET that could not connect), each with its budget.
        while True:
            attempt += 1
            headers = {"Accept": "application/json"}
            if body is not None:
                headers["Content-Type"] = content_type
            try:
                resp = self._transport.send(method, path, params=params or {},
                                            headers=headers, body=body, timeout=self.timeout)
            except _TlsFailure as exc:
                raise KubeError(f"{method} {path}: TLS failure talking to "
                                f"{self.access.server}: {exc}") from exc
            except _Unreachable as exc:
                if method == "GET" and attempt < 3:
                    time.sleep(0.2 * attempt)
                    continue
                raise KubeError(f"{method} {path}: cannot reach the API server "
                                f"{self.access.server}: {exc}") from exc
            if resp.status in _RETRY_STATUSES and attempt < 4:
                try:
                    pause = float(resp.headers.get("Retry-After", "0.5"))
                except ValueError:
                    pause = 0.5
                time.sleep(min(max(pause, 0.1), _MAX_RETRY_AFTER))
                continue
            if resp.status == 401 and self.access.exec_config is not None and not refreshed:
                refreshed = True
                self._exec_credentials(force=True)
                continue
            if resp.status >= 400:
                reason, message, status_body = _status_message(resp.status, resp.reason,
                                                               resp.content)
                raise ApiError(resp.status, reason, message, method=method, path=path,
                               body=status_body)
            try:
                result = json.loads(resp.content) if resp.content else {}
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
        tries = 0
        refused: list[ApiError] = []  # what this patch got; only its 409 is tried again

        def once() -> tuple[dict[str, Any], bool, int]:
            nonlocal tries
            tries += 1
            current = self.get(path)
            patch = change(current)
            if patch is None:
                return current, False, tries - 1
            meta = dict(patch.get("metadata") or {})
            meta["resourceVersion"] = current["metadata"]["resourceVersion"]
            try:
                return self.patch(path, {**patch, "metadata": meta}), True, tries - 1
            except ApiError as exc:
                refused[:] = [exc]
                raise

        def conflict(exc: BaseException) -> bool:
            return isinstance(exc, ApiError) and exc.conflict and exc in refused

        return poll(once, lambda _: True, timeout=math.inf, attempts=attempts, interval=0.1,
                    backoff=2, max_interval=1.0, retry_on=(ApiError,), retry_if=conflict)


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
