"""The vault role's init, unseal and configuration, through ansible-playbook, on a real server.

One OpenBao server (TLS, raft, Shamir seal) serves the whole module; the tests run in order
and each starts from the state the previous one left:

1. fresh server -> init + unseal; 2. configure (policy, role, KV mount; root token revoked);
3. rerun -> changed=0; 4. drift -> check mode reports it, a run repairs it; 5. the same through
kubectl port-forward (a kubectl test double relays to the real server); 6. restart -> sealed ->
unsealed with the stored shards, data intact; 7-10. missing file, wrong shard, wrong password,
re-init refused: one clear sentence, nothing changed; 11. no shard or token anywhere in the -vvv
output of all runs nor in build/.
"""

from __future__ import annotations

import base64
import os
import secrets
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.vault_lab import (
    BUILD_DIR,
    Lab,
    make_tls,
    readable_files,
    secret_strings,
    sweep,
)
from helpers.vault_server import BaoServer
from tai_deploy.vault_api import VaultClient, seal_status, token_is_valid
from tai_deploy.vault_secrets import InitMaterial, save_material

pytestmark = [pytest.mark.playbook, pytest.mark.xdist_group("vault_bootstrap")]

HELPERS = Path(__file__).parents[1] / "helpers"
POLICY_MARK = 'path "tai/data/governor/*"'


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("vault-lab")
    ca, cert, key = make_tls(root / "tls")
    server = BaoServer(root / "server", tls_cert=cert, tls_key=key,
                       audit_file=root / "audit.log")
    server.start()
    password = root / "vault-password"
    password.write_text(secrets.token_urlsafe(24) + "\n")
    password.chmod(0o600)
    try:
        yield Lab(root, server, ca, password)
    finally:
        server.stop()


def _changed(run_output: str, recap: dict[str, int]) -> int:
    assert recap["failed"] == 0, run_output[-3000:]
    return recap["changed"]


def _fatal_message(output: str) -> str:
    """The failed task's report, whitespace collapsed (the YAML callback wraps long lines)."""
    start = output.find("fatal: [")
    assert start >= 0, output[-3000:]
    end = output.find("PLAY RECAP", start)
    return " ".join(output[start:end].split())


