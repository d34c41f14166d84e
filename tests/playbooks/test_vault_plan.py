"""The vault role in plan mode: what it renders under build/<region>/vault/, and bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers.ansible_run import REPO, run_playbook
from helpers.chart_render import checkov

pytestmark = pytest.mark.playbook

PLAYBOOK = """\
---
- name: Plan Vault for europe-west1 with each seal
  hosts: europe-west1
  gather_facts: false
  vars_files:
    - {repo}/group_vars/all/versions.yml
    - {repo}/group_vars/all/services.yml
  vars:
    tai_project_root: {repo}
  tasks:
    - name: Plan with the defaults (Cloud KMS auto-unseal)
      ansible.builtin.include_role:
        name: vault
      vars:
        tai_build_dir: {build}/kms
    - name: Plan with Shamir unseal shards and five servers
      ansible.builtin.include_role:
        name: vault
      vars:
        tai_build_dir: {build}/shamir
        vault_seal_type: shamir
        vault_replicas: 5
        # A payload of newline, colon, braces and quotes in string inputs: it must
        # come out as one string value, never as structure.
        vault_storage_class: "{payload}"
        vault_audit_file_path: "/vault/audit/{payload}"
"""
PAYLOAD = 'x\\n- y: {z: [1]}\\"} #'  # as written in a YAML double-quoted string
PAYLOAD_VALUE = 'x\n- y: {z: [1]}"} #'


def _plan(tmp_path: Path, *extra: str) -> tuple[int, str]:
    playbook = tmp_path / "plan.yml"
    playbook.write_text(PLAYBOOK.format(repo=REPO, build=tmp_path / "build", payload=PAYLOAD))
    run = run_playbook("-l", "europe-west1", *extra, str(playbook))
    return run.returncode, run.output


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("vault-plan")
    code, output = _plan(tmp_path)
    assert code == 0, output[-3000:]
    return tmp_path / "build"


def _values(build: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((build / "vault/values/vault.yaml").read_text())
    return data


def test_release_is_pinned_ha_raft_with_injector_tls_pdb_and_spread(planned: Path) -> None:
    release = yaml.safe_load((planned / "kms/vault/releases/vault.yaml").read_text())
    assert release == {"name": "vault", "namespace": "vault", "chart": "vault",
                       "repository": "https://helm.releases.hashicorp.com",
                       "version": release["version"], "values_file": "values/vault.yaml"}
    values = _values(planned / "kms")
    server = values["server"]
    assert values["global"]["tlsDisable"] is False
    assert server["ha"]["enabled"] and server["ha"]["replicas"] == 3
    assert server["ha"]["raft"]["enabled"] and server["ha"]["raft"]["setNodeId"]
    assert server["ha"]["disruptionBudget"] == {"enabled": True, "maxUnavailable": 1}
    anti = server["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["topologyKey"] == "kubernetes.io/hostname"
    assert server["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    assert values["injector"]["enabled"] and values["injector"]["replicas"] == 2
    assert values["injector"]["podDisruptionBudget"] == {"maxUnavailable": 1}
    assert values["injector"]["webhook"]["namespaceSelector"]["matchExpressions"][0][
        "values"] == ["tai-system"]
    for security in (server["statefulSet"]["securityContext"],
                     values["injector"]["securityContext"]):
        assert security["pod"]["runAsNonRoot"] is True
        assert security["pod"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert security["container"] == {"allowPrivilegeEscalation": False,
                                          "capabilities": {"drop": ["ALL"]}}
    config = server["ha"]["raft"]["config"]
    assert 'tls_cert_file   = "/vault/userconfig/vault-tls/tls.crt"' in config
    assert "unauthenticated_metrics_access = true" in config
    assert config.count("retry_join {") == 3
    assert 'seal "gcpckms"' in config and 'key_ring   = "vault-production"' in config
    # The file audit device on the audit volume, declared for OpenBao (Vault enables it at init).
    assert ('audit "file" "file" {\n  options {\n    file_path = "/vault/audit/audit.log"\n'
            "  }\n}") in config
    assert server["auditStorage"]["enabled"]
    assert server["serviceAccount"]["annotations"] == {
        "iam.gke.io/gcp-service-account": "vault-server@tai-production.iam.gserviceaccount.com"}
    monitor = values["serverTelemetry"]["serviceMonitor"]
    assert monitor["enabled"] and monitor["selectors"] == {"release": "kube-prometheus-stack"}
    rules = values["serverTelemetry"]["prometheusRules"]["rules"]
    assert rules[0]["expr"] == "vault_core_unsealed == 0"
    assert "{{ $labels.pod }}" in rules[0]["annotations"]["summary"]


def test_bootstrap_and_configuration_are_planned_without_secrets(planned: Path) -> None:
    boot = json.loads((planned / "kms/vault/bootstrap.json").read_text())
    assert boot["seal_type"] == "gcpckms" and boot["key_kind"] == "recovery"
    assert (boot["key_shares"], boot["key_threshold"]) == (5, 3)
    assert boot["nodes"] == ["pod/vault-0", "pod/vault-1", "pod/vault-2"]
    assert "vault.vault.svc" in boot["tls"]["dns_names"]
    assert "vault-2.vault-internal" in boot["tls"]["dns_names"]
    assert boot["tls"]["ip_addresses"] == ["127.0.0.1"]
    config = json.loads((planned / "kms/vault/configuration.json").read_text())
    assert config["secrets_engines"][0]["path"] == "tai"
    assert config["secrets_engines"][0]["options"] == {"version": "2"}
    policies = {p["name"]: p["policy"] for p in config["policies"]}
    assert sorted(policies) == ["keda-redis", "tai-coordinator", "tai-governor", "tai-redis",
                                "tai-redis-cluster-admin", "tai-redis-snapshot",
                                "tai-scheduler", "vault-snapshot"]
    # KEDA's operator reads the password of the Redis user keda, nothing else.
    assert policies["keda-redis"].count("path ") == 1
    assert 'path "tai/data/redis/keda" {\n  capabilities = ["read"]' in policies["keda-redis"]
    keda = next(e for e in config["endpoints"]
                if e["path"] == "auth/kubernetes/role/keda-redis")["data"]
    assert keda["bound_service_account_names"] == ["keda-operator"]
    assert keda["bound_service_account_namespaces"] == ["keda"]
    assert keda["token_policies"] == ["keda-redis"]
    # only tokens for Vault: KEDA logs in with a projected token of audience vault (the
    # autoscaling role's KEDA release), never with a token the API server accepts
    assert keda["audience"] == "vault"
    for svc in ("governor", "coordinator", "scheduler"):
        # Each service reads its own secrets and its own Redis password, nothing else.
        assert policies[f"tai-{svc}"].count("path ") == 2
        assert f'path "tai/data/{svc}/*" {{\n  capabilities = ["read"]\n}}' in policies[
            f"tai-{svc}"]
        assert f'path "tai/data/redis/{svc}" {{\n  capabilities = ["read"]\n}}' in policies[
            f"tai-{svc}"]
        role = next(e for e in config["endpoints"]
                    if e["path"] == f"auth/kubernetes/role/tai-{svc}")
        assert role["data"]["bound_service_account_names"] == [svc]
        assert role["data"]["bound_service_account_namespaces"] == ["tai-system"]
        assert role["data"]["token_policies"] == [f"tai-{svc}"]
    # The agents' secrets appear by path only (no inventory secrets in this plan: no fields).
    assert config["kv_secrets"] == [{"mount": "tai", "path": f"{s}/config", "fields": []}
                                    for s in ("governor", "coordinator", "scheduler")]
    # Every Redis ACL user of the chart gets a password generated by apply where Vault has
    # none: the plan names the path and the key, never a value.
    chart = yaml.safe_load((REPO / "charts/tai-chart/values.yaml").read_text())
    users = list(chart["redis"]["auth"]["users"])
    assert config["generated_secrets"] == [
        {"mount": "tai", "path": f"redis/{u}", "field": "password", "length": 40}
        for u in users]
    assert chart["redis"]["auth"]["vaultPath"] == "tai/data/redis"
    assert config["audit_devices"] == [{"path": "file", "type": "file",
                                        "options": {"file_path": "/vault/audit/audit.log"}}]
    assert config["controller"]["auth_path"] == "tai-deploy"
    assert boot["custody"] == "file" and boot["holders"] == []
    redis = next(e for e in config["endpoints"] if e["path"] == "auth/kubernetes/role/tai-redis")
    assert redis["data"]["audience"] == "vault"
    assert redis["data"]["bound_service_account_names"] == ["redis"]
    files = sorted(str(p.relative_to(planned / "kms/vault"))
                   for p in (planned / "kms/vault").rglob("*") if p.is_file())
    assert files == ["bootstrap.json", "configuration.json",
                     "manifests/vault/configmap-vault-snapshot-code.yaml",
                     "manifests/vault/cronjob-vault-snapshot.yaml",
                     "manifests/vault/serviceaccount-vault-snapshot.yaml",
                     "releases/vault.yaml", "values/vault.yaml"]
    snapshot = next(e for e in config["endpoints"]
                    if e["path"] == "auth/kubernetes/role/vault-snapshot")
    assert snapshot["data"]["bound_service_account_names"] == ["vault-snapshot"]
    assert snapshot["data"]["bound_service_account_namespaces"] == ["vault"]
    assert snapshot["data"]["token_policies"] == ["vault-snapshot"]
    policy = next(p for p in config["policies"] if p["name"] == "vault-snapshot")["policy"]
    assert policy.count("path ") == 1
    assert 'path "sys/storage/raft/snapshot" {\n  capabilities = ["read"]' in policy


def test_snapshot_cronjob_is_restricted_pinned_and_uses_workload_identity(planned: Path) -> None:
    folder = planned / "kms/vault/manifests/vault"
    account = yaml.safe_load((folder / "serviceaccount-vault-snapshot.yaml").read_text())
    assert account["metadata"]["annotations"] == {
        "iam.gke.io/gcp-service-account": "vault-backup@tai-production.iam.gserviceaccount.com"}
    cron = yaml.safe_load((folder / "cronjob-vault-snapshot.yaml").read_text())
    assert cron["spec"]["concurrencyPolicy"] == "Forbid" and cron["spec"]["suspend"] is False
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "vault-snapshot"
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["image"] == "python:3.13.9-alpine3.22@sha256:" + "0" * 64
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["TAI_BACKUP_BUCKET"] == "tai-tai-production-europe-west1-backups"
    assert env["VAULT_ADDR"] == "https://vault-active.vault.svc:8200"
    code = yaml.safe_load((folder / "configmap-vault-snapshot-code.yaml").read_text())["data"]
    for name in ("backup_store.py", "vault_snapshot.py", "backup_job.py"):
        assert code[name] == (REPO / "module_utils/tai_deploy" / name).read_text()
    ingress = _values(planned / "kms")["server"]["networkPolicy"]["ingress"]
    snapshot_pods = {"matchLabels": {"app.kubernetes.io/name": "vault-snapshot"}}
    assert {"from": [{"podSelector": snapshot_pods}],
            "ports": [{"port": 8200, "protocol": "TCP"}]} in ingress


def test_shamir_plan_has_no_kms_seal_and_scales_the_raft_peers(planned: Path) -> None:
    values = _values(planned / "shamir")
    config = values["server"]["ha"]["raft"]["config"]
    assert "seal " not in config and config.count("retry_join {") == 5
    assert values["server"]["serviceAccount"]["annotations"] == {}
    boot = json.loads((planned / "shamir/vault/bootstrap.json").read_text())
    assert boot["key_kind"] == "unseal" and len(boot["nodes"]) == 5


def test_string_inputs_stay_string_values(planned: Path) -> None:
    values = _values(planned / "shamir")
    assert values["server"]["dataStorage"]["storageClass"] == PAYLOAD_VALUE
    assert values["server"]["auditStorage"]["storageClass"] == PAYLOAD_VALUE
    config = json.loads((planned / "shamir/vault/configuration.json").read_text())
    assert config["audit_devices"][0]["options"]["file_path"] == f"/vault/audit/{PAYLOAD_VALUE}"
    # In the server's HCL the payload is one escaped string: no new block, no new line.
    hcl = values["server"]["ha"]["raft"]["config"]
    audit = hcl[hcl.index('audit "file"'):]
    assert audit.count("\n") == 5 and '\\n- y: {z: [1]}\\"} #' in audit


def test_bad_input_stops_the_plan_with_one_sentence_per_problem(tmp_path: Path) -> None:
    code, output = _plan(tmp_path, "-e", "vault_replicas=4", "-e", "vault_key_threshold=6",
                         "-e", '{"vault_kubernetes_roles": {"x": {"token_policies": ["nope"]}}}')
    assert code != 0
    flat = " ".join(output.split())
    assert "vault_replicas is 4 in europe-west1; raft needs an odd number of servers" in flat
    assert "vault_key_threshold (6) must be between 1 and vault_key_shares (5)." in flat
    assert "Kubernetes auth role x grants policy nope, which neither vault_default_policies " \
           "nor vault_policies defines." in flat
    assert "Kubernetes auth role x must bind bound_service_account_names" in flat
    assert "Traceback" not in output


def test_redis_users_and_password_length_are_checked(tmp_path: Path) -> None:
    code, output = _plan(tmp_path, "-e", '{"vault_redis_users": ["coordinator", "scheduler"]}',
                         "-e", "vault_redis_password_length=12")
    assert code != 0
    flat = " ".join(output.split())
    assert ("vault_redis_users of europe-west1 lacks governor; each service logs in to Redis "
            "as the user of its name, and its pods do not start without that user's "
            "password.") in flat
    assert ("vault_redis_password_length of europe-west1 is 12; it must be a whole number "
            "from 24 to 256.") in flat
    assert "Traceback" not in output


def test_checkov_passes_every_planned_manifest(planned: Path) -> None:
    """checkov over every manifest of the vault plan (the snapshot CronJob and its policies);
    a skip must say why."""
    manifests = sorted(planned.rglob("manifests"))
    assert manifests
    report = checkov(planned)
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == []
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] > 0
    for check in report["results"]["skipped_checks"]:
        reason = check["check_result"].get("suppress_comment") or ""
        assert len(reason.split()) >= 8, (check["check_id"], check["resource"], reason)
