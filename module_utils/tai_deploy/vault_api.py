"""Speak the Vault HTTP API: seal status, init, unseal, root-token generation, tokens, config.

Plain, typed and free of Ansible so that tests drive it against a real server (OpenBao is
API-compatible). Two rules hold everywhere:

* Secrets (unseal or recovery shards, tokens) travel only in request bodies and headers, never in
  URLs, and no error message built here quotes a request body, a response body or a header. What
  Vault answers in ``errors`` is quoted; Vault does not echo submitted keys or tokens there.
* The ``ensure_*`` functions read first and write only what differs, and report what they did
  (created, updated, unchanged), so that a caller's ``changed`` is the truth.
"""

from __future__ import annotations

import base64
import contextlib
import re
import secrets
import string
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

CREATED, UPDATED, UNCHANGED = "created", "updated", "unchanged"

# sys/health answers with these codes for an initialised, unsealed node (active, standby,
# DR secondary, performance standby); see the Vault API reference of sys/health.
_SERVING_HEALTH_CODES = frozenset({200, 429, 472, 473})


class VaultError(RuntimeError):
    """A Vault operation failed; the message is one sentence for the operator, without secrets."""


@dataclass(frozen=True)
class SealStatus:
    """The public part of ``GET /v1/sys/seal-status``."""

    initialized: bool
    sealed: bool
    threshold: int
    shares: int
    progress: int
    seal_type: str
    recovery_seal: bool
    version: str

    @property
    def key_type(self) -> str:
        """``recovery`` for auto-unseal (KMS, transit, static) seals, ``unseal`` for Shamir."""
        return "recovery" if self.recovery_seal else "unseal"

    @classmethod
    def from_response(cls, data: Mapping[str, Any]) -> SealStatus:
        return cls(
            initialized=bool(data.get("initialized")),
            sealed=bool(data.get("sealed")),
            threshold=int(data.get("t") or 0),
            shares=int(data.get("n") or 0),
            progress=int(data.get("progress") or 0),
            seal_type=str(data.get("type") or "shamir"),
            recovery_seal=bool(data.get("recovery_seal")),
            version=str(data.get("version") or ""),
        )


@dataclass(frozen=True)
class Change:
    """What an ensure function found and did. ``before``/``after`` never hold secrets."""

    kind: str
    name: str
    action: str
    before: Any = None
    after: Any = None

    @property
    def changed(self) -> bool:
        return self.action != UNCHANGED


# Transient answers of an HA node that does not (yet) know its active node.
_LEADERSHIP_ERRORS = ("active cluster node not found", "local node not active")
LEADERSHIP_WAIT = 10.0
# A new KV version 2 mount first runs its "upgrade" and answers HTTP 400 "Upgrading from
# non-versioned to versioned data" to every request until it is done (usually milliseconds,
# seconds on a busy server); a write sent in that window is refused.
KV_UPGRADE_WAIT = 30.0
# OpenBao 2.7+ (Integrated Storage) serves reads on standby nodes, which apply the active node's log
# a moment later: a mount or role just written through a standby may read back 404 (about one read
# in four on a three-node cluster, tests/cores/test_vault_ha.py). Every response carries the storage
# index in X-Vault-Index; a request that sends the index of the client's last write with
# X-Vault-Inconsistent: forward-active-node is forwarded to the active node whenever the standby has
# not applied it yet (openbao.org/docs/concepts/consistency, RFC "index headers"). Vault Enterprise
# uses the same two headers; Vault and OpenBao releases without them ignore them.
READ_YOUR_WRITES = {"X-Vault-Inconsistent": "forward-active-node"}
_READ_METHODS = frozenset({"GET", "LIST", "HEAD"})


class _LastWrite:
    """The storage index of the last write of a client and of its with_token() copies."""

    def __init__(self) -> None:
        self.index: str | None = None


class VaultClient:
    """A thin client for one Vault address. The token is kept out of ``repr`` and messages.

    It reads its own writes on an HA cluster: once it has written, every request carries the
    index of that write (READ_YOUR_WRITES), so a standby never answers from older state.
    """

    def __init__(self, addr: str, *, token: str | None = None, ca_cert: str | None = None,
                 timeout: float = 10.0, session: requests.Session | None = None,
                 _last_write: _LastWrite | None = None) -> None:
        if not re.match(r"^https?://[^/\s]+", addr):
            raise VaultError(f"Vault address {addr!r} is not an http:// or https:// URL")
        self.addr = addr.rstrip("/")
        self.timeout = timeout
        self._ca_cert = ca_cert
        self._token = token
        self._session = session or requests.Session()
        self._last_write = _last_write or _LastWrite()

    def __repr__(self) -> str:
        return f"VaultClient({self.addr!r}, token={'set' if self._token else 'none'})"

    def with_token(self, token: str | None) -> VaultClient:
        """The same address and TLS settings with another token (or none)."""
        return VaultClient(self.addr, token=token, ca_cert=self._ca_cert, timeout=self.timeout,
                           session=self._session, _last_write=self._last_write)

    @property
    def has_token(self) -> bool:
        return bool(self._token)

    def call(self, method: str, path: str, body: Mapping[str, Any] | None = None
             ) -> tuple[int, dict[str, Any]]:
        """Send one request; return (status, JSON body or {}). Transport problems raise.

        While an HA cluster elects or re-learns its leader (right after an unseal or a pod
        restart) a node answers HTTP 500 "active cluster node not found"; such answers are
        retried for up to LEADERSHIP_WAIT seconds before they are returned.
        """
        deadline = time.monotonic() + LEADERSHIP_WAIT
        while True:
            status, data = self._call_once(method, path, body)
            if status != 500 or time.monotonic() >= deadline or not any(
                    m in " ".join(map(str, data.get("errors") or [])) for m in _LEADERSHIP_ERRORS):
                return status, data
            time.sleep(0.2)

    def _call_once(self, method: str, path: str, body: Mapping[str, Any] | None
                   ) -> tuple[int, dict[str, Any]]:
        url = f"{self.addr}/v1/{path.lstrip('/')}"
        headers = {"X-Vault-Request": "true"}
        if self._token:
            headers["X-Vault-Token"] = self._token
        if self._last_write.index:
            headers.update(READ_YOUR_WRITES)
            headers["X-Vault-Index"] = self._last_write.index
        try:
            resp = self._session.request(
                method, url, json=dict(body) if body is not None else None, headers=headers,
                timeout=self.timeout, verify=self._ca_cert or True)
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


