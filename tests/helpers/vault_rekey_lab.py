"""Shard rotation (vault_rekey) against a REAL OpenBao server: server, playbook runs, crashes.

* ``RekeyBaoServer`` is the lab's ``BaoServer`` with one more listener setting,
  ``disable_unauthed_rekey_endpoints = false``: OpenBao 2.5 and later disable the unauthenticated
  ``sys/rekey*`` endpoints by default (they offer authenticated ``sys/rotate/*`` ones instead);
  HashiCorp Vault, which the role deploys, serves them.
* ``run_rotation`` runs ``playbooks/vault-rotate-shards.yml`` with ``-vvv`` against the lab's
  server (the production inventory, one region, ``vault_access: direct``) and keeps the output
  for the secret sweep.
* ``crash_at`` runs a rotation in a child process that kills itself with SIGKILL right after a
  given step (no ``finally``, no cleanup: a real crash), for the resume tests. The same file is
  that child: ``python -m helpers.vault_rekey_lab crash STEP NODE INIT_FILE PASSWORD_FILE
  [CA_CERT]`` (with module_utils and tests on PYTHONPATH).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tai_deploy.vault_api import VaultClient, VaultError, seal_status, submit_unseal_keys

from helpers.ansible_run import REPO, PlaybookRun, run_playbook
from helpers.vault_lab import Lab
from helpers.vault_server import BaoServer

ROTATE_PLAYBOOK = REPO / "playbooks" / "vault-rotate-shards.yml"
REGION = "europe-west1"
_LISTENER_MARK = "  disable_unauthed_generate_root_endpoints = false\n"


class RekeyBaoServer(BaoServer):
    """BaoServer whose listener also serves the unauthenticated sys/rekey* endpoints."""

    def config_text(self) -> str:
        text = super().config_text()
        assert _LISTENER_MARK in text
        return text.replace(_LISTENER_MARK,
                            _LISTENER_MARK + "  disable_unauthed_rekey_endpoints = false\n")


def run_rotation(lab: Lab, *args: str, build_root: Path, env: dict[str, str] | None = None,
                 limit: str | None = REGION, **overrides: Any) -> PlaybookRun:
    """ansible-playbook -vvv playbooks/vault-rotate-shards.yml; the output is kept in lab."""
    vars_file = lab.root / f"rotate-vars-{len(lab.outputs)}.json"
    data = lab.extra_vars(**overrides)
    data.pop("vault_kubernetes_auth_config", None)
    vars_file.write_text(json.dumps(data))
    run_env = {"ANSIBLE_VAULT_PASSWORD_FILE": str(lab.password_file),
               "TAI_BUILD_ROOT": str(build_root)}
    run_env.update(env or {})
    cli = ["-vvv", "-e", f"@{vars_file}", *args]
    if limit:
        cli += ["-l", limit]
    result = run_playbook(*cli, str(ROTATE_PLAYBOOK), env=run_env)
    lab.outputs.append(result.output)
    return result


def crash_at(step: str, node: str, init_file: Path, password_file: Path,
             ca_cert: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a rotation in a child process that is SIGKILLed right after step."""
    cmd = [sys.executable, "-m", "helpers.vault_rekey_lab", "crash", step, node,
           str(init_file), str(password_file)]
    if ca_cert:
        cmd.append(ca_cert)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "module_utils"), str(REPO / "tests")])
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False,
                          env=env, cwd=REPO)


def unseals(server: BaoServer, keys: list[str] | tuple[str, ...], threshold: int,
            ca_cert: str | None = None) -> bool:
    """Whether these shards unseal the (sealed) server; a refusal resets its progress."""
    client = VaultClient(server.addr, ca_cert=ca_cert)
    try:
        status = submit_unseal_keys(client, keys, threshold)
    except VaultError:
        return False
    return not status.sealed or not seal_status(client).sealed


def _crash_child(argv: list[str]) -> int:
    from tai_deploy.vault_bootstrap import Connector
    from tai_deploy.vault_rekey import rotate_shards
    from tai_deploy.vault_secrets import AnsibleVaultCipher

    step, node, init_file, password_file = argv[:4]
    ca_cert = argv[4] if len(argv) > 4 else None

    def on_step(name: str) -> None:
        if name == step:
            os.kill(os.getpid(), signal.SIGKILL)

    rotate_shards(node, init_file=init_file,
                  cipher=AnsibleVaultCipher.from_password_file(password_file),
                  connector=Connector(ca_cert=ca_cert), on_step=on_step)
    print("completed without reaching step", step)
    return 3


if __name__ == "__main__":
    if len(sys.argv) < 6 or sys.argv[1] != "crash":
        sys.exit("usage: python -m helpers.vault_rekey_lab crash STEP NODE INIT_FILE "
                 "PASSWORD_FILE [CA_CERT]")
    sys.exit(_crash_child(sys.argv[2:]))
