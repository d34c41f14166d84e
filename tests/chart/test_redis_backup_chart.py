"""The TAI chart's Redis snapshot CronJob: rendered only when enabled with a bucket, strict-valid
Kubernetes, restricted, its own service account with workload identity, and the job's code is
the project's core byte for byte (the chart links it under backup/)."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
from helpers.chart_render import KUBE_VERSION, REPO, by_kind, checkov, render, write_manifests

BACKUP = {"region": "europe-west1", "redis": {"backup": {
    "enabled": True, "bucket": "tai-tai-production-europe-west1-backups",
    "gcpServiceAccount": "redis-backup@tai-production.iam.gserviceaccount.com"}}}


def test_disabled_by_default_and_refused_without_a_bucket() -> None:
    plain = render("europe-west1")
    assert plain.returncode == 0, plain.stderr
    assert "redis-snapshot" not in by_kind(plain.objects, "CronJob")
    missing = render("europe-west1", {"redis": {"backup": {"enabled": True}}})
    assert missing.returncode != 0
    assert "redis.backup.bucket: the backup bucket is required" in missing.stderr


def test_cronjob_is_valid_restricted_and_uses_workload_identity(tmp_path: Path) -> None:
    out = render("europe-west1", BACKUP)
    assert out.returncode == 0, out.stderr
    objects = out.objects
    cron = by_kind(objects, "CronJob")["redis-snapshot"]
    account = by_kind(objects, "ServiceAccount")["redis-snapshot"]
    code = by_kind(objects, "ConfigMap")["redis-snapshot-code"]
    for obj in (cron, account, code, by_kind(objects, "NetworkPolicy")["redis-snapshot"]):
        kubernetes_validate.validate(obj, f"{KUBE_VERSION}.0", strict=True)
    assert account["metadata"]["annotations"] == {
        "iam.gke.io/gcp-service-account": "redis-backup@tai-production.iam.gserviceaccount.com"}
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "redis-snapshot"
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["image"] == "python:3.13.9-alpine3.22@sha256:" + "0" * 64
    assert container["command"] == ["python3", "-m", "tai_deploy.backup_job", "redis"]
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] and context["capabilities"] == {"drop": ["ALL"]}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["TAI_BACKUP_BUCKET"] == "tai-tai-production-europe-west1-backups"
    assert env["REDIS_NODES"].split()[0] == "redis-0.redis.tai-system.svc.cluster.local:6379"
    for name in ("backup_store.py", "redis_snapshot.py", "backup_job.py"):
        assert code["data"][name] == (REPO / "module_utils/tai_deploy" / name).read_text().rstrip(
            "\n")
    redis_ingress = by_kind(objects, "NetworkPolicy")["redis"]["spec"]["ingress"][0]
    assert "redis-snapshot" in redis_ingress["from"][0]["podSelector"]["matchExpressions"][0][
        "values"]
    # Its 443 egress is Google's public addresses only: no address of the VPC (the job runs
    # outside the mesh, so this NetworkPolicy is its only fence).
    https = [rule for rule in by_kind(objects, "NetworkPolicy")["redis-snapshot"]["spec"][
        "egress"] if rule["ports"] == [{"protocol": "TCP", "port": 443}]]
    assert [peer["ipBlock"] for rule in https for peer in rule["to"]] == [
        {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]}]
    write_manifests([cron], tmp_path / "m")
    report = checkov(tmp_path / "m")
    failed = sorted({c["check_id"] for c in report.get("results", {}).get("failed_checks", [])})
    print("checkov findings on the CronJob:", failed)
    assert "CKV_K8S_20" not in failed     # allowPrivilegeEscalation
    assert "CKV_K8S_23" not in failed     # admission of root containers


@pytest.mark.parametrize("name", ["backup_store.py", "redis_snapshot.py", "rdb_check.py",
                                  "backup_job.py"])
def test_the_chart_links_the_core_instead_of_copying_it(name: str) -> None:
    link = REPO / "charts/tai-chart/backup" / name
    assert link.is_symlink()
    assert link.resolve() == (REPO / "module_utils/tai_deploy" / name).resolve()