def _data(body: Mapping[str, Any] | None) -> dict[str, Any]:
    """The payload of a Vault response (newer servers wrap it in ``data``)."""
    if not body:
        return {}
    inner = body.get("data")
    return dict(inner) if isinstance(inner, Mapping) else dict(body)


# --- seal, init, unseal ---------------------------------------------------------------------

def seal_status(client: VaultClient) -> SealStatus:
    return SealStatus.from_response(client.request("GET", "sys/seal-status") or {})


def health_code(client: VaultClient) -> int:
    """The status code of sys/health (200 active, 429 standby, 501 uninitialised, 503 sealed)."""
    status, _ = client.call("GET", "sys/health")
    return status


def wait_for(check: Callable[[], bool], timeout: float, interval: float = 0.25) -> bool:
    """Call check until it returns True or timeout seconds have passed; True when it did."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def initialize(client: VaultClient, shares: int, threshold: int, *, recovery: bool,
               pgp_keys: Sequence[str] = ()) -> tuple[list[str], str]:
    """PUT sys/init. Returns (shards as base64, root token). The caller must persist them first.

    With an auto-unseal seal (KMS) Vault creates recovery shards instead of unseal shards. With
    ``pgp_keys`` (base64 OpenPGP public keys, one per share) Vault encrypts shard i to key i
    (``pgp_keys``, ``recovery_pgp_keys``: the sys/init API reference) and the shards returned
    are those ciphertexts. The root token stays in the clear: the caller needs it once, to create
    the controller's identity, and revokes it.
    """
    if not 1 <= threshold <= shares:
        raise VaultError(f"key threshold {threshold} must be between 1 and the share count "
                         f"{shares}")
    if pgp_keys and len(pgp_keys) != shares:
        raise VaultError(f"{len(pgp_keys)} holder keys were given for {shares} shares; Vault "
                         "needs exactly one key per share")
    body: dict[str, Any] = (
        {"recovery_shares": shares, "recovery_threshold": threshold} if recovery
        else {"secret_shares": shares, "secret_threshold": threshold})
    if pgp_keys:
        body["recovery_pgp_keys" if recovery else "pgp_keys"] = list(pgp_keys)
    data = client.request("PUT", "sys/init", body) or {}
    keys = data.get("recovery_keys_base64" if recovery else "keys_base64") or []
    token = data.get("root_token") or ""
    if not keys or not token:
        raise VaultError(f"Vault at {client.addr} answered sys/init without shards or root token")
    return [str(k) for k in keys], str(token)


def reset_unseal(client: VaultClient) -> None:
    client.request("PUT", "sys/unseal", {"reset": True})


def submit_unseal_keys(client: VaultClient, keys: Sequence[str], threshold: int) -> SealStatus:
    """Submit distinct shards until the node reports unsealed or ``threshold`` were accepted.

    Any stale progress (a half-finished unseal by someone else) is reset first. When Vault
    rejects a shard, or the combined key, progress is reset again so the node is left exactly as
    it was, and a VaultError says so. A raft follower that is still joining reports ``sealed``
    with progress 0 after the last shard; callers wait for it (see wait_unsealed).
    """
    distinct = list(dict.fromkeys(keys))
    if len(distinct) < threshold:
        raise VaultError(f"{len(distinct)} distinct shards cannot reach the threshold of "
                         f"{threshold} on {client.addr}")
    status = seal_status(client)
    if not status.sealed:
        return status
    if status.progress:
        reset_unseal(client)
    for accepted, key in enumerate(distinct[:threshold], start=1):
        code, data = client.call("PUT", "sys/unseal", {"key": key})
        if code != 200:
            reason = refusal(client.addr, "PUT", "sys/unseal", code, data)
            _quiet_reset(client)
            raise VaultError(
                f"the stored shards do not unseal Vault at {client.addr} (shard {accepted} of "
                f"{threshold} refused: {reason.split(': ', 1)[-1]}); its unseal progress was "
                "reset and nothing else was changed")
        status = SealStatus.from_response(data)
        if not status.sealed:
            return status
    return status


def _quiet_reset(client: VaultClient) -> None:
    with contextlib.suppress(VaultError):
        reset_unseal(client)


def wait_unsealed(client: VaultClient, timeout: float) -> SealStatus:
    last: list[SealStatus] = []

    def unsealed() -> bool:
        last[:] = [seal_status(client)]
        return not last[0].sealed

    if not wait_for(unsealed, timeout):
        raise VaultError(f"Vault at {client.addr} was still sealed {timeout:g} s after the "
                         "threshold of shards was accepted")
    return last[0]


def wait_serving(client: VaultClient, timeout: float) -> None:
    """Wait until the node is initialised, unsealed and part of a cluster with a leader."""
    def serving() -> bool:
        code = health_code(client)
        if code == 200:
            return True
        if code not in _SERVING_HEALTH_CODES:
            return False
        # A standby: it must know the active node AND be able to forward to it (right after an
        # unseal it may know the address before forwarding works: HTTP 500 "active cluster
        # node not found"). generate-root/attempt is forwarded and needs no token.
        leader = client.request("GET", "sys/leader") or {}
        if leader.get("ha_enabled") and not leader.get("leader_address"):
            return False
        forwarded, _ = client.call("GET", "sys/generate-root/attempt")
        return forwarded in (200, 405)

    if not wait_for(serving, timeout):
        code = health_code(client)
        state = {501: "not initialised", 503: "sealed"}.get(code, f"health code {code}")
        raise VaultError(f"Vault at {client.addr} is not serving after {timeout:g} s ({state}); "
                         "initialise and unseal it first")


# --- tokens ---------------------------------------------------------------------------------

def token_is_valid(client: VaultClient) -> bool:
    """Whether the client's token is accepted (lookup-self); False for revoked or unknown."""
    if not client.has_token:
        return False
    code, data = client.call("GET", "auth/token/lookup-self")
    if code == 200:
        return True
    if code in (400, 401, 403):
        return False
    raise VaultError(refusal(client.addr, "GET", "auth/token/lookup-self", code, data))


