"""A small JSON/REST client for Google Cloud APIs (GKE, Cloud DNS) over google-auth.

Google's own clients take an ``api_endpoint`` override; so does this one, which is how the
tests point the GKE and Cloud DNS modules at a loopback double of the REST API. Credentials:

- ``application``: Application Default Credentials (``google.auth.default()``): the
  ``GOOGLE_APPLICATION_CREDENTIALS`` key file, ``gcloud auth application-default login``, or
  the metadata server of the machine the play runs on.
- ``serviceaccount``: a service account key file.
- ``none``: anonymous credentials, accepted only when the endpoint is a loopback address
  (127.0.0.0/8, ::1, localhost): a test double, never Google.

Errors become :class:`GcpApiError`, whose :meth:`GcpApiError.sentence` names the action, the
resource and the API's own message in one sentence. 429 and 5xx answers (and connection
errors) are retried with a bounded exponential back-off; every other status fails at once.
"""

from __future__ import annotations

import ipaddress
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from .poll import poll

AUTH_KINDS = ("application", "serviceaccount", "none")
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})

# What usually lies behind a status, said once in the error sentence.
_HINTS = {
    400: "the request was refused as invalid",
    401: "the credentials were not accepted",
    403: "the credentials lack an IAM permission or the API is not enabled in the project",
    404: "it does not exist",
    409: "it already exists or another operation on it is in progress",
    412: "it changed since it was read",
    429: "the API's rate limit or quota was exceeded",
}


class GcpConfigError(ValueError):
    """Bad module input or unusable credentials; the message is one sentence for the user."""


