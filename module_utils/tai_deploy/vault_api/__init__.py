"""Speak the Vault HTTP API: seal status, init, unseal, root-token generation, tokens, config.

Plain, typed and free of Ansible so that tests drive it against a real server (OpenBao is
API-compatible). Two rules hold everywhere:

* Secrets (unseal or recovery shards, tokens) travel only in request bodies and headers, never in
  URLs, and no error message built here quotes a request body, a response body or a header. What
  Vault answers in ``errors`` is quoted; Vault does not echo submitted keys or tokens there.
* The ``ensure_*`` functions read first and write only what differs, and report what they did
  (created, updated, unchanged), so that a caller's ``changed`` is the truth.

One job per module: client (the transport, on hvac's adapter), status (seal, init, unseal,
readiness), tokens, configure (the ``ensure_*`` functions and the configuration document),
audit, approle (the controller's identity), kv (KV version 2 secrets, given or generated),
change (what an ensure function reports). Every public name is importable from this package.
"""

from __future__ import annotations

from .approle import approle_login, destroy_other_secret_ids, issue_secret_id
from .audit import ensure_audit_device
from .change import CREATED, UNCHANGED, UPDATED, Change
from .client import LEADERSHIP_WAIT, READ_YOUR_WRITES, VaultClient, VaultError, refusal
from .configure import (
    KV_UPGRADE_WAIT,
    Configuration,
    ControllerSpec,
    apply_configuration,
    duration_seconds,
    ensure_auth_method,
    ensure_endpoint,
    ensure_policy,
    ensure_secrets_engine,
    wait_kv_ready,
)
from .kv import (
    GENERATED_ALPHABET,
    GENERATED_LENGTH,
    GENERATED_MAX_LENGTH,
    GENERATED_MIN_LENGTH,
    ensure_generated_secret,
    ensure_kv_secret,
    generate_value,
)
from .status import (
    SealStatus,
    health_code,
    initialize,
    reset_unseal,
    seal_status,
    submit_unseal_keys,
    wait_for,
    wait_serving,
    wait_unsealed,
)
from .tokens import (
    create_orphan_token,
    decode_otp_token,
    generate_root,
    revoke_self,
    token_is_valid,
)

__all__ = [
    "CREATED",
    "GENERATED_ALPHABET",
    "GENERATED_LENGTH",
    "GENERATED_MAX_LENGTH",
    "GENERATED_MIN_LENGTH",
    "KV_UPGRADE_WAIT",
    "LEADERSHIP_WAIT",
    "READ_YOUR_WRITES",
    "UNCHANGED",
    "UPDATED",
    "Change",
    "Configuration",
    "ControllerSpec",
    "SealStatus",
    "VaultClient",
    "VaultError",
    "apply_configuration",
    "approle_login",
    "create_orphan_token",
    "decode_otp_token",
    "destroy_other_secret_ids",
    "duration_seconds",
    "ensure_audit_device",
    "ensure_auth_method",
    "ensure_endpoint",
    "ensure_generated_secret",
    "ensure_kv_secret",
    "ensure_policy",
    "ensure_secrets_engine",
    "generate_root",
    "generate_value",
    "health_code",
    "initialize",
    "issue_secret_id",
    "refusal",
    "reset_unseal",
    "revoke_self",
    "seal_status",
    "submit_unseal_keys",
    "token_is_valid",
    "wait_for",
    "wait_kv_ready",
    "wait_serving",
    "wait_unsealed",
]