def generate_root(client: VaultClient, keys: Sequence[str], threshold: int) -> str:
    """A new root token from a quorum of shards, with the one-time-password (OTP) flow.

    A stale attempt is cancelled first. When a shard is refused the attempt is cancelled, so a
    failure leaves no half-done generation behind.
    """
    code, data = client.call("GET", "sys/generate-root/attempt")
    if code == 405:
        raise VaultError(
            f"Vault at {client.addr} has disabled sys/generate-root (OpenBao 2.5.3 and later "
            "disable it unless the listener sets disable_unauthed_generate_root_endpoints = "
            "false); the role needs it to mint its short-lived token")
    if code != 200:
        raise VaultError(refusal(client.addr, "GET", "sys/generate-root/attempt", code, data))
    if data.get("started"):
        client.request("DELETE", "sys/generate-root/attempt")
    attempt = client.request("PUT", "sys/generate-root/attempt", {}) or {}
    nonce, otp = str(attempt.get("nonce") or ""), str(attempt.get("otp") or "")
    if not nonce or not otp:
        client.request("DELETE", "sys/generate-root/attempt")
        raise VaultError(f"Vault at {client.addr} did not return a nonce and one-time password "
                         "for root-token generation")
    distinct = list(dict.fromkeys(keys))
    encoded = ""
    for key in distinct[:max(threshold, 1)]:
        code, data = client.call("PUT", "sys/generate-root/update", {"key": key, "nonce": nonce})
        if code != 200:
            reason = refusal(client.addr, "PUT", "sys/generate-root/update", code, data)
            _quiet_cancel(client)
            raise VaultError(
                f"the stored shards do not authorise a token on {client.addr} "
                f"({reason.split(': ', 1)[-1]}); the attempt was cancelled and nothing was "
                "changed")
        if data.get("complete"):
            encoded = str(data.get("encoded_token") or data.get("encoded_root_token") or "")
            break
    if not encoded:
        _quiet_cancel(client)
        raise VaultError(f"{len(distinct)} stored shards did not complete root-token generation "
                         f"on {client.addr}; the attempt was cancelled")
    return decode_otp_token(encoded, otp)


def _quiet_cancel(client: VaultClient) -> None:
    with contextlib.suppress(VaultError):
        client.request("DELETE", "sys/generate-root/attempt")


def decode_otp_token(encoded: str, otp: str) -> str:
    """Undo the OTP encoding of generate-root: base64 (unpadded) XOR the one-time password."""
    try:
        raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except ValueError:
        raise VaultError("Vault returned an encoded token that is not base64") from None
    pad = otp.encode()
    if len(raw) != len(pad):
        raise VaultError("the encoded token and the one-time password differ in length")
    return bytes(a ^ b for a, b in zip(raw, pad, strict=True)).decode()


def create_orphan_token(client: VaultClient, *, policies: Sequence[str], ttl: str,
                        display_name: str) -> str:
    """An orphan, non-renewable token that expires after ttl even if nobody revokes it."""
    data = client.request("POST", "auth/token/create-orphan", {
        "policies": list(policies), "ttl": ttl, "explicit_max_ttl": ttl, "renewable": False,
        "no_default_policy": True, "display_name": display_name}) or {}
    token = (data.get("auth") or {}).get("client_token")
    if not token:
        raise VaultError(f"Vault at {client.addr} created no token")
    return str(token)


def revoke_self(client: VaultClient) -> None:
    client.request("PUT", "auth/token/revoke-self")


# --- idempotent configuration ---------------------------------------------------------------

def _mount_key(path: str) -> str:
    clean = path.strip().strip("/")
    if not clean or " " in clean:
        raise VaultError(f"mount path {path!r} is not valid")
    return clean + "/"


