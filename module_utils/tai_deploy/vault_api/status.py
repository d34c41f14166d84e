"""Seal status, init, unseal and readiness of one Vault node."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..poll import poll
from .client import VaultClient, VaultError, refusal

# sys/health answers with these codes for an initialised, unsealed node (active, standby,
# DR secondary, performance standby); see the Vault API reference of sys/health.
_SERVING_HEALTH_CODES = frozenset({200, 429, 472, 473})


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



def seal_status(client: VaultClient) -> SealStatus:
    return SealStatus.from_response(client.request("GET", "sys/seal-status") or {})


def health_code(client: VaultClient) -> int:
    """The status code of sys/health (200 active, 429 standby, 501 uninitialised, 503 sealed)."""
    status, _ = client.call("GET", "sys/health")
    return status


def wait_for(check: Callable[[], bool], timeout: float, interval: float = 0.25) -> bool:
    """Call check until it returns True or timeout seconds have passed; True when it did."""
    return poll(check, timeout=timeout, interval=interval, on_timeout=lambda last: False)


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