class GcpApiError(Exception):
    """A request the API refused (or that could not reach it), with what was being done."""

    def __init__(self, action: str, status: int, message: str, api_status: str = "", *,
                 attempts: int = 1, service: str = "the API", reason: str = "",
                 metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.action = action
        self.status = status
        self.message = message.strip().rstrip(".")
        self.api_status = api_status
        self.attempts = attempts
        self.service = service
        # google.rpc.ErrorInfo of the answer: reason (SERVICE_DISABLED, ...) and its metadata
        self.reason = reason
        self.metadata = dict(metadata or {})

    @property
    def disabled_service(self) -> str | None:
        """The API (e.g. compute.googleapis.com) the project has not enabled, if that is why."""
        if self.status == 403 and self.reason == "SERVICE_DISABLED":
            return self.metadata.get("service") or "the API"
        return None

    def sentence(self) -> str:
        disabled = self.disabled_service
        if disabled:
            return (f"Cannot {self.action}: the service {disabled} is not enabled in the "
                    f"project; the project phase (playbooks/project.yml, part of site.yml) "
                    f"enables it, or run `gcloud services enable {disabled}` and retry.")
        if self.status == 0:
            return (f"Cannot {self.action}: {self.service} could not be reached after "
                    f"{self.attempts} attempt(s): {self.message}.")
        code = f"HTTP {self.status}" + (f" {self.api_status}" if self.api_status else "")
        tries = f" after {self.attempts} attempts" if self.attempts > 1 else ""
        hint = _HINTS.get(self.status, "the service failed" if self.status >= 500 else "")
        hint = f" ({hint})" if hint else ""
        return (f"Cannot {self.action}: {self.service} answered {code}{tries}{hint}: "
                f"{self.message}.")

    def __str__(self) -> str:
        return self.sentence()


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential back-off for 429, 5xx and connection errors: at most ``attempts``
    calls, the pause after the n-th failure min(max_delay, base_delay * 2 ** (n - 1))."""

    attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 32.0


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_endpoint(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise GcpConfigError(f"api_endpoint {url!r} is not an http(s) URL such as "
                             "https://container.googleapis.com.")
    if parts.scheme == "http" and not is_loopback(url):
        raise GcpConfigError(f"api_endpoint {url!r} uses plain http, which is allowed only for "
                             "a loopback test double; use https.")
    return url.rstrip("/")


def make_session(auth_kind: str, api_endpoint: str, scopes: Sequence[str] = (),
                 service_account_file: str | None = None) -> Any:
    """An authorised ``requests`` session for the endpoint (google-auth's AuthorizedSession)."""
    try:
        from google.auth.transport.requests import AuthorizedSession
    except ImportError as exc:  # pragma: no cover - the project's venv has google-auth
        raise GcpConfigError("The Python library google-auth (with requests) is required on "
                             "the controller; install the project's locked dependencies.") from exc
    scope_list = list(scopes) or [CLOUD_PLATFORM_SCOPE]
    if auth_kind == "none":
        if not is_loopback(api_endpoint):
            raise GcpConfigError(f"auth_kind none (anonymous) is allowed only with a loopback "
                                 f"api_endpoint such as a test double, not {api_endpoint}.")
        from google.auth.credentials import AnonymousCredentials
        session = AuthorizedSession(AnonymousCredentials())  # type: ignore[no-untyped-call]
        session.trust_env = False  # a proxy from the environment must not see loopback calls
        return session
    if auth_kind == "serviceaccount":
        if not service_account_file:
            raise GcpConfigError("auth_kind serviceaccount needs service_account_file, the path "
                                 "of a service account key (JSON).")
        from google.oauth2 import service_account
        try:
            creds = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                service_account_file, scopes=scope_list)
        except (OSError, ValueError) as exc:
            raise GcpConfigError(f"Cannot load the service account key {service_account_file}: "
                                 f"{exc}.") from exc
        return AuthorizedSession(creds)  # type: ignore[no-untyped-call]
    if auth_kind == "application":
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError
        try:
            creds, _ = google.auth.default(scopes=scope_list)
        except DefaultCredentialsError as exc:
            raise GcpConfigError("No Application Default Credentials were found: run `gcloud "
                                 "auth application-default login`, set "
                                 "GOOGLE_APPLICATION_CREDENTIALS, or run on a machine with a "
                                 "service account.") from exc
        return AuthorizedSession(creds)  # type: ignore[no-untyped-call]
    raise GcpConfigError(f"auth_kind must be one of {', '.join(AUTH_KINDS)}, got {auth_kind!r}.")


def path_segment(value: str) -> str:
    """One URL path segment (record names contain dots, which stay; slashes are escaped)."""
    return quote(value, safe=".-_~@")


class RestClient:
    """JSON calls against one API endpoint, with retries; mutating calls are never hidden."""

    def __init__(self, session: Any, endpoint: str, *, service: str,
                 retry: RetryPolicy | None = None, timeout: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.session = session
        self.endpoint = check_endpoint(endpoint)
        self.service = service
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.sleep = sleep
        self.calls: list[tuple[str, str]] = []

    def call(self, method: str, path: str, body: Mapping[str, Any] | None = None, *,
             action: str) -> dict[str, Any]:
        """Send one request; return the decoded JSON body (``{}`` when empty).

        ``action`` completes "Cannot ..." in error sentences, e.g. "create cluster tai-cluster
        in europe-west1 (project p)".
        """
        import requests

        url = self.endpoint + path
        attempt = 0

        def send() -> Any:
            nonlocal attempt
            attempt += 1
            self.calls.append((method, path))
            return self.session.request(method, url, json=body, timeout=self.timeout)

        # RetryPolicy's pauses: base_delay doubling after each failure, at most max_delay; the
        # last answer (or connection error) is the one reported.
        try:
            resp = poll(send, lambda r: r.status_code not in RETRYABLE_STATUSES,
                        timeout=math.inf, attempts=max(1, self.retry.attempts),
                        interval=min(self.retry.base_delay, self.retry.max_delay), backoff=2,
                        max_interval=self.retry.max_delay,
                        retry_on=(requests.RequestException,), on_timeout=lambda last: last,
                        sleep=self.sleep)
        except requests.RequestException as exc:
            raise GcpApiError(action, 0, str(exc), attempts=attempt,
                              service=self.service) from exc
        if resp.status_code < 300:
            return _decode(resp.text)
        status, message = _error_of(resp.status_code, resp.text)
        reason, metadata = _error_info(resp.text)
        raise GcpApiError(action, resp.status_code, message, status, attempts=attempt,
                          service=self.service, reason=reason, metadata=metadata)


def _decode(text: str) -> dict[str, Any]:
    if not text.strip():
        return {}
    data = json.loads(text)
    return data if isinstance(data, dict) else {"items": data}


def _error_of(code: int, text: str) -> tuple[str, str]:
    """(API status such as PERMISSION_DENIED, message) from Google's error JSON."""
    try:
        err = json.loads(text).get("error", {})
    except (ValueError, AttributeError):
        return "", (text.strip()[:300] or f"HTTP {code}")
    if not isinstance(err, dict):
        return "", str(err)[:300]
    status = str(err.get("status") or "")
    if not status:
        reasons = [e.get("reason") for e in err.get("errors", []) if isinstance(e, dict)]
        status = str(reasons[0]) if reasons and reasons[0] else ""
    return status, str(err.get("message") or f"HTTP {code}")


def _error_info(text: str) -> tuple[str, dict[str, str]]:
    """(reason, metadata) of the google.rpc.ErrorInfo detail of an error answer, if any."""
    try:
        details = json.loads(text).get("error", {}).get("details") or []
    except (ValueError, AttributeError):
        return "", {}
    for detail in details if isinstance(details, list) else []:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("ErrorInfo"):
            meta = detail.get("metadata") or {}
            return str(detail.get("reason") or ""), {str(k): str(v) for k, v in meta.items()}
    return "", {}