def _str_options(options: Mapping[str, Any] | None) -> dict[str, str]:
    return {str(k): str(v).lower() if isinstance(v, bool) else str(v)
            for k, v in (options or {}).items()}


def ensure_auth_method(client: VaultClient, path: str, method_type: str, *,
                       description: str | None = None, check: bool = False) -> Change:
    """Enable an auth method at path; tune its description when one is given and differs."""
    key = _mount_key(path)
    mounts = _data(client.request("GET", "sys/auth"))
    current = mounts.get(key)
    wanted: dict[str, Any] = {"type": method_type}
    if description is not None:
        wanted["description"] = description
    if current is None:
        if not check:
            client.request("POST", f"sys/auth/{key[:-1]}", wanted)
        return Change("auth", key, CREATED, None, wanted)
    before = {"type": current.get("type")}
    if description is not None:
        before["description"] = current.get("description") or ""
    if before["type"] != method_type:
        raise VaultError(f"auth path {key} on {client.addr} holds a {before['type']} method, not "
                         f"{method_type}; refusing to replace it")
    if before == wanted:
        return Change("auth", key, UNCHANGED, before, wanted)
    if not check:
        client.request("POST", f"sys/auth/{key[:-1]}/tune", {"description": description})
    return Change("auth", key, UPDATED, before, wanted)


def ensure_secrets_engine(client: VaultClient, path: str, engine_type: str, *,
                          options: Mapping[str, Any] | None = None,
                          description: str | None = None, check: bool = False) -> Change:
    """Mount a secrets engine at path; tune the given description/options that differ.

    Only what is given is compared (no description given: any description is fine). Changing
    a KV mount's version is refused: upgrading v1 to v2 rewrites all data and is a deliberate
    operation, not something a converge run should do.
    """
    key = _mount_key(path)
    mounts = _data(client.request("GET", "sys/mounts"))
    current = mounts.get(key)
    wanted_opts = _str_options(options)
    wanted: dict[str, Any] = {"type": engine_type, "options": wanted_opts}
    if description is not None:
        wanted["description"] = description
    if current is None:
        if not check:
            client.request("POST", f"sys/mounts/{key[:-1]}", wanted)
            if engine_type == "kv" and wanted_opts.get("version") == "2":
                wait_kv_ready(client, key[:-1])
        return Change("secrets_engine", key, CREATED, None, wanted)
    cur_opts = _str_options(current.get("options"))
    before: dict[str, Any] = {"type": current.get("type"),
                              "options": {k: cur_opts.get(k) for k in wanted_opts}}
    if description is not None:
        before["description"] = current.get("description") or ""
    if before["type"] != engine_type:
        raise VaultError(f"mount {key} on {client.addr} is a {before['type']} engine, not "
                         f"{engine_type}; refusing to replace it")
    if (engine_type == "kv" and "version" in wanted_opts
            and cur_opts.get("version", "1") != wanted_opts["version"]):
        raise VaultError(f"mount {key} on {client.addr} is KV version "
                         f"{cur_opts.get('version', '1')}, not {wanted_opts['version']}; "
                         "upgrade it deliberately (it rewrites the data)")
    if before == wanted:
        return Change("secrets_engine", key, UNCHANGED, before, wanted)
    if not check:
        tune: dict[str, Any] = {"options": wanted_opts}
        if description is not None:
            tune["description"] = description
        client.request("POST", f"sys/mounts/{key[:-1]}/tune", tune)
    return Change("secrets_engine", key, UPDATED, before, wanted)


def wait_kv_ready(client: VaultClient, mount: str, timeout: float = KV_UPGRADE_WAIT) -> None:
    """Wait until a new KV version 2 mount has finished its upgrade and serves requests."""
    if not wait_for(lambda: client.call("GET", f"{mount}/config")[0] == 200, timeout, 0.1):
        raise VaultError(f"KV mount {mount}/ on {client.addr} was still upgrading to version 2 "
                         f"after {timeout:g} s; retry the run")


def _policy_text(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines()) + "\n"


def ensure_policy(client: VaultClient, name: str, policy: str, *, check: bool = False
                  ) -> Change:
    """Write an ACL policy when it is missing or its text differs (trailing spaces ignored)."""
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", name) or name in ("root",):
        raise VaultError(f"policy name {name!r} is not allowed")
    wanted = _policy_text(policy)
    current = client.request("GET", f"sys/policies/acl/{name}", missing_ok=True)
    before = None if current is None else _policy_text(str(_data(current).get("policy") or ""))
    if before == wanted:
        return Change("policy", name, UNCHANGED, before, wanted)
    if not check:
        client.request("PUT", f"sys/policies/acl/{name}", {"policy": wanted})
    return Change("policy", name, CREATED if before is None else UPDATED, before, wanted)


_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def duration_seconds(value: Any) -> int | None:
    """Vault durations ("1h", "90m", "30s", "1h30m", 3600, "3600") in seconds; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    match = _DURATION.match(text)
    if not text or not match:
        return None
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def _normalise(wanted: Any, current: Any) -> tuple[Any, Any]:
    """Bring a wanted value and Vault's stored value to a comparable form."""
    if isinstance(current, list):
        items = wanted if isinstance(wanted, list) else [
            s.strip() for s in str(wanted).split(",") if s.strip()]
        return sorted(str(i) for i in items), sorted(str(i) for i in current)
    if isinstance(current, bool) or isinstance(wanted, bool):
        return wanted, current
    if isinstance(current, int):
        seconds = duration_seconds(wanted)
        return (seconds if seconds is not None else wanted), current
    if isinstance(current, str) and isinstance(wanted, str):
        return wanted.strip(), current.strip()
    return wanted, current