def test_1_fresh_server_is_initialised_and_unsealed(lab: Lab) -> None:
    assert not seal_status(lab.client()).initialized
    run = lab.run("--tags", "vault_unseal")
    assert _changed(run.output, run.recap("localhost")) == 1
    blob = lab.init_file.read_bytes()
    assert blob.startswith(b"$ANSIBLE_VAULT;1.1;AES256\n")
    assert stat.S_IMODE(lab.init_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(lab.init_file.parent.stat().st_mode) == 0o700
    material = lab.material()
    lab.seen_secrets += material.secrets()
    assert (material.key_type, material.shares, material.threshold) == ("unseal", 5, 3)
    assert len(material.keys) == 5 and material.root_token
    assert not any(key.encode() in blob for key in material.keys)
    status = seal_status(lab.client())
    assert status.initialized and not status.sealed


def test_2_configure_creates_policy_role_and_mount_and_revokes_root(lab: Lab) -> None:
    root = lab.material().root_token
    assert root and token_is_valid(lab.client(root))
    run = lab.run()
    assert _changed(run.output, run.recap("localhost")) == 1
    assert lab.material().root_token is None, "the initial root token must leave the file"
    assert not token_is_valid(lab.client(root)), "the initial root token must be revoked"
    assert lab.material().controller is not None, "the controller identity must be stored"
    with lab.root_session() as vault:
        auth = vault.request("GET", "sys/auth") or {}
        assert auth["data"]["kubernetes/"]["type"] == "kubernetes"
        mounts = vault.request("GET", "sys/mounts") or {}
        assert mounts["data"]["tai/"]["type"] == "kv"
        assert mounts["data"]["tai/"]["options"] == {"version": "2"}
        policy = (vault.request("GET", "sys/policies/acl/tai-governor") or {})["data"]["policy"]
        assert POLICY_MARK in policy and 'capabilities = ["read"]' in policy
        role = (vault.request("GET", "auth/kubernetes/role/tai-governor") or {})["data"]
        assert role["bound_service_account_names"] == ["governor"]
        assert role["bound_service_account_namespaces"] == ["tai-system"]
        assert role["token_policies"] == ["tai-governor"]
        assert (role["token_ttl"], role["token_max_ttl"]) == (3600, 14400)
        config = (vault.request("GET", "auth/kubernetes/config") or {})["data"]
        assert config["kubernetes_host"] == "https://kubernetes.default.svc"
        # The role wrote what the agent pre-populates, and the policy works as the service's
        # tokens will: a tai-governor token reads governor's secrets and nothing else.
        created = vault.request("POST", "auth/token/create",
                                {"policies": ["tai-governor"], "no_default_policy": True,
                                 "ttl": "2m"}) or {}
        app = lab.client(created["auth"]["client_token"])
        read = app.request("GET", "tai/data/governor/config") or {}
        assert read["data"]["data"] == {"api_key": "test-value"}
        assert app.call("POST", "tai/data/governor/config", {"data": {"x": "y"}})[0] == 403
        assert app.call("GET", "tai/data/coordinator/config")[0] == 403
        assert app.call("GET", "sys/mounts")[0] == 403


def test_3_rerun_reports_no_change(lab: Lab) -> None:
    run = lab.run()
    assert _changed(run.output, run.recap("localhost")) == 0


def test_4_drift_is_reported_in_check_mode_and_repaired(lab: Lab) -> None:
    with lab.root_session() as vault:
        vault.request("PUT", "sys/policies/acl/tai-governor",
                      {"policy": 'path "tai/data/*" { capabilities = ["read", "list"] }'})
        vault.request("POST", "auth/kubernetes/role/tai-governor", {"token_ttl": 60})
    check = lab.run("--check", "--diff")
    assert _changed(check.output, check.recap("localhost")) == 1
    assert '"list"' in check.output and "policy tai-governor" in check.output  # the diff
    with lab.root_session() as vault:
        drifted = (vault.request("GET", "sys/policies/acl/tai-governor") or {})["data"][
            "policy"]
    assert '"list"' in drifted, "check mode must not write"
    run = lab.run()
    assert _changed(run.output, run.recap("localhost")) == 1
    with lab.root_session() as vault:
        policy = (vault.request("GET", "sys/policies/acl/tai-governor") or {})["data"]["policy"]
        role = (vault.request("GET", "auth/kubernetes/role/tai-governor") or {})["data"]
    assert '"list"' not in policy and role["token_ttl"] == 3600


def test_5_port_forward_access_reaches_the_pods(lab: Lab) -> None:
    kubectl = lab.root / "kubectl"
    kubectl.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{HELPERS / "vault_fake_kubectl.py"}"'
                       ' "$@"\n')
    kubectl.chmod(0o755)
    log = lab.root / "kubectl.log"
    run = lab.run(
        env={"FAKE_KUBECTL_UPSTREAM": f"127.0.0.1:{lab.server.api_port}",
             "FAKE_KUBECTL_LOG": str(log)},
        vault_access="port-forward", vault_replicas=1, tai_kubectl_binary=str(kubectl),
        tai_kube_context="gke_tai-test_europe-west1_tai-cluster")
    assert _changed(run.output, run.recap("localhost")) == 0
    calls = log.read_text().splitlines()
    assert len(calls) == 3  # unseal: first node read + visit; configure: one node
    assert all("--context gke_tai-test_europe-west1_tai-cluster --namespace vault port-forward "
               "pod/vault-0 :8200" in call for call in calls)
    failed = lab.run(env={"FAKE_KUBECTL_UPSTREAM": "127.0.0.1:1"},
                     vault_access="port-forward", vault_replicas=1,
                     tai_kubectl_binary=str(kubectl), vault_release_name="vault-missing")
    assert failed.returncode != 0
    assert "kubectl port-forward to pod/vault-missing-0 in namespace vault failed: error: " \
           "unable to forward port because pod is not running" in failed.output
    assert "Traceback" not in failed.output


def test_6_restarted_server_is_unsealed_with_the_stored_shards_and_data_intact(lab: Lab
                                                                             ) -> None:
    lab.server.restart()
    assert seal_status(lab.client()).sealed
    run = lab.run()
    assert _changed(run.output, run.recap("localhost")) == 1  # unseal only; config intact
    assert not seal_status(lab.client()).sealed
    with lab.root_session() as vault:
        secret = vault.request("GET", "tai/data/governor/config") or {}
        assert secret["data"]["data"] == {"api_key": "test-value"}
        policy = (vault.request("GET", "sys/policies/acl/tai-governor") or {})["data"]["policy"]
        assert POLICY_MARK in policy


