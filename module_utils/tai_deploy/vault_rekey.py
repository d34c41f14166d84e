"""Rotate Vault's unseal shards (Shamir seal) or recovery shards (auto-unseal): the rekey flow.

Vault's rekey API with verification is used so that no shard is ever lost:

1. ``PUT sys/rekey/init`` (``sys/rekey-recovery-key/init`` with an auto-unseal seal) with the
   wanted shares and threshold and ``require_verification: true``;
2. ``PUT .../update`` with a threshold of the CURRENT shards and the rekey nonce; the last
   answer carries the new shards and a verification nonce. The new shards are NOT active yet:
   the current ones still unseal Vault until step 4 completes;
3. the new shards are written to the encrypted init material file as ``pending``, next to the
   current ones, atomically, BEFORE anything else is done with them;
4. ``PUT .../verify`` with a threshold of the NEW shards: from its success on, only the new
   shards unseal Vault;
5. the pending shards are promoted to current in the file (atomic) and the old ones dropped.

A crash at any point therefore leaves a file that unseals Vault (steps 1-3: the current shards;
between 4 and 5: the pending ones, which the unseal step also tries). A rerun resolves what it
finds, in this order:

* pending shards and Vault waiting for the verification of the same rekey (same nonce): the
  verification is continued (any partial progress is reset first) and the shards promoted;
* pending shards and no such verification: Vault either verified them (crash between 4 and 5)
  or lost the rekey (cancelled, or the active node restarted: a rekey lives in its memory). A
  rekey is started with the PENDING shards and cancelled at once: Vault accepts them only if
  they are the active ones (the rekey itself is never verified, so nothing changes). Accepted:
  they are promoted. Refused: they are useless and a new rotation starts from the current
  shards; the file keeps them until that rotation's pending write replaces them, which happens
  only after Vault accepted the current shards.
* a rekey in progress that is not ours (no pending shards, or another nonce) is stale: it is
  cancelled (``DELETE .../init``); its new shards, if any, were never verified, so the current
  ones stay valid.

A shard that Vault refuses cancels the rekey and stops the run with one sentence: nothing is
changed and the file is not written. No message built here holds a shard.

Custody by holders: with ``holders`` the rekey is started with their OpenPGP keys
(``pgp_keys`` of .../init), so the new shards Vault returns are ciphertexts, one per holder, and
are stored as pending like any others. The current shards, when the file holds them encrypted,
come from the holders for the run (``current_keys``); the verification needs a threshold of the
NEW shards decrypted (``new_keys``), so a rotation to holders takes two runs: the first stores
the pending ciphertexts and stops, awaiting the holders; the second, with their decrypted new
shards, verifies and promotes. Until then the current shards stay the active ones.

HashiCorp Vault serves these endpoints without a token. OpenBao (the tests' server) disables
them by default from 2.5 (``disable_unauthed_rekey_endpoints``) in favour of the authenticated
``sys/rotate/(root|recovery)`` endpoints; the test server re-enables them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .vault_api import VaultClient, VaultError, refusal, seal_status
from .vault_bootstrap import Connector, SecretSink
from .vault_secrets import (
    Cipher,
    InitMaterial,
    MaterialError,
    PendingShards,
    load_material,
    save_material,
)

StepHook = Callable[[str], None]

# Steps reported to on_step, in the order they happen (a test stops the process at one of them
# to prove that a crash there loses nothing).
STALE_CANCELLED = "stale-cancelled"
REKEYED = "rekeyed"                    # Vault returned the new shards (held in memory only)
PENDING_SAVED = "pending-saved"        # the new shards are in the file as pending
VERIFIED = "verified"                  # Vault verified them: only they unseal from now on
PROMOTED = "promoted"                  # the file holds only the new shards

MAX_SHARES = 255


def _ignore_secret(_: Sequence[str]) -> None:
    return None


def _ignore_step(_: str) -> None:
    return None


@dataclass
class RekeyResult:
    """What a rotation did. Never holds a shard."""

    key_type: str = ""
    seal_type: str = ""
    rotated: bool = False
    resumed: bool = False
    shares: int = 0
    threshold: int = 0
    previous_shares: int = 0
    previous_threshold: int = 0
    actions: list[str] = field(default_factory=list)
    awaiting_holders: bool = False

    @property
    def changed(self) -> bool:
        return self.rotated or self.awaiting_holders

    def as_dict(self) -> dict[str, Any]:
        return {"key_type": self.key_type, "seal_type": self.seal_type, "rotated": self.rotated,
                "resumed": self.resumed, "shares": self.shares, "threshold": self.threshold,
                "previous_shares": self.previous_shares,
                "previous_threshold": self.previous_threshold, "actions": list(self.actions),
                "awaiting_holders": self.awaiting_holders}


def check_shares(shares: int, threshold: int) -> None:
    """Vault's own rules for a share count and threshold, as one sentence before any call."""
    if not 1 <= shares <= MAX_SHARES:
        raise VaultError(f"the number of shares must be between 1 and {MAX_SHARES}, not {shares}")
    if not 1 <= threshold <= shares:
        raise VaultError(f"the threshold must be between 1 and the number of shares {shares}, "
                         f"not {threshold}")
    if shares > 1 and threshold == 1:
        raise VaultError(f"a threshold of 1 with {shares} shares is refused by Vault (any single "
                         "shard would unseal it); use a threshold of at least 2")