def ensure_endpoint(client: VaultClient, path: str, data: Mapping[str, Any], *,
                    check: bool = False) -> Change:
    """Write a config object (for example auth/kubernetes/role/x) when a given field differs.

    Only the fields given are compared; lists compare as sets, durations in seconds. A field
    that Vault never returns (a write-only credential) cannot be compared and is refused, since
    writing it on every run would make ``changed`` a lie.
    """
    clean = path.strip().strip("/")
    if not clean or clean.startswith("sys/"):
        raise VaultError(f"endpoint path {path!r} is not a configuration path (use the "
                         "dedicated options for sys/)")
    current_body = client.request("GET", clean, missing_ok=True)
    wanted = dict(data)
    if current_body is None:
        if not check:
            client.request("POST", clean, wanted)
        return Change("endpoint", clean, CREATED, None, wanted)
    current = _data(current_body)
    unreadable = sorted(k for k in wanted if k not in current)
    if unreadable:
        raise VaultError(f"{clean} on {client.addr} does not return {', '.join(unreadable)}, "
                         "so the role cannot tell whether it differs; leave write-only fields "
                         "out of the configuration")
    before: dict[str, Any] = {}
    differs = False
    for key, value in wanted.items():
        want_n, cur_n = _normalise(value, current[key])
        before[key] = current[key]
        differs = differs or want_n != cur_n
    if not differs:
        return Change("endpoint", clean, UNCHANGED, before, wanted)
    if not check:
        client.request("POST", clean, wanted)
    return Change("endpoint", clean, UPDATED, before, wanted)


@dataclass(frozen=True)
class ControllerSpec:
    """The controller's own identity: an AppRole role on a mount of its own and one policy."""

    auth_path: str = "tai-deploy"
    role: str = "controller"
    policy: str = "tai-deploy-controller"
    token_ttl: str = "15m"
    secret_id_bound_cidrs: tuple[str, ...] = ()

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> ControllerSpec:
        data = data or {}
        unknown = sorted(set(data) - {"auth_path", "role", "policy", "token_ttl",
                                      "secret_id_bound_cidrs"})
        if unknown:
            raise VaultError(f"configuration section controller has unknown keys "
                             f"{', '.join(unknown)}")
        defaults = cls()
        spec = cls(auth_path=str(data.get("auth_path") or defaults.auth_path),
                   role=str(data.get("role") or defaults.role),
                   policy=str(data.get("policy") or defaults.policy),
                   token_ttl=str(data.get("token_ttl") or defaults.token_ttl),
                   secret_id_bound_cidrs=tuple(str(c) for c in
                                               data.get("secret_id_bound_cidrs") or ()))
        for name in (spec.auth_path, spec.role, spec.policy):
            if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", name):
                raise VaultError(f"controller name {name!r} is not a valid Vault path segment")
        return spec

    def role_body(self) -> dict[str, Any]:
        """auth/<auth_path>/role/<role>: tokens of the controller policy alone, short-lived,
        never renewed past token_ttl; secret ids that do not expire (the file keeps one)."""
        body: dict[str, Any] = {
            "token_policies": [self.policy], "token_no_default_policy": True,
            "token_ttl": self.token_ttl, "token_max_ttl": self.token_ttl,
            "token_type": "service", "secret_id_ttl": 0, "secret_id_num_uses": 0,
            "bind_secret_id": True}
        if self.secret_id_bound_cidrs:
            body["secret_id_bound_cidrs"] = list(self.secret_id_bound_cidrs)
        return body


