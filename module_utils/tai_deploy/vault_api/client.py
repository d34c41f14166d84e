"""The transport: one Vault address, its TLS settings and a token, on hvac's adapter.

hvac (the library community.hashi_vault uses) builds the requests: URL joining, the
X-Vault-Request and X-Vault-Token headers, the session with its CA bundle and timeout. Its
``hvac.Client`` methods are not used: they raise hvac exceptions whose text carries the URL and,
for a non-JSON answer, the response body, and they hide the status code the ``ensure_*``
functions branch on (404 missing, 405 disabled). So every request goes through
``RawAdapter.request(raise_exception=False)`` and the answer is classified here, where the
messages stay one secret-free sentence (refusal()).

Import cost in a module process (python -X importtime, on top of ansible.module_utils.basic and
requests, which this client used before hvac): hvac adds 11-70 ms, typically about 28 ms, on
the shared 2-core machine at load 4.5, and 66-127 ms at load 14 (hvac/__init__ imports hvac.v1
and all of its API classes; hvac.adapters cannot be imported without them). Only the
apply-time vault_* modules pay it; no plan step imports this package.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import requests
from hvac.adapters import RawAdapter

from ..poll import poll


class VaultError(RuntimeError):
    """A Vault operation failed; the message is one sentence for the operator, without secrets."""


# Transient answers of an HA node that does not (yet) know its active node.
_LEADERSHIP_ERRORS = ("active cluster node not found", "local node not active")
LEADERSHIP_WAIT = 10.0
# OpenBao 2.7+ (Integrated Storage) serves reads on standby nodes, which apply the active node's
# log a moment later: a mount or role just written through a standby may read back 404 (about
# one read in four on a three-node cluster, tests/cores/test_vault_ha.py). Every response
# carries the storage index in X-Vault-Index; a request that sends the index of the client's
# last write with X-Vault-Inconsistent: forward-active-node is forwarded to the active node
# whenever the standby has not applied it yet (openbao.org/docs/concepts/consistency, RFC
# "index headers"). Vault Enterprise uses the same two headers; Vault and OpenBao releases
# without them ignore them.
READ_YOUR_WRITES = {"X-Vault-Inconsistent": "forward-active-node"}
_READ_METHODS = frozenset({"GET", "LIST", "HEAD"})


class _LastWrite:
    """The storage index of the last write of a client and of its with_token() copies."""

    def __init__(self) -> None:
        self.index: str | None = None


class VaultClient:
    """A thin client for one Vault address. The token is kept out of ``repr`` and messages.

    It reads its own writes on an HA cluster: once it has written, every request carries the
    index of that write (READ_YOUR_WRITES), so a standby never answers from older state. Copies
    made by with_token() share the adapter's session (one connection pool) and the last write.
    """

    def __init__(self, addr: str, *, token: str | None = None, ca_cert: str | None = None,
                 timeout: float = 10.0, _adapter: RawAdapter | None = None,
                 _last_write: _LastWrite | None = None) -> None:
        if not re.match(r"^https?://[^/\s]+", addr):
            raise VaultError(f"Vault address {addr!r} is not an http:// or https:// URL")
        self.addr = addr.rstrip("/")
        self.timeout = timeout
        self._ca_cert = ca_cert
        if _adapter is None:
            _adapter = RawAdapter(base_uri=self.addr, token=token, verify=ca_cert or True,
                                  timeout=timeout)
        else:
            # from_adapter keeps the session (and so its CA bundle and connection pool).
            _adapter = RawAdapter.from_adapter(_adapter)
            _adapter.token = token
        self._adapter = _adapter
        self._last_write = _last_write or _LastWrite()

    def __repr__(self) -> str:
        return f"VaultClient({self.addr!r}, token={'set' if self.has_token else 'none'})"

    def with_token(self, token: str | None) -> VaultClient:
        """The same address and TLS settings with another token (or none)."""
        return VaultClient(self.addr, token=token, ca_cert=self._ca_cert, timeout=self.timeout,
                           _adapter=self._adapter, _last_write=self._last_write)

    @property
    def has_token(self) -> bool:
        return bool(self._token)

    @property
    def _token(self) -> str | None:
        token: str | None = self._adapter.token
        return token

    def call(self, method: str, path: str, body: Mapping[str, Any] | None = None
             ) -> tuple[int, dict[str, Any]]:
        """Send one request; return (status, JSON body or {}). Transport problems raise.

        While an HA cluster elects or re-learns its leader (right after an unseal or a pod
        restart) a node answers HTTP 500 "active cluster node not found"; such answers are
        retried for up to LEADERSHIP_WAIT seconds before they are returned.
        """
        return poll(lambda: self._call_once(method, path, body),
                    lambda answer: not _leader_unknown(*answer), timeout=LEADERSHIP_WAIT,
                    interval=0.2, on_timeout=lambda last: last)

    def _call_once(self, method: str, path: str, body: Mapping[str, Any] | None
                   ) -> tuple[int, dict[str, Any]]:
        # The adapter adds X-Vault-Request and X-Vault-Token; the index headers are ours.
        headers: dict[str, str] = {}
        if self._last_write.index:
            headers.update(READ_YOUR_WRITES)
            headers["X-Vault-Index"] = self._last_write.index
        try:
            resp: requests.Response = self._adapter.request(
                method, f"/v1/{path.lstrip('/')}", headers=headers, raise_exception=False,
                json=dict(body) if body is not None else None)
        except requests.exceptions.SSLError as exc:
            raise VaultError(
                f"TLS verification of {self.addr} failed ({_first_line(exc)}); check the CA "
                "certificate given to the role") from None
        except requests.exceptions.ConnectionError as exc:
            raise VaultError(f"cannot reach Vault at {self.addr}: {_first_line(exc)}") from None
        except requests.exceptions.Timeout:
            raise VaultError(
                f"Vault at {self.addr} did not answer {method} /v1/{path} within "
                f"{self.timeout:g} s") from None
        except requests.exceptions.RequestException as exc:
            raise VaultError(f"request to Vault at {self.addr} failed: {_first_line(exc)}"
                             ) from None
        index = resp.headers.get("X-Vault-Index")
        if index and method.upper() not in _READ_METHODS and resp.status_code < 400:
            self._last_write.index = index
        if not resp.content:
            return resp.status_code, {}
        try:
            data = resp.json()
        except ValueError:
            return resp.status_code, {}
        return resp.status_code, data if isinstance(data, dict) else {}

    def request(self, method: str, path: str, body: Mapping[str, Any] | None = None, *,
                missing_ok: bool = False) -> dict[str, Any] | None:
        """Like call() but any status other than 2xx raises; 404 gives None when missing_ok."""
        status, data = self.call(method, path, body)
        if 200 <= status < 300:
            return data
        if status == 404 and missing_ok:
            return None
        raise VaultError(refusal(self.addr, method, path, status, data))


def _leader_unknown(status: int, data: Mapping[str, Any]) -> bool:
    errors = " ".join(map(str, data.get("errors") or []))
    return status == 500 and any(m in errors for m in _LEADERSHIP_ERRORS)


def refusal(addr: str, method: str, path: str, status: int, data: Mapping[str, Any]) -> str:
    """One sentence for an HTTP error: what was refused and Vault's own reason."""
    errors = data.get("errors") if isinstance(data, Mapping) else None
    reason = "; ".join(str(e) for e in errors) if isinstance(errors, list) and errors else ""
    hint = {403: "permission denied", 405: "endpoint disabled or not supported",
            503: "Vault is sealed or in standby"}.get(status, "")
    why = reason or hint or "no reason given"
    return f"Vault at {addr} refused {method} /v1/{path}: HTTP {status} ({why})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def response_data(body: Mapping[str, Any] | None) -> dict[str, Any]:
    """The payload of a Vault response (newer servers wrap it in ``data``)."""
    if not body:
        return {}
    inner = body.get("data")
    return dict(inner) if isinstance(inner, Mapping) else dict(body)