@dataclass(frozen=True)
class RekeyStatus:
    """The public part of ``GET .../init`` (no secret in it)."""

    started: bool
    nonce: str
    shares: int
    threshold: int
    progress: int
    required: int
    verification_required: bool
    verification_nonce: str

    @classmethod
    def from_response(cls, data: Mapping[str, Any]) -> RekeyStatus:
        return cls(bool(data.get("started")), str(data.get("nonce") or ""),
                   int(data.get("n") or 0), int(data.get("t") or 0),
                   int(data.get("progress") or 0), int(data.get("required") or 0),
                   bool(data.get("verification_required")),
                   str(data.get("verification_nonce") or ""))

    @property
    def verifying(self) -> bool:
        return self.started and bool(self.verification_nonce)


class Rekey:
    """The rekey endpoints of one Vault node, for unseal (Shamir) or recovery shards."""

    def __init__(self, client: VaultClient, *, recovery: bool,
                 on_secret: SecretSink = _ignore_secret) -> None:
        self.client = client
        self.base = "sys/rekey-recovery-key" if recovery else "sys/rekey"
        self.kind = "recovery" if recovery else "unseal"
        self._on_secret = on_secret

    def status(self) -> RekeyStatus:
        code, data = self.client.call("GET", f"{self.base}/init")
        if code in (404, 405):
            raise VaultError(
                f"Vault at {self.client.addr} does not serve /v1/{self.base}/init (HTTP {code}); "
                "OpenBao 2.5 and later disable the rekey endpoints unless the listener sets "
                "disable_unauthed_rekey_endpoints = false, and the role needs them to rotate "
                "the shards")
        if code != 200:
            raise VaultError(refusal(self.client.addr, "GET", f"{self.base}/init", code, data))
        return RekeyStatus.from_response(data)

    def cancel(self) -> None:
        """DELETE .../init: drop the rekey in progress and its unverified new shards."""
        self.client.request("DELETE", f"{self.base}/init")

    def start(self, shares: int, threshold: int, pgp_keys: Sequence[str] = ()) -> RekeyStatus:
        body: dict[str, Any] = {"secret_shares": shares, "secret_threshold": threshold,
                                "require_verification": True}
        if pgp_keys:
            body["pgp_keys"] = list(pgp_keys)
        data = self.client.request("PUT", f"{self.base}/init", body) or {}
        status = RekeyStatus.from_response(data)
        if not status.started or not status.nonce:
            self._quiet_cancel()
            raise VaultError(f"Vault at {self.client.addr} did not start a rekey of the "
                             f"{self.kind} shards")
        if not status.verification_required:
            # Without verification the new shards would be active the moment they are
            # returned, before the file holds them: a crash there would lose every shard.
            self._quiet_cancel()
            raise VaultError(
                f"Vault at {self.client.addr} does not support a verified rekey of the "
                f"{self.kind} shards; the rekey was cancelled and the role refuses to rotate "
                "without verification (a crash could lose every shard)")
        return status

    def submit(self, keys: Sequence[str], status: RekeyStatus) -> list[str] | str:
        """Feed current shards to .../update: the new shards, or the reason Vault gave for
        refusing them (then the caller cancels the rekey)."""
        distinct = list(dict.fromkeys(keys))
        required = status.required or 1
        if len(distinct) < required:
            return (f"{len(distinct)} distinct shards cannot reach the threshold of "
                    f"{required}")
        for key in distinct[:required]:
            code, data = self.client.call("PUT", f"{self.base}/update",
                                          {"key": key, "nonce": status.nonce})
            if code != 200:
                reason = refusal(self.client.addr, "PUT", f"{self.base}/update", code, data)
                return reason.split(": ", 1)[-1]
            if data.get("complete"):
                new = [str(k) for k in data.get("keys_base64") or []]
                self._on_secret(new + [str(k) for k in data.get("keys") or []])
                if not new:
                    return "Vault completed the rekey without returning new shards"
                if not data.get("verification_nonce"):
                    # Should not happen after start() (verification was required): the new
                    # shards would already be active. Say so rather than lose them.
                    raise VaultError(
                        f"Vault at {self.client.addr} completed the rekey without a "
                        "verification step; its new shards are active but were not stored")
                return new
        return f"{required} shards did not complete the rekey"

    def verify(self, keys: Sequence[str], threshold: int) -> bool:
        """Feed new shards to .../verify; True once Vault made them the active ones.

        Partial progress (an interrupted run) is reset first. False when Vault refuses them:
        it then keeps waiting for a verification with a new nonce, and nothing changed.
        """
        code, data = self.client.call("GET", f"{self.base}/verify")
        if code != 200:
            raise VaultError(refusal(self.client.addr, "GET", f"{self.base}/verify", code, data))
        current = RekeyStatus.from_response(data)
        if current.threshold and current.threshold != threshold:
            return False
        if current.progress:
            data = self.client.request("DELETE", f"{self.base}/verify") or {}
            current = RekeyStatus.from_response(data)
        distinct = list(dict.fromkeys(keys))
        for key in distinct[:threshold]:
            code, data = self.client.call("PUT", f"{self.base}/verify",
                                          {"key": key, "nonce": current.nonce})
            if code == 400:
                return False
            if code != 200:
                raise VaultError(refusal(self.client.addr, "PUT", f"{self.base}/verify", code,
                                         data))
            if data.get("complete"):
                return True
        return False

    def shards_active(self, keys: Sequence[str], shares: int, threshold: int) -> bool:
        """Whether Vault accepts these shards, found without changing anything.

        A rekey is started (with verification, so it can never take effect), fed the shards
        and cancelled at once: Vault combines them and checks the result against its root
        (or recovery) key only when the threshold is reached.
        """
        status = self.start(shares, threshold)
        try:
            outcome = self.submit(keys, status)
        finally:
            self.cancel()
        return not isinstance(outcome, str)

    def _quiet_cancel(self) -> None:
        with contextlib.suppress(VaultError):
            self.cancel()


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def rotate_shards(node: str, *, init_file: str | Path, cipher: Cipher, connector: Connector,
                  shares: int | None = None, threshold: int | None = None,
                  check: bool = False, on_secret: SecretSink = _ignore_secret,
                  on_step: StepHook = _ignore_step,
                  holders: Sequence[tuple[str, str]] = (),
                  current_keys: Sequence[str] = (),
                  new_keys: Sequence[str] = ()) -> RekeyResult:
    """Rotate the shards of the Vault reached through node, or finish an interrupted rotation.

    ``shares``/``threshold`` default to the counts of the current shards. In check mode the
    server and the file are read and the planned actions reported; nothing is written.
    """
    material = load_material(init_file, cipher)
    if material is None:
        raise MaterialError(f"the init material file {init_file} does not exist; the rotation "
                            "needs the current shards (restore the file from its backup)")
    on_secret(material.secrets())
    on_secret([*current_keys, *new_keys])
    wanted_shares = material.shares if shares is None else shares
    wanted_threshold = material.threshold if threshold is None else threshold
    check_shares(wanted_shares, wanted_threshold)
    if holders and len(holders) != wanted_shares:
        raise VaultError(f"{len(holders)} key holders were given for {wanted_shares} shares; "
                         "each new shard is encrypted to exactly one holder")
    custody = _Custody(auth_keys=tuple(current_keys) if material.holders else material.keys,
                       holders=tuple(holders), new_keys=tuple(new_keys))
    result = RekeyResult(key_type=material.key_type, previous_shares=material.shares,
                         previous_threshold=material.threshold, shares=wanted_shares,
                         threshold=wanted_threshold)
    with connector.connect(node) as client:
        status = seal_status(client)
        result.seal_type = status.seal_type
        if not status.initialized:
            raise VaultError(f"Vault at {node} is not initialised; there are no shards to "
                             "rotate")
        if status.sealed:
            raise VaultError(f"Vault at {node} is sealed; unseal it first (site.yml --tags "
                             "vault_unseal), a rotation needs an unsealed server")
        if material.key_type != status.key_type:
            raise MaterialError(
                f"{init_file} holds {material.key_type} shards but Vault at {node} uses a "
                f"{status.seal_type} seal that needs {status.key_type} shards; wrong file?")
        rekey = Rekey(client, recovery=status.recovery_seal, on_secret=on_secret)
        progress = rekey.status()
        if check:
            _plan(result, material, progress)
            return result
        if material.pending is not None:
            if _resolve_pending(rekey, material, progress, result, init_file=init_file,
                                cipher=cipher, on_step=on_step, custody=custody):
                return result
        elif progress.started:
            rekey.cancel()
            result.actions.append("cancelled a stale rekey that was in progress")
            on_step(STALE_CANCELLED)
        if material.holders and not custody.auth_keys:
            raise VaultError(
                f"the current shards are held by {', '.join(material.holders)}: "
                f"{material.threshold} of them decrypt their shard and hand it in "
                "(vault_rotate_current_keys) to authorise the rotation")
        _rotate(rekey, material, result, init_file=init_file, cipher=cipher, on_step=on_step,
                custody=custody)
    return result


