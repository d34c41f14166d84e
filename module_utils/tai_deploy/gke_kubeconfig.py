"""Write a GKE cluster's kubeconfig entry, the way `gcloud container clusters get-credentials` does.

The entry (cluster, user and context, all named like gcloud names them:
``gke_<project>_<location>_<cluster>``) holds the cluster endpoint read from the GKE API (the
DNS-based endpoint, whose certificate is publicly trusted, or the IP endpoint with the cluster's
CA certificate) and an ``exec`` user (client.authentication.k8s.io/v1) that runs the project's
``scripts/tai-gke-token``: a Google access token from Application Default Credentials, so
neither gcloud nor gke-gcloud-auth-plugin is needed and no credential is stored in the file.
Other entries of the file are kept; the file is rewritten (atomically, mode 0600, under a lock
so that regions converging in parallel do not lose each other's entries) only when its content
would change.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .files import atomic_write

EXEC_API_VERSION = "client.authentication.k8s.io/v1"
INSTALL_HINT = ("tai-gke-token (scripts/ of tai-deploy) needs a Python with google-auth and "
                "Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, or "
                "`gcloud auth application-default login` once).")


class KubeconfigError(ValueError):
    """Unusable input or kubeconfig file; the message is one sentence."""


@dataclass(frozen=True)
class Entry:
    context: str
    server: str
    ca_data: str
    auth_command: str = "tai-gke-token"
    auth_args: tuple[str, ...] = ()

    def check(self) -> None:
        if not self.server.startswith("https://"):
            raise KubeconfigError(f"server {self.server!r} must be an https:// URL (the cluster "
                                  "endpoint).")
        if not self.auth_command:
            raise KubeconfigError("auth_command must name the credential plugin (for example "
                                  "the project's Python running scripts/tai-gke-token).")
        if not self.ca_data:
            return  # the DNS-based endpoint presents a publicly trusted certificate
        try:
            base64.b64decode(self.ca_data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise KubeconfigError("certificate_authority_data must be the base64 CA "
                                  "certificate of the cluster (masterAuth.clusterCaCertificate)."
                                  ) from exc

    def cluster(self) -> dict[str, Any]:
        cluster: dict[str, Any] = {"server": self.server}
        if self.ca_data:
            cluster["certificate-authority-data"] = self.ca_data
        return {"name": self.context, "cluster": cluster}

    def user(self) -> dict[str, Any]:
        exec_: dict[str, Any] = {"apiVersion": EXEC_API_VERSION, "command": self.auth_command}
        if self.auth_args:
            exec_["args"] = list(self.auth_args)
        # v1 requires interactiveMode; the plugin never prompts.
        exec_.update({"installHint": INSTALL_HINT, "interactiveMode": "Never",
                      "provideClusterInfo": False})
        return {"name": self.context, "user": {"exec": exec_}}

    def context_entry(self) -> dict[str, Any]:
        return {"name": self.context,
                "context": {"cluster": self.context, "user": self.context}}


def _upsert(items: list[Any], entry: dict[str, Any]) -> list[Any]:
    out = [i for i in items if not (isinstance(i, dict) and i.get("name") == entry["name"])]
    out.append(entry)
    return sorted(out, key=lambda i: str(i.get("name", "")) if isinstance(i, dict) else "")


def merge(config: dict[str, Any] | None, entry: Entry, *, set_current: bool) -> dict[str, Any]:
    """The kubeconfig with the entry added or replaced; other entries untouched."""
    cfg = dict(config or {})
    cfg.setdefault("apiVersion", "v1")
    cfg.setdefault("kind", "Config")
    cfg.setdefault("preferences", {})
    for key, item in (("clusters", entry.cluster()), ("users", entry.user()),
                      ("contexts", entry.context_entry())):
        existing = cfg.get(key) or []
        if not isinstance(existing, list):
            raise KubeconfigError(f"The kubeconfig's {key} is not a list; fix the file first.")
        cfg[key] = _upsert(existing, item)
    if set_current or not cfg.get("current-context"):
        cfg["current-context"] = entry.context
    return cfg


def load(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise KubeconfigError(f"{path} is not valid YAML: {exc}") from exc
    if data is None:
        return None
    if not isinstance(data, dict):
        raise KubeconfigError(f"{path} is not a kubeconfig (expected a mapping).")
    return data


def dump(config: dict[str, Any]) -> str:
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(f".{path.name}.lock")
    with lock.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass
class Outcome:
    changed: bool
    before: str
    after: str


def ensure(path: str | Path, entry: Entry, *, set_current: bool = False,
           check_mode: bool = False) -> Outcome:
    """Add or refresh the entry; write only when the parsed content differs."""
    entry.check()
    target = Path(path).expanduser()
    with locked(target):
        current = load(target)
        wanted = merge(current, entry, set_current=set_current)
        before = dump(current) if current is not None else ""
        after = dump(wanted)
        if current == wanted:
            return Outcome(False, before, before)
        if not check_mode:
            atomic_write(target, after, mode=0o600)
        return Outcome(True, before, after)