def test_7_missing_init_file_fails_with_one_sentence_and_changes_nothing(lab: Lab) -> None:
    lab.server.restart()
    missing = lab.root / "elsewhere" / "vault-init.yml"
    run = lab.run(vault_init_file=str(missing))
    assert run.returncode != 0
    message = _fatal_message(run.output)
    assert "is initialised but the init material file" in message
    assert "does not exist; restore it from its backup" in message
    assert "Traceback" not in run.output
    status = seal_status(lab.client())
    assert status.sealed and status.progress == 0
    assert not missing.parent.exists()


def test_8_wrong_shard_fails_resets_progress_and_changes_nothing(lab: Lab) -> None:
    good = lab.material()
    keys = list(good.keys)
    keys[1] = base64.b64encode(os.urandom(len(base64.b64decode(keys[1])))).decode()
    lab.seen_secrets.append(keys[1])
    bad_file = lab.root / "bad" / "vault-init.yml"
    save_material(bad_file, InitMaterial(good.key_type, good.shares, good.threshold,
                                         tuple(keys)), lab.cipher)
    before = bad_file.read_bytes()
    # Someone else's half-finished unseal: the role must reset it, not build on it.
    lab.client().request("PUT", "sys/unseal", {"key": good.keys[0]})
    assert seal_status(lab.client()).progress == 1
    run = lab.run(vault_init_file=str(bad_file))
    assert run.returncode != 0
    message = _fatal_message(run.output)
    assert "the stored shards do not unseal Vault at" in message
    assert "its unseal progress was reset and nothing else was changed" in message
    assert "Traceback" not in run.output
    status = seal_status(lab.client())
    assert status.sealed and status.progress == 0
    assert bad_file.read_bytes() == before
    repaired = lab.run("--tags", "vault_unseal")
    assert _changed(repaired.output, repaired.recap("localhost")) == 1
    assert not seal_status(lab.client()).sealed


def test_9_wrong_password_fails_with_one_sentence(lab: Lab) -> None:
    other = lab.root / "other-password"
    other.write_text("not-the-password\n")
    run = lab.run(env={"ANSIBLE_VAULT_PASSWORD_FILE": str(other)})
    assert run.returncode != 0
    assert "cannot decrypt" in _fatal_message(run.output)
    assert "with the given vault password file (wrong password?)" in run.output
    assert "Traceback" not in run.output
    assert not seal_status(lab.client()).sealed


def test_10_uninitialised_server_with_existing_material_is_not_initialised(
        lab: Lab, tmp_path: Path) -> None:
    fresh = BaoServer(tmp_path / "fresh")
    fresh.start()
    try:
        run = lab.run(vault_api_addr=fresh.addr, vault_api_ca_cert="")
        assert run.returncode != 0
        message = _fatal_message(run.output)
        assert "is not initialised but" in message
        assert "already holds init material; refusing to initialise again" in message
        assert not seal_status(VaultClient(fresh.addr)).initialized
    finally:
        fresh.stop()
    lab.outputs.append("")  # keep the index of outputs stable for debugging


def test_11_no_shard_or_token_in_any_output_or_in_build(lab: Lab) -> None:
    assert len([o for o in lab.outputs if o]) >= 11
    # -vv and more print each task's path (the in-process plan modules open no connection,
    # so a run refused before a module process starts shows no ESTABLISH line).
    assert all("task path: " in o for o in lab.outputs if o), \
        "the sweep must cover -vvv output"
    assert all("Traceback" not in o for o in lab.outputs)
    material = lab.material()
    generated = [s for s in lab.seen_secrets if s not in material.secrets()]
    secrets_ = secret_strings(material, generated)
    assert len(secrets_) >= 11
    texts = {f"ansible-playbook run {i}": out for i, out in enumerate(lab.outputs)}
    texts |= readable_files(BUILD_DIR, lab.root, skip=(lab.server.workdir,))
    assert sweep(texts, secrets_) == []


def test_sweep_catches_a_leak() -> None:
    """The sweep itself finds shards and token-shaped strings (so a green sweep means something)."""
    material = InitMaterial("unseal", 1, 1, (base64.b64encode(b"k" * 33).decode(),), "s.abc")
    leaks = {"shard": f"x {material.keys[0]} y", "hex": material.secrets()[1],
             "token": "X-Vault-Token: s.ABCDEFGHIJKLMNOPQRSTUVWX", "clean": "nothing here"}
    assert sweep(leaks, secret_strings(material)) == [
        "shard: holds a shard or token", "hex: holds a shard or token",
        "token: holds a token-shaped string"]