@dataclass(frozen=True)
class _Custody:
    """Who holds what in this run: the shards that authorise the rekey, the holders the new
    shards go to, and (second run of a rotation to holders) their decrypted new shards."""

    auth_keys: tuple[str, ...] = field(repr=False)
    holders: tuple[tuple[str, str], ...] = ()
    new_keys: tuple[str, ...] = field(default=(), repr=False)

    def verification_keys(self, pending: PendingShards) -> tuple[str, ...]:
        return self.new_keys if pending.holders else pending.keys


def _plan(result: RekeyResult, material: InitMaterial, progress: RekeyStatus) -> None:
    pending = material.pending
    if pending is not None and progress.verifying and progress.nonce == pending.nonce:
        result.actions.append("continue the verification of the pending shards of an "
                              "interrupted rotation, then promote them")
        result.resumed = result.rotated = True
        result.shares, result.threshold = pending.shares, pending.threshold
        return
    if progress.started:
        result.actions.append("cancel a stale rekey that is in progress")
    if pending is not None:
        result.actions.append("check whether the pending shards of an interrupted rotation are "
                              "the active ones: promote them if so, else rotate anew")
    result.actions.append(
        f"rotate the {result.previous_shares} {material.key_type} shards (threshold "
        f"{result.previous_threshold}) into {result.shares} new ones (threshold "
        f"{result.threshold}), verified before the old ones are dropped")
    result.rotated = True


