"""The vault role's desired state as data: per-service policies and roles, the secrets the
agents read, the audit stanza and the listener's names (what the plan renders, in one place).

Every value is placed into a structure (a mapping, or HCL with each string escaped), never
pasted into text, so no input can change the shape of what is written.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .config_text import Attribute, Block, Comment, ConfigTextError, hcl_string, render_hcl

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _service(name: Any) -> str:
    text = str(name)
    if not _NAME.match(text):
        raise ConfigTextError(f"service name {text!r} is not a DNS label (a-z, 0-9, -)")
    return text


def policy_hcl(rules: Sequence[tuple[str, Sequence[str]]], comment: str = "") -> str:
    """An ACL policy: one path block per (path, capabilities), every string escaped."""
    lines = [f"# {line}" for line in comment.splitlines()]
    for path, capabilities in rules:
        grants = ", ".join(hcl_string(str(c)) for c in capabilities)
        lines.append(f"path {hcl_string(path)} {{\n  capabilities = [{grants}]\n}}")
    return "\n".join(lines) + "\n"


def service_policies(services: Sequence[Any], mount: str, prefix: str = "tai-",
                     redis_path: str = "") -> dict[str, str]:
    """tai-<svc>: read <mount>/data/<svc>/* (and, with redis_path, its own Redis ACL password
    <mount>/data/<redis_path>/<svc>) and nothing else: no other service's secrets."""
    out = {}
    for s in services:
        rules: list[tuple[str, Sequence[str]]] = [(f"{mount}/data/{_service(s)}/*", ["read"])]
        if redis_path:
            rules.append((f"{mount}/data/{redis_path.strip('/')}/{_service(s)}", ["read"]))
        out[f"{prefix}{_service(s)}"] = policy_hcl(
            rules, f"{_service(s)} reads its own secrets and nothing else.")
    return out


def service_roles(services: Sequence[Any], namespace: str, token_ttl: str, token_max_ttl: str,
                  prefix: str = "tai-", *, audience: str | None = None
                  ) -> dict[str, dict[str, Any]]:
    """tai-<svc>: the Kubernetes auth role of the service account <svc> in the namespace, with
    that service's policy alone; with audience, only tokens issued for it are accepted (the
    agents' projected tokens)."""
    return {f"{prefix}{_service(s)}": {
        "bound_service_account_names": [_service(s)],
        "bound_service_account_namespaces": [namespace],
        **({"audience": audience} if audience else {}),
        "token_policies": [f"{prefix}{_service(s)}"],
        "token_ttl": token_ttl, "token_max_ttl": token_max_ttl,
    } for s in services}


def role_endpoints(roles: Mapping[str, Mapping[str, Any]], auth_path: str
                   ) -> list[dict[str, Any]]:
    return [{"path": f"auth/{auth_path}/role/{name}", "data": dict(roles[name])}
            for name in sorted(roles)]


def kv_secrets(secrets: Mapping[str, Any], mount: str, services: Sequence[Any]
               ) -> list[dict[str, Any]]:
    """What the plan shows of the agents' secrets <mount>/<svc>/config: key names, no value."""
    out = []
    for svc in services:
        data = secrets.get(str(svc)) if isinstance(secrets, Mapping) else None
        keys = sorted(str(k) for k in data) if isinstance(data, Mapping) else []
        out.append({"mount": mount, "path": f"{_service(svc)}/config", "fields": keys})
    return out


def secret_values(secrets: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """<svc>/config -> its data, for vault_configure (no_log)."""
    return {f"{_service(svc)}/config": {str(k): str(v) for k, v in data.items()}
            for svc, data in (secrets or {}).items() if isinstance(data, Mapping)}


def audit_hcl(path: str, file_path: str) -> str:
    """The declarative audit device (OpenBao reads it at start; HashiCorp Vault ignores it with a
    warning and the bootstrap enables the same device through sys/audit)."""
    return render_hcl([
        Comment("Audit device: every request and response, secrets as HMAC-SHA256."),
        Block("audit", ["file", path], [Block("options", body=[
            Attribute("file_path", file_path)])]),
    ])


def tls_names(release: str, namespace: str, replicas: int) -> list[str]:
    """DNS names of the listener certificate: the services, every server pod, localhost."""
    names = ["localhost"]
    hosts = [release, f"{release}-active", f"{release}-standby", f"{release}-internal"]
    hosts += [f"{release}-{i}.{release}-internal" for i in range(int(replicas))]
    for host in hosts:
        names += [host, f"{host}.{namespace}", f"{host}.{namespace}.svc",
                  f"{host}.{namespace}.svc.cluster.local"]
    return list(dict.fromkeys(names))


def _b64(text: Any) -> str:
    return base64.b64encode(str(text).encode()).decode()


def tls_secrets(material: Mapping[str, Any], listener_secret: str, namespace: str,
                ca_secret: str, ca_namespaces: Sequence[str]) -> list[dict[str, Any]]:
    """The listener's Secret (kubernetes.io/tls: its key, certificate and CA) in Vault's
    namespace, and a Secret holding only the CA in each of ``ca_namespaces`` (the injected
    agents verify Vault with it). ``material`` is the vault_tls file's ``vault_tls`` mapping
    (tls_crt, tls_key, ca_crt), decrypted by the task; the values are never named in an error."""
    listener = {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": listener_secret, "namespace": namespace,
                     "labels": {"app.kubernetes.io/name": "vault",
                                "app.kubernetes.io/managed-by": "tai-deploy"}},
        "data": {"tls.crt": _b64(material["tls_crt"]), "tls.key": _b64(material["tls_key"]),
                 "ca.crt": _b64(material["ca_crt"])},
    }
    cas = [{"metadata": {"namespace": ns, "name": ca_secret},
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "data": {"ca.crt": _b64(material["ca_crt"])}} for ns in ca_namespaces]
    return [listener, *cas]
