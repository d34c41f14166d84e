"""Drive the vault role's bootstrap tasks with ansible-playbook against a real OpenBao server.

The lab writes a tiny playbook that imports ``roles/vault`` ``tasks_from: bootstrap`` (the same
tasks apply mode runs), points the role at a local server with extra vars, and keeps the full
``-vvv`` output of every run so that a test can sweep it for secrets.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tai_deploy.vault_api import (
    VaultClient,
    create_orphan_token,
    generate_root,
    revoke_self,
)
from tai_deploy.vault_secrets import AnsibleVaultCipher, InitMaterial, load_material
from tai_deploy.vault_tls import ServerSpec, issue_server, new_ca

from helpers.ansible_run import REPO, PlaybookRun, run_playbook
from helpers.vault_server import BaoServer

PLAYBOOK = """\
---
- name: Initialise, unseal and configure a local Vault with the vault role
  hosts: localhost
  gather_facts: false
  vars_files: [{services}]
  tasks:
    - name: Run the bootstrap tasks of the vault role
      ansible.builtin.import_role:
        name: vault
        tasks_from: bootstrap
"""

# What the agents pre-populate (tai/<svc>/config), as an inventory's encrypted vars give it.
SERVICE_SECRETS = {"governor": {"api_key": "test-value"},
                   "coordinator": {"api_key": "coordinator-test-value"},
                   "scheduler": {"api_key": "scheduler-test-value"}}

# Tokens of OpenBao (s.<24>) and Vault (hvs.<...>, hvb.<...>).
TOKEN_PATTERN = re.compile(r"\b(?:s|hvs|hvb|hvr)\.[A-Za-z0-9_-]{20,}")


@dataclass
class Lab:
    root: Path
    server: BaoServer
    ca_cert: str
    password_file: Path
    outputs: list[str] = field(default_factory=list, repr=False)
    seen_secrets: list[str] = field(default_factory=list, repr=False)

    @property
    def init_file(self) -> Path:
        return self.root / "secrets" / "vault-init.yml"

    @property
    def cipher(self) -> AnsibleVaultCipher:
        return AnsibleVaultCipher.from_password_file(self.password_file)

    def material(self, path: Path | None = None) -> InitMaterial:
        material = load_material(path or self.init_file, self.cipher)
        assert material is not None
        return material

    def client(self, token: str | None = None) -> VaultClient:
        return VaultClient(self.server.addr, token=token, ca_cert=self.ca_cert)

    def extra_vars(self, **overrides: Any) -> dict[str, Any]:
        kube_ca = Path(self.ca_cert).read_text()
        data: dict[str, Any] = {
            "ansible_python_interpreter": sys.executable,
            "vault_access": "direct",
            "vault_api_addr": self.server.addr,
            "vault_init_file": str(self.init_file),
            "vault_api_ca_cert": self.ca_cert,
            # Outside a pod, Vault cannot read the service-account CA file: give it one.
            "vault_kubernetes_auth_config": {
                "kubernetes_host": "https://kubernetes.default.svc",
                "kubernetes_ca_cert": kube_ca,
            },
            # The server declares its file audit device here (BaoServer.audit_file).
            "vault_audit_file_path": str(self.server.audit_file or ""),
            "vault_service_secrets": SERVICE_SECRETS,
        }
        data.update(overrides)
        return data

    def run(self, *args: str, env: dict[str, str] | None = None, **overrides: Any
            ) -> PlaybookRun:
        """ansible-playbook -vvv of the bootstrap tasks; the output is kept for the sweep."""
        playbook = self.root / "bootstrap.yml"
        playbook.write_text(PLAYBOOK.format(services=REPO / "group_vars" / "all" / "services.yml"))
        vars_file = self.root / f"vars-{len(self.outputs)}.json"
        vars_file.write_text(json.dumps(self.extra_vars(**overrides)))
        run_env = {"ANSIBLE_VAULT_PASSWORD_FILE": str(self.password_file)}
        run_env.update(env or {})
        result = run_playbook("-i", "localhost,", "-c", "local", "-vvv", "-e", f"@{vars_file}",
                              *args, str(playbook), env=run_env)
        self.outputs.append(result.output)
        return result

    @contextmanager
    def root_session(self) -> Iterator[VaultClient]:
        """A short-lived token made from the stored shards (what the role does), revoked after."""
        material = self.material()
        root = generate_root(self.client(), material.keys, material.threshold)
        root_client = self.client(root)
        token = create_orphan_token(root_client, policies=["root"], ttl="5m",
                                    display_name="test")
        revoke_self(root_client)
        session = self.client(token)
        try:
            yield session
        finally:
            revoke_self(session)


def make_tls(folder: Path) -> tuple[str, str, str]:
    """CA, server certificate and key for 127.0.0.1, from the role's own TLS core."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    ca_key, ca_cert = new_ca("tai-deploy test CA", 2, now)
    key, cert = issue_server(ca_key, ca_cert,
                             ServerSpec("localhost", ("localhost",), ("127.0.0.1",), 2, 1), now)
    paths = folder / "ca.pem", folder / "server.pem", folder / "server-key.pem"
    for path, text in zip(paths, (ca_cert, cert, key), strict=True):
        path.write_text(text)
    paths[2].chmod(0o600)
    return str(paths[0]), str(paths[1]), str(paths[2])


def secret_strings(material: InitMaterial, extra: list[str] | None = None) -> list[str]:
    """Every form in which a shard or token could leak (base64 and hex shards, tokens)."""
    return sorted(set(material.secrets() + (extra or [])))


def sweep(texts: dict[str, str], secrets: list[str]) -> list[str]:
    """Names of the texts that contain a secret or something shaped like a Vault token."""
    found = []
    for name, text in texts.items():
        if any(s and s in text for s in secrets):
            found.append(f"{name}: holds a shard or token")
        elif TOKEN_PATTERN.search(text):
            found.append(f"{name}: holds a token-shaped string")
    return found


def readable_files(*roots: Path, skip: tuple[Path, ...] = ()) -> dict[str, str]:
    """Text of every file under roots, except under skip (a server's own encrypted storage)."""
    out: dict[str, str] = {}
    for root in roots:
        if not root.exists():
            continue
        for path in root.rglob("*"):
            if any(path.is_relative_to(s) for s in skip):
                continue
            if path.is_file():
                try:
                    out[str(path)] = path.read_text(errors="replace")
                except OSError:
                    continue
    return out


BUILD_DIR = REPO / "build"
