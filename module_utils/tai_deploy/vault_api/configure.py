"""Idempotent configuration: auth methods, secrets engines, policies, config objects.

Each ``ensure_*`` function reads first, writes only what differs and returns a Change.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .audit import audit_present
from .change import CREATED, UNCHANGED, UPDATED, Change, mount_key, str_options
from .client import VaultClient, VaultError, response_data
from .kv import (
    GENERATED_LENGTH,
    GENERATED_MAX_LENGTH,
    GENERATED_MIN_LENGTH,
    ensure_generated_secret,
    ensure_kv_secret,
)
from .status import wait_for

# A new KV version 2 mount first runs its "upgrade" and answers HTTP 400 "Upgrading from
# non-versioned to versioned data" to every request until it is done (usually milliseconds,
# seconds on a busy server); a write sent in that window is refused.
KV_UPGRADE_WAIT = 30.0


def ensure_auth_method(client: VaultClient, path: str, method_type: str, *,
                       description: str | None = None, check: bool = False) -> Change:
    """Enable an auth method at path; tune its description when one is given and differs."""
    key = mount_key(path)
    mounts = response_data(client.request("GET", "sys/auth"))
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
    key = mount_key(path)
    mounts = response_data(client.request("GET", "sys/mounts"))
    current = mounts.get(key)
    wanted_opts = str_options(options)
    wanted: dict[str, Any] = {"type": engine_type, "options": wanted_opts}
    if description is not None:
        wanted["description"] = description
    if current is None:
        if not check:
            client.request("POST", f"sys/mounts/{key[:-1]}", wanted)
            if engine_type == "kv" and wanted_opts.get("version") == "2":
                wait_kv_ready(client, key[:-1])
        return Change("secrets_engine", key, CREATED, None, wanted)
    cur_opts = str_options(current.get("options"))
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
    before = (None if current is None
              else _policy_text(str(response_data(current).get("policy") or "")))
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
    current = response_data(current_body)
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
        if any(mount_key(a["path"]) == mount_key(out.controller.auth_path)
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
            key = mount_key(item["path"])[:-1]
            rules += [(f"sys/auth/{key}", ["create", "update", "sudo"]),
                      (f"sys/auth/{key}/tune", ["read", "update", "sudo"])]
        for item in self.secrets_engines:
            key = mount_key(item["path"])[:-1]
            rules += [(f"sys/mounts/{key}", ["create", "read", "update"]),
                      (f"sys/mounts/{key}/tune", ["read", "update"]),
                      (f"{key}/config", ["read"])]
        for item in self.policies:
            rules.append((f"sys/policies/acl/{item['name']}", ["create", "read", "update"]))
        for item in self.endpoints:
            rules.append((str(item["path"]).strip("/"), ["create", "read", "update"]))
        for item in [*self.kv_secrets, *self.generated_secrets]:
            mount = mount_key(item["mount"])[:-1]
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
        changes.append(audit_present(client, item))
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
                         and c.name == mount_key(item["mount"]) for c in changes):
            changes.append(Change("secret", f"{item['mount']}/{path}", CREATED, None,
                                  {"keys": sorted(map(str, data))}))
            continue
        changes.append(ensure_kv_secret(client, item["mount"], path, data, check=check))
    for item in config.generated_secrets:
        path = str(item["path"]).strip("/")
        if check and any(c.action == CREATED and c.kind == "secrets_engine"
                         and c.name == mount_key(item["mount"]) for c in changes):
            changes.append(Change("secret", f"{item['mount']}/{path}", CREATED, None,
                                  {"keys": [str(item["field"])], "generated": [item["field"]]}))
            continue
        changes.append(ensure_generated_secret(
            client, item["mount"], path, str(item["field"]),
            int(item.get("length", GENERATED_LENGTH)), check=check, on_secret=on_secret))
    return changes