@dataclass
class Configuration:
    """The desired state the role sends (configuration.json in the plan)."""

    auth_methods: list[dict[str, Any]] = field(default_factory=list)
    secrets_engines: list[dict[str, Any]] = field(default_factory=list)
    policies: list[dict[str, Any]] = field(default_factory=list)
    endpoints: list[dict[str, Any]] = field(default_factory=list)
    # {path, type, options}: enabled with the initial (or a break-glass) root token only.
    audit_devices: list[dict[str, Any]] = field(default_factory=list)
    # {mount, path, fields}: KV v2 secrets the agents read; the values come separately (secret).
    kv_secrets: list[dict[str, Any]] = field(default_factory=list)
    # {mount, path, field, length}: KV v2 secrets whose value Vault keeps and nobody gives (the
    # Redis ACL passwords): a missing one is generated at random, an existing one never touched.
    generated_secrets: list[dict[str, Any]] = field(default_factory=list)
    controller: ControllerSpec = field(default_factory=ControllerSpec)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Configuration:
        known = {"auth_methods", "secrets_engines", "policies", "endpoints", "audit_devices",
                 "kv_secrets", "generated_secrets", "controller"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise VaultError(f"configuration has unknown sections {', '.join(unknown)} "
                             f"(known: {', '.join(sorted(known))})")
        out = cls(controller=ControllerSpec.from_mapping(data.get("controller")))
        required = {"auth_methods": ("path", "type"), "secrets_engines": ("path", "type"),
                    "policies": ("name", "policy"), "endpoints": ("path", "data"),
                    "audit_devices": ("path", "type"), "kv_secrets": ("mount", "path"),
                    "generated_secrets": ("mount", "path", "field")}
        for section, keys in required.items():
            items = data.get(section) or []
            if not isinstance(items, list):
                raise VaultError(f"configuration section {section} must be a list")
            for i, item in enumerate(items):
                if not isinstance(item, Mapping):
                    raise VaultError(f"{section}[{i}] must be a mapping")
                missing = [k for k in keys if not item.get(k)]
                if missing:
                    raise VaultError(f"{section}[{i}] lacks {', '.join(missing)}")
                getattr(out, section).append(dict(item))
        for i, item in enumerate(out.generated_secrets):
            length = item.get("length", GENERATED_LENGTH)
            if isinstance(length, bool) or not isinstance(length, int) or not (
                    GENERATED_MIN_LENGTH <= length <= GENERATED_MAX_LENGTH):
                raise VaultError(f"generated_secrets[{i}] ({item['mount']}/{item['path']}) has "
                                 f"length {length!r}; it must be a whole number from "
                                 f"{GENERATED_MIN_LENGTH} to {GENERATED_MAX_LENGTH}")
        if any(p["name"] == out.controller.policy for p in out.policies):
            raise VaultError(f"policy {out.controller.policy} is the controller's own policy; "
                             "the configuration may not define it (the controller would grant "
                             "itself anything)")
        if any(_mount_key(a["path"]) == _mount_key(out.controller.auth_path)
               for a in out.auth_methods):
            raise VaultError(f"auth path {out.controller.auth_path} is the controller's own "
                             "mount; the configuration may not manage it")
        return out

    def controller_policy(self) -> str:
        """The controller's ACL policy: exactly the paths the converge reads and writes.

        It cannot touch its own policy or AppRole mount, tokens, seals, raft, audit devices
        (it may only list them), generate-root or rekey; every grant is an exact path from
        this configuration (endpoint roles excepted: the parent path of each one).
        """
        rules: list[tuple[str, list[str]]] = [
            ("sys/auth", ["read"]),
            ("sys/mounts", ["read"]),
            # Listing the audit devices needs sudo on sys/audit; enabling one needs
            # sys/audit/<path>, which is not granted.
            ("sys/audit", ["read", "sudo"]),
            (f"sys/policies/acl/{self.controller.policy}", ["read"]),
            ("auth/token/lookup-self", ["read"]),
            ("auth/token/revoke-self", ["update"]),
        ]
        for item in self.auth_methods:
            key = _mount_key(item["path"])[:-1]
            rules += [(f"sys/auth/{key}", ["create", "update", "sudo"]),
                      (f"sys/auth/{key}/tune", ["read", "update", "sudo"])]
        for item in self.secrets_engines:
            key = _mount_key(item["path"])[:-1]
            rules += [(f"sys/mounts/{key}", ["create", "read", "update"]),
                      (f"sys/mounts/{key}/tune", ["read", "update"]),
                      (f"{key}/config", ["read"])]
        for item in self.policies:
            rules.append((f"sys/policies/acl/{item['name']}", ["create", "read", "update"]))
        for item in self.endpoints:
            rules.append((str(item["path"]).strip("/"), ["create", "read", "update"]))
        for item in [*self.kv_secrets, *self.generated_secrets]:
            mount = _mount_key(item["mount"])[:-1]
            rules.append((f"{mount}/data/{str(item['path']).strip('/')}",
                          ["create", "read", "update"]))
        seen: dict[str, list[str]] = {}
        for path, caps in rules:
            if not re.match(r"^[A-Za-z0-9_.+*/-]+$", path):
                raise VaultError(f"path {path!r} cannot be granted to the controller (only "
                                 "letters, digits and _.+*/- are allowed in a policy path)")
            merged = seen.setdefault(path, [])
            merged += [c for c in caps if c not in merged]
        lines = ["# The tai-deploy controller: only what the converge reads and writes."]
        for path in sorted(seen):
            grants = ", ".join(f'"{c}"' for c in seen[path])
            lines.append(f'path "{path}" {{\n  capabilities = [{grants}]\n}}')
        return "\n".join(lines) + "\n"


def apply_configuration(client: VaultClient, config: Configuration, *, check: bool = False,
                        secret_values: Mapping[str, Mapping[str, Any]] | None = None,
                        on_secret: Callable[[Sequence[str]], None] | None = None
                        ) -> list[Change]:
    """Ensure every item, in dependency order: mounts, policies, config objects, secrets.

    The audit devices are checked (they must already be enabled: the controller identity may
    list them but never enable or disable one). ``secret_values`` maps each kv_secrets path to
    its data; a secret listed in the configuration without values is refused. The generated
    secrets are written only where missing; ``on_secret`` hears every value generated.
    """
    changes: list[Change] = []
    for item in config.audit_devices:
        changes.append(_audit_present(client, item))
    for item in config.auth_methods:
        changes.append(ensure_auth_method(client, item["path"], item["type"],
                                          description=item.get("description"), check=check))
    for item in config.secrets_engines:
        changes.append(ensure_secrets_engine(client, item["path"], item["type"],
                                             options=item.get("options"),
                                             description=item.get("description"),
                                             check=check))
    for item in config.policies:
        changes.append(ensure_policy(client, item["name"], item["policy"], check=check))
    for item in config.endpoints:
        if check and any(c.action == CREATED and str(item["path"]).startswith(f"auth/{c.name}")
                         for c in changes if c.kind == "auth"):
            # The auth method does not exist yet, so its config cannot be read: it would be
            # created together with the method.
            changes.append(Change("endpoint", str(item["path"]).strip("/"), CREATED, None,
                                  dict(item["data"])))
            continue
        changes.append(ensure_endpoint(client, item["path"], item["data"], check=check))
    values = secret_values or {}
    for item in config.kv_secrets:
        path = str(item["path"]).strip("/")
        data = values.get(path)
        if not isinstance(data, Mapping) or not data:
            raise VaultError(f"no values were given for the secret {item['mount']}/{path} "
                             "(vault_service_secrets)")
        wanted_keys = sorted(str(k) for k in item.get("fields") or [])
        if wanted_keys and sorted(str(k) for k in data) != wanted_keys:
            raise VaultError(f"the values given for {item['mount']}/{path} have the keys "
                             f"{', '.join(sorted(map(str, data)))}, not the planned "
                             f"{', '.join(wanted_keys)}")
        if check and any(c.action == CREATED and c.kind == "secrets_engine"
                         and c.name == _mount_key(item["mount"]) for c in changes):
            changes.append(Change("secret", f"{item['mount']}/{path}", CREATED, None,
                                  {"keys": sorted(map(str, data))}))
            continue
        changes.append(ensure_kv_secret(client, item["mount"], path, data, check=check))
    for item in config.generated_secrets:
        path = str(item["path"]).strip("/")
        if check and any(c.action == CREATED and c.kind == "secrets_engine"
                         and c.name == _mount_key(item["mount"]) for c in changes):
            changes.append(Change("secret", f"{item['mount']}/{path}", CREATED, None,
                                  {"keys": [str(item["field"])], "generated": [item["field"]]}))
            continue
        changes.append(ensure_generated_secret(
            client, item["mount"], path, str(item["field"]),
            int(item.get("length", GENERATED_LENGTH)), check=check, on_secret=on_secret))
    return changes


def _audit_present(client: VaultClient, item: Mapping[str, Any]) -> Change:
    key = _mount_key(item["path"])
    devices = _data(client.request("GET", "sys/audit"))
    if key not in devices:
        raise VaultError(f"audit device {key} is not enabled on {client.addr}; it is enabled "
                         "at init with the initial root token (or declared in the server "
                         "configuration), and the controller identity may not enable one: "
                         "see docs/runbooks/vault.md (break-glass)")
    found = devices[key]
    return Change("audit", key, UNCHANGED, {"type": found.get("type")},
                  {"type": item["type"]})


# --- audit devices ----------------------------------------------------------------------------

def ensure_audit_device(client: VaultClient, path: str, device_type: str,
                        options: Mapping[str, Any], *, check: bool = False) -> Change:
    """An audit device at path with these options, enabled through the API when it is absent.

    OpenBao (2.2 and later) refuses audit devices through the API and reads them from the
    server configuration's ``audit`` stanza (the role renders it); HashiCorp Vault ignores that
    stanza (an unknown-field warning) and takes them through ``PUT sys/audit/<path>``. Either
    way, what is found at path is compared with what is wanted; a different device there is
    refused (replacing it would drop the audit trail).
    """
    key = _mount_key(path)
    devices = _data(client.request("GET", "sys/audit"))
    current = devices.get(key)
    wanted = {"type": device_type, "options": _str_options(options)}
    if current is not None:
        before = {"type": current.get("type"),
                  "options": {k: _str_options(current.get("options")).get(k)
                              for k in wanted["options"]}}
        if before != wanted:
            raise VaultError(f"audit device {key} on {client.addr} is {before}, not {wanted}; "
                             "disable it deliberately before the role enables its own")
        return Change("audit", key, UNCHANGED, before, wanted)
    if not check:
        code, data = client.call("PUT", f"sys/audit/{key[:-1]}", wanted)
        if code >= 400:
            why = refusal(client.addr, "PUT", f"sys/audit/{key[:-1]}", code, data)
            raise VaultError(f"{why}; declare the device in the server configuration (audit "
                             "stanza) where the API may not enable one")
    return Change("audit", key, CREATED, None, wanted)


# --- the controller's AppRole identity --------------------------------------------------------

def approle_login(client: VaultClient, auth_path: str, role_id: str, secret_id: str) -> str:
    """A token from auth/<auth_path>/login; one sentence (no credential) when refused."""
    code, data = client.call("POST", f"auth/{auth_path}/login",
                             {"role_id": role_id, "secret_id": secret_id})
    token = ((data.get("auth") or {}).get("client_token")) if code == 200 else None
    if not token:
        raise VaultError(refusal(client.addr, "POST", f"auth/{auth_path}/login", code, data)
                         + "; the controller identity of the init material file was refused "
                         "(revoked or of another cluster): re-issue it with the break-glass "
                         "procedure of docs/runbooks/vault.md")
    return str(token)


def issue_secret_id(client: VaultClient, auth_path: str, role_name: str
                    ) -> tuple[str, str, str]:
    """(role id, new secret id, its accessor) of an AppRole role."""
    role = _data(client.request("GET", f"auth/{auth_path}/role/{role_name}/role-id"))
    issued = _data(client.request("POST", f"auth/{auth_path}/role/{role_name}/secret-id", {}))
    role_id, secret_id = str(role.get("role_id") or ""), str(issued.get("secret_id") or "")
    if not role_id or not secret_id:
        raise VaultError(f"Vault at {client.addr} issued no role id or secret id for "
                         f"auth/{auth_path}/role/{role_name}")
    return role_id, secret_id, str(issued.get("secret_id_accessor") or "")


def destroy_other_secret_ids(client: VaultClient, auth_path: str, role_name: str,
                             keep_accessor: str) -> int:
    """Destroy every secret id of the role but keep_accessor (a re-issue retires the old ones)."""
    code, data = client.call("LIST", f"auth/{auth_path}/role/{role_name}/secret-id")
    if code == 404:
        return 0
    if code != 200:
        raise VaultError(refusal(client.addr, "LIST",
                                 f"auth/{auth_path}/role/{role_name}/secret-id", code, data))
    destroyed = 0
    for accessor in _data(data).get("keys") or []:
        if accessor != keep_accessor:
            client.request("POST", f"auth/{auth_path}/role/{role_name}/secret-id-accessor/"
                           "destroy", {"secret_id_accessor": accessor})
            destroyed += 1
    return destroyed


# --- KV version 2 secrets ---------------------------------------------------------------------

def ensure_kv_secret(client: VaultClient, mount: str, path: str, data: Mapping[str, Any], *,
                     check: bool = False) -> Change:
    """The latest version of <mount>/<path> holds exactly data; written only when it differs.

    ``before``/``after`` carry the key names only (with a marker of which changed), never a
    value: this is what a diff may show of a secret.
    """
    clean = path.strip().strip("/")
    if not clean or ".." in clean.split("/"):
        raise VaultError(f"secret path {path!r} is not valid")
    wanted = {str(k): str(v) for k, v in data.items()}
    current_body = client.request("GET", f"{mount}/data/{clean}", missing_ok=True)
    current_data = (_data(current_body).get("data") if current_body else None)
    name = f"{mount}/{clean}"
    if not isinstance(current_data, Mapping):
        if not check:
            client.request("POST", f"{mount}/data/{clean}", {"data": wanted})
        return Change("secret", name, CREATED, None, {"keys": sorted(wanted)})
    current = {str(k): str(v) for k, v in current_data.items()}
    if current == wanted:
        return Change("secret", name, UNCHANGED, {"keys": sorted(current)},
                      {"keys": sorted(wanted)})
    changed_keys = sorted(k for k in set(current) | set(wanted)
                          if current.get(k) != wanted.get(k))
    if not check:
        client.request("POST", f"{mount}/data/{clean}", {"data": wanted})
    return Change("secret", name, UPDATED, {"keys": sorted(current)},
                  {"keys": sorted(wanted), "changed": changed_keys})


# --- generated secrets ------------------------------------------------------------------------

# Letters and digits: within every charset a consumer accepts (the chart's Redis passwords take
# letters, digits and ._~+/=- only) and needing no quoting anywhere. 40 of them: 238 bits.
GENERATED_ALPHABET = string.ascii_letters + string.digits
GENERATED_LENGTH = 40
GENERATED_MIN_LENGTH, GENERATED_MAX_LENGTH = 24, 256


def generate_value(length: int = GENERATED_LENGTH) -> str:
    """A random value from the operating system's CSPRNG (secrets), GENERATED_ALPHABET only."""
    return "".join(secrets.choice(GENERATED_ALPHABET) for _ in range(length))


def ensure_generated_secret(client: VaultClient, mount: str, path: str, key: str, length: int,
                            *, check: bool = False,
                            on_secret: Callable[[Sequence[str]], None] | None = None
                            ) -> Change:
    """<mount>/<path> holds a non-empty ``key``: left untouched when it does; otherwise a new
    random value is written (beside the secret's other keys, if any), with check-and-set on the
    version read, so a value written meanwhile by somebody else is never overwritten.

    The value is never returned: ``before``/``after`` carry key names only (and which key was
    generated); ``on_secret`` hears it (the module masks it in every output).
    """
    clean = path.strip().strip("/")
    if not clean or ".." in clean.split("/"):
        raise VaultError(f"secret path {path!r} is not valid")
    name = f"{mount}/{clean}"
    status, body = client.call("GET", f"{mount}/data/{clean}")
    if status not in (200, 404):
        raise VaultError(refusal(client.addr, "GET", f"{mount}/data/{clean}", status, body))
    # A 404 of KV v2 still carries the metadata of a deleted latest version (its number is the
    # check-and-set value a write needs); a path never written has none (version 0).
    inner = _data(body) if status == 200 or isinstance(body.get("data"), Mapping) else {}
    found = inner.get("data")
    current = {str(k): v for k, v in found.items()} if isinstance(found, Mapping) else None
    meta = inner.get("metadata")
    version = int(meta.get("version") or 0) if isinstance(meta, Mapping) else 0
    keys = sorted(current or {})
    if current is not None and str(current.get(key) or ""):
        return Change("secret", name, UNCHANGED, {"keys": keys}, {"keys": keys})
    value = generate_value(length)
    if on_secret is not None:
        on_secret([value])
    after = {"keys": sorted({*keys, key}), "generated": [key]}
    if not check:
        code, answer = client.call("POST", f"{mount}/data/{clean}",
                                   {"options": {"cas": version},
                                    "data": {**(current or {}), key: value}})
        if code >= 400:
            raise VaultError(refusal(client.addr, "POST", f"{mount}/data/{clean}", code, answer)
                             + f"; {name} was not written (if another run wrote it meanwhile, "
                             "run again: an existing value is kept)")
    return Change("secret", name, CREATED if current is None else UPDATED,
                  None if current is None else {"keys": keys}, after)