def _resolve_pending(rekey: Rekey, material: InitMaterial, progress: RekeyStatus,
                     result: RekeyResult, *, init_file: str | Path, cipher: Cipher,
                     on_step: StepHook, custody: _Custody) -> bool:
    """Finish the interrupted rotation whose pending shards the file holds (True), or find
    that they never became active (False: a new rotation replaces them). See the module doc."""
    pending = material.pending
    assert pending is not None
    verify_keys = custody.verification_keys(pending)
    if pending.holders and not verify_keys:
        if progress.verifying and progress.nonce == pending.nonce:
            result.awaiting_holders = True
            result.actions.append(
                f"the new shards wait for {pending.threshold} of "
                f"{', '.join(pending.holders)} to decrypt theirs and hand them in "
                "(vault_rotate_new_keys); the current shards stay active until then")
            return True
        raise VaultError(
            "the pending shards of an interrupted rotation are encrypted to "
            f"{', '.join(pending.holders)} and Vault no longer waits for their verification: "
            "hand in their decrypted new shards (vault_rotate_new_keys) to find whether they "
            "became active")
    if progress.verifying and progress.nonce == pending.nonce:
        if rekey.verify(verify_keys, pending.threshold):
            on_step(VERIFIED)
            result.actions.append("continued the verification of the pending shards of an "
                                  "interrupted rotation")
            _promote(material, result, init_file=init_file, cipher=cipher, on_step=on_step)
            result.resumed = True
            return True
        rekey.cancel()
        result.actions.append("cancelled the interrupted rekey: Vault refused its pending "
                              "shards")
        on_step(STALE_CANCELLED)
    elif progress.started:
        rekey.cancel()
        result.actions.append("cancelled a stale rekey that was in progress")
        on_step(STALE_CANCELLED)
    if rekey.shards_active(verify_keys, pending.shares, pending.threshold):
        result.actions.append("found that Vault had already verified the pending shards of an "
                              "interrupted rotation")
        _promote(material, result, init_file=init_file, cipher=cipher, on_step=on_step)
        result.resumed = True
        return True
    result.actions.append("found that the pending shards of an interrupted rotation never "
                          "became active; this rotation replaces them")
    return False


def _promote(material: InitMaterial, result: RekeyResult, *, init_file: str | Path,
             cipher: Cipher, on_step: StepHook) -> None:
    promoted = material.promoted()
    save_material(init_file, promoted, cipher)
    on_step(PROMOTED)
    result.rotated = True
    result.shares, result.threshold = promoted.shares, promoted.threshold
    result.actions.append("promoted the new shards in the init material file and dropped the "
                          "old ones")


def _rotate(rekey: Rekey, material: InitMaterial, result: RekeyResult, *,
            init_file: str | Path, cipher: Cipher, on_step: StepHook, custody: _Custody) -> None:
    addr = rekey.client.addr
    status = rekey.start(result.shares, result.threshold,
                         pgp_keys=[key for _, key in custody.holders])
    new_keys = rekey.submit(custody.auth_keys, status)
    if isinstance(new_keys, str):
        rekey.cancel()
        raise VaultError(
            f"the stored {material.key_type} shards do not authorise a rekey of Vault at {addr} "
            f"({new_keys}); the rekey was cancelled and nothing was changed")
    on_step(REKEYED)
    pending = PendingShards(result.shares, result.threshold, tuple(new_keys), status.nonce,
                            _now(), tuple(name for name, _ in custody.holders))
    staged = material.with_pending(pending)
    save_material(init_file, staged, cipher)
    on_step(PENDING_SAVED)
    result.actions.append(f"stored {len(new_keys)} new {material.key_type} shards as pending in "
                          "the init material file"
                          + (", each encrypted to its holder" if pending.holders else ""))
    if pending.holders:
        # Only the holders can decrypt the new shards that the verification needs.
        result.awaiting_holders = True
        result.actions.append(
            f"the new shards wait for {pending.threshold} of {', '.join(pending.holders)} to "
            "decrypt theirs and hand them in (vault_rotate_new_keys); the current shards stay "
            "active until then")
        return
    if not rekey.verify(new_keys, result.threshold):
        # The shards Vault has just made do not verify: the rekey is dropped, the current
        # shards stay the active ones and the pending ones leave the file.
        rekey.cancel()
        save_material(init_file, material.with_pending(None), cipher)
        raise VaultError(
            f"Vault at {addr} refused to verify the new shards it had just returned; the rekey "
            "was cancelled, the current shards stay valid and the file holds only them")
    on_step(VERIFIED)
    result.actions.append("verified the new shards with Vault (from now on only they unseal "
                          "it)")
    _promote(staged, result, init_file=init_file, cipher=cipher, on_step=on_step)
