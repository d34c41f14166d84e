"""autoscaling role: one HPA or ScaledObject per blue-green slot Deployment, KEDA pinned."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers.ansible_run import BIN, REPO, run_playbook
from helpers.platform_plan import REGIONS, host_failure, render, variant
from tai_deploy import crd_schemas

pytestmark = pytest.mark.playbook

TARGET = re.compile(r"^(governor|coordinator|scheduler)-(blue|green)$")
TRIGGERS = {"cpu", "prometheus", "redis-cluster"}


def autoscalers(plan_region: tuple[Any, str]) -> dict[str, dict[str, Any]]:
    plan, region = plan_region
    return {f"{o['kind']}/{o['metadata']['name']}": o
            for o in plan.manifests(region, "autoscaling")
            if o["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")}


def trigger_authentications(plan_region: tuple[Any, str]) -> dict[str, dict[str, Any]]:
    plan, region = plan_region
    return {o["metadata"]["name"]: o for o in plan.manifests(region, "autoscaling")
            if o["kind"] == "TriggerAuthentication"}


def check_structure(obj: dict[str, Any]) -> None:
    """Structural checks of an HPA or a KEDA ScaledObject (the CRD has no offline schema)."""
    meta = obj["metadata"]
    assert meta["namespace"] == "tai-system"
    ref = obj["spec"]["scaleTargetRef"]
    assert ref["apiVersion"] == "apps/v1" and ref["kind"] == "Deployment"
    assert TARGET.match(ref["name"]), ref["name"]
    assert meta["name"] == ref["name"]
    service, slot = ref["name"].split("-")
    assert meta["labels"]["app"] == service and meta["labels"]["slot"] == slot
    assert meta["labels"]["app.kubernetes.io/component"] == "autoscaling"
    spec = obj["spec"]
    if obj["kind"] == "HorizontalPodAutoscaler":
        assert obj["apiVersion"] == "autoscaling/v2"
        assert 1 <= spec["minReplicas"] <= spec["maxReplicas"]
        return
    assert obj["apiVersion"] == "keda.sh/v1alpha1" and obj["kind"] == "ScaledObject"
    assert set(spec) <= {"scaleTargetRef", "minReplicaCount", "maxReplicaCount",
                         "pollingInterval", "cooldownPeriod", "advanced", "triggers"}
    assert isinstance(spec["minReplicaCount"], int) and isinstance(spec["maxReplicaCount"], int)
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["name"] == f"keda-hpa-{meta['name']}"
    assert spec["triggers"]
    for trig in spec["triggers"]:
        assert trig["type"] in TRIGGERS
        # KEDA reads trigger metadata as strings.
        assert all(isinstance(v, str) for v in trig["metadata"].values()), trig
        if trig["type"] == "cpu":
            assert trig["metricType"] == "Utilization"
            assert set(trig["metadata"]) == {"value"}
        elif trig["type"] == "prometheus":
            assert set(trig["metadata"]) == {"serverAddress", "query", "threshold"}
            assert trig["metadata"]["serverAddress"] == (
                "http://kube-prometheus-stack-prometheus.monitoring.svc:9090")
            assert f'slot="{slot}"' in trig["metadata"]["query"]
            assert f'service="{service}"' in trig["metadata"]["query"]
        else:
            assert set(trig["metadata"]) == {"addresses", "listName", "listLength", "username",
                                             "enableTLS"}
            assert trig["metadata"]["enableTLS"] == "true"
            assert trig["authenticationRef"] == {"name": "keda-redis"}


def owners(objs: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for ref, obj in objs.items():
        out.setdefault(obj["spec"]["scaleTargetRef"]["name"], []).append(ref)
    return out


@pytest.mark.parametrize("region", REGIONS)
def test_default_autoscalers_target_both_slot_deployments(region: str) -> None:
    """One scaler per slot: after a swap to green the serving slot is autoscaled too."""
    objs = autoscalers((render(), region))
    assert sorted(objs) == [
        f"{kind}/{svc}-{slot}"
        for kind, svc in (("HorizontalPodAutoscaler", "coordinator"),
                          ("HorizontalPodAutoscaler", "governor"),
                          ("ScaledObject", "scheduler"))
        for slot in ("blue", "green")]
    for obj in objs.values():
        check_structure(obj)
    for slot in ("blue", "green"):
        gov = objs[f"HorizontalPodAutoscaler/governor-{slot}"]["spec"]
        assert (gov["minReplicas"], gov["maxReplicas"]) == (3, 10)
        assert gov["metrics"][0]["resource"]["target"] == {"type": "Utilization",
                                                          "averageUtilization": 70}
        sched = objs[f"ScaledObject/scheduler-{slot}"]["spec"]
        assert [t["type"] for t in sched["triggers"]] == ["cpu", "prometheus"]
        # The swap pauses ScaledObject <svc>-<slot>: the name must stay the Deployment's.
        assert objs[f"ScaledObject/scheduler-{slot}"]["metadata"]["name"] == f"scheduler-{slot}"
        # Nothing here pauses a slot: that annotation belongs to the swap alone, and applying
        # this manifest must leave it in place.
        assert "annotations" not in objs[f"ScaledObject/scheduler-{slot}"]["metadata"]


def test_slots_can_be_narrowed_per_region_and_per_service() -> None:
    plan = render(("autoscaling",), host_vars={
        "europe-west1": {"autoscaling_slots": ["blue"]},
        "asia-southeast1": {"autoscaling_hpa": {"governor": {"slots": ["green"]}}}})
    assert plan.run.returncode == 0, plan.run.output[-3000:]
    assert sorted(owners(autoscalers((plan, "europe-west1")))) == [
        "coordinator-blue", "governor-blue", "scheduler-blue"]
    asia = owners(autoscalers((plan, "asia-southeast1")))
    assert sorted(t for t in asia if t.startswith("governor")) == ["governor-green"]
    assert {"coordinator-blue", "coordinator-green", "scheduler-green"} <= set(asia)


def test_no_deployment_has_two_autoscalers_in_any_plan() -> None:
    for plan in (render(), variant()):
        for region in REGIONS:
            for target, refs in owners(autoscalers((plan, region))).items():
                assert len(refs) == 1, (region, target, refs)


def test_slots_regions_and_triggers_from_the_inventory() -> None:
    plan = variant()
    europe = autoscalers((plan, "europe-west1"))
    assert sorted(owners(europe)) == sorted(
        f"{s}-{slot}" for s in ("governor", "coordinator", "scheduler")
        for slot in ("blue", "green"))
    us = autoscalers((plan, "us-central1"))
    governor = us["HorizontalPodAutoscaler/governor-blue"]["spec"]
    assert (governor["minReplicas"], governor["maxReplicas"]) == (5, 20)
    asia = autoscalers((plan, "asia-southeast1"))["HorizontalPodAutoscaler/governor-blue"]["spec"]
    assert (asia["minReplicas"], asia["maxReplicas"]) == (3, 10)
    for region in REGIONS:
        for obj in autoscalers((plan, region)).values():
            check_structure(obj)
    redis = [t for t in us["ScaledObject/scheduler-blue"]["spec"]["triggers"]
             if t["type"] == "redis-cluster"]
    assert redis == [{"type": "redis-cluster", "metadata": {
        "addresses": "redis.tai-system.svc:6379", "listName": "scheduler:queue",
        "listLength": "20", "username": "keda", "enableTLS": "true"},
        "authenticationRef": {"name": "keda-redis"}}]
    # The password comes from Vault through KEDA's own login, never from a Kubernetes Secret;
    # only the (public) Redis CA is read from the chart's redis-tls Secret. Validated against
    # KEDA's TriggerAuthentication CRD schema by the plan (cloudcoil-models-keda).
    auth = trigger_authentications((plan, "us-central1"))
    assert list(auth) == ["keda-redis"]
    assert auth["keda-redis"]["metadata"]["namespace"] == "tai-system"
    assert auth["keda-redis"]["spec"] == {
        "secretTargetRef": [{"parameter": "ca", "name": "redis-tls", "key": "ca.crt"}],
        "hashiCorpVault": {
            "address": "https://vault.vault.svc:8200", "authentication": "kubernetes",
            "mount": "kubernetes", "role": "keda-redis",
            # the operator's projected token of audience vault (the KEDA release mounts it),
            # not its default API token: the Vault role keda-redis is bound to that audience
            "credential": {"serviceAccount": "/var/run/secrets/tai/vault/token"},
            "secrets": [{"parameter": "password", "key": "password", "type": "secretV2",
                         "path": "tai/data/redis/keda"}]}}
    assert crd_schemas.problems(auth["keda-redis"])[0] == []
    # KEDA 2.18's credential.serviceAccountName is newer than the schema: refused, not sent.
    newer = json.loads(json.dumps(auth["keda-redis"]))
    newer["spec"]["hashiCorpVault"]["credential"] = {"serviceAccountName": "keda-redis"}
    assert crd_schemas.problems(newer)[0] != []
    # No Redis trigger, no TriggerAuthentication.
    assert trigger_authentications((render(), "us-central1")) == {}


def _chart_deployments(*sets: str) -> set[str]:
    args = [str(BIN / "helm"), "template", "tai", str(REPO / "charts/tai-chart"),
            "-n", "tai-system"]
    for s in sets:
        args += ["--set", s]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return {d["metadata"]["name"] for d in yaml.safe_load_all(out)
            if d and d.get("kind") == "Deployment"}


def test_every_target_is_a_deployment_the_chart_renders() -> None:
    """Blue targets exist from the first install; green ones once that slot is deployed."""
    default = _chart_deployments()
    both = _chart_deployments(*(f"services.{s}.slots.green.tag=v2.0.0"
                                for s in ("governor", "coordinator", "scheduler")))
    targets = set(owners(autoscalers((render(), "europe-west1"))))
    assert targets == both
    assert {t for t in targets if t.endswith("-blue")} == default
    assert set(owners(autoscalers((variant(), "europe-west1")))) <= both


@pytest.mark.parametrize("region", REGIONS)
def test_keda_release_is_pinned_ha_and_restricted(region: str) -> None:
    plan = render()
    spec = plan.release(region, "autoscaling", "keda")
    assert (spec["namespace"], spec["chart"], spec["version"]) == ("keda", "keda", "2.18.1")
    values = plan.values(region, "autoscaling", "keda")
    assert values["operator"]["replicaCount"] == 2
    assert values["metricsServer"]["replicaCount"] == 1
    for part in ("operator", "metricServer", "webhooks"):
        assert values["podSecurityContext"][part]["runAsNonRoot"] is True
        ctx = values["securityContext"][part]
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["capabilities"] == {"drop": ["ALL"]}
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    # The operator verifies Vault (hashiCorpVault provider) with Vault's CA, which the vault
    # role writes into KEDA's namespace.
    assert values["env"] == [{"name": "VAULT_CACERT", "value": "/vault/tls/ca.crt"}]
    # It logs in to Vault with a projected token of audience vault (the audience the Vault role
    # keda-redis is bound to), which the kubelet requests and rotates (Kubernetes API reference,
    # ServiceAccountTokenProjection: expirationSeconds at least 600).
    assert values["volumes"]["keda"] == {
        "extraVolumes": [
            {"name": "vault-ca", "secret": {
                "secretName": "vault-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"name": "vault-token", "projected": {"sources": [{"serviceAccountToken": {
                "audience": "vault", "expirationSeconds": 3600, "path": "token"}}]}}],
        "extraVolumeMounts": [
            {"name": "vault-ca", "mountPath": "/vault/tls", "readOnly": True},
            {"name": "vault-token", "mountPath": "/var/run/secrets/tai/vault",
             "readOnly": True}]}


BAD_1: dict[str, dict[str, Any]] = {
    "europe-west1": {"autoscaling_hpa": {"governor": {"min_replicas": 12}}},
    "us-central1": {"autoscaling_keda": {"scheduler": {"regions": {"europe-wst1": {
        "min_replicas": 2}}}}},
    "asia-southeast1": {"autoscaling_hpa": {"scheduler": {
        "min_replicas": 2, "max_replicas": 4, "cpu_utilization": 60}}},
}
BAD_2: dict[str, dict[str, Any]] = {
    "europe-west1": {"autoscaling_hpa": {"schedular": {"min_replicas": 2}}},
    "us-central1": {"autoscaling_hpa": {"coordinator": {"regions": {"us-central1": {
        "max_replicas": 2}}}}},
    "asia-southeast1": {"autoscaling_keda": {"scheduler": {
        "cpu_utilization": 0, "grpc_rps_per_replica": 0}}},
}


def test_min_above_max_unknown_region_and_hpa_plus_keda_are_refused() -> None:
    plan = render(("autoscaling",), host_vars=BAD_1)
    assert plan.run.returncode != 0
    assert host_failure(plan.run, "europe-west1") == (
        "governor (autoscaling_hpa) in europe-west1 has min_replicas 12 greater than "
        "max_replicas 10.")
    assert host_failure(plan.run, "us-central1") == (
        "autoscaling_keda.scheduler.regions.europe-wst1 is not a region of the inventory "
        "(asia-southeast1, europe-west1, us-central1).")
    assert host_failure(plan.run, "asia-southeast1") == (
        "scheduler is autoscaled by both an HPA (autoscaling_hpa) and KEDA (autoscaling_keda) "
        "in asia-southeast1: KEDA drives an HPA of its own, and two HPAs on one Deployment "
        "fight over its replicas; set enabled: false on one of them.")
    assert "Traceback" not in plan.run.output
    for region in REGIONS:
        assert not (plan.region(region) / "autoscaling").exists()


def test_unknown_service_regional_min_above_max_and_no_trigger_are_refused() -> None:
    plan = render(("autoscaling",), host_vars=BAD_2)
    assert plan.run.returncode != 0
    assert host_failure(plan.run, "europe-west1") == (
        "autoscaling_hpa of region europe-west1 has unknown keys schedular (known: coordinator, "
        "governor, scheduler; meta/argument_specs.yml of role autoscaling).")
    assert host_failure(plan.run, "us-central1") == (
        "coordinator (autoscaling_hpa) in us-central1 has min_replicas 3 greater than "
        "max_replicas 2.")
    assert host_failure(plan.run, "asia-southeast1") == (
        "scheduler (autoscaling_keda) in asia-southeast1 has no trigger: set cpu_utilization, "
        "grpc_rps_per_replica or redis_list_name.")


_LIVE_PLAYBOOK = """\
---
- name: Evaluate the autoscaling role's cluster checks on a given cluster state
  hosts: localhost
  gather_facts: false
  vars_files:
    - "{repo}/roles/autoscaling/defaults/main.yml"
    - "{repo}/roles/autoscaling/vars/main.yml"
  tasks:
    - name: Write what apply mode would refuse, skip, apply and prune
      ansible.builtin.copy:
        dest: "{out}"
        content: >-
          {{{{ {{'problems': autoscaling_live_problems,
                'skipped': autoscaling_skipped | map(attribute='msg') | list,
                'files': autoscaling_manifest_files,
                'owned': autoscaling_live_owned | map(attribute='metadata.name') | list}}
             | to_json }}}}
        mode: "0644"
"""


def _obj(kind: str, name: str, target: str | None = None, owned: bool = False,
         replicas: int | None = None) -> dict[str, Any]:
    labels = {"app.kubernetes.io/managed-by": "tai-deploy",
              "app.kubernetes.io/component": "autoscaling"} if owned else {"team": "x"}
    obj: dict[str, Any] = {"kind": kind, "metadata": {"name": name, "labels": labels}}
    if target:
        obj["spec"] = {"scaleTargetRef": {"name": target}, "minReplicaCount": 3}
    if replicas is not None:
        obj["spec"] = {"replicas": replicas}
    return obj


def _file(kind: str, name: str) -> str:
    return f"manifests/tai-system/{kind.lower()}-{name}.yaml"


def test_apply_mode_skips_slots_not_deployed_and_refuses_foreign_autoscalers(
        tmp_path: Path) -> None:
    """Apply mode cannot run here (no cluster): evaluate its checks on a given cluster state.

    After a first install (blue only) plus one swap of the scheduler: governor-green does not
    exist, coordinator-green and scheduler-green are idle at 0 replicas, scheduler-blue is idle
    with its ScaledObject paused by the swap.
    """
    out = tmp_path / "result.json"
    playbook = tmp_path / "live.yml"
    playbook.write_text(_LIVE_PLAYBOOK.format(repo=REPO, out=out))
    live = {"results": [
        {"resources": [_obj("Deployment", "governor-blue", replicas=3),
                       _obj("Deployment", "coordinator-green", replicas=0),
                       _obj("Deployment", "scheduler-blue", replicas=0),
                       _obj("Deployment", "scheduler-green", replicas=0)]},
        {"resources": [
            _obj("HorizontalPodAutoscaler", "governor-blue", "governor-blue", owned=True),
            _obj("HorizontalPodAutoscaler", "coordinator-blue", "coordinator-blue", owned=True),
            _obj("HorizontalPodAutoscaler", "keda-hpa-scheduler-blue", "scheduler-blue"),
            _obj("HorizontalPodAutoscaler", "legacy-scheduler", "scheduler-blue"),
        ]},
        {"resources": [_obj("ScaledObject", "scheduler-blue", "scheduler-blue", owned=True)]},
    ]}
    planned = [("HorizontalPodAutoscaler", "governor-blue"),
               ("HorizontalPodAutoscaler", "governor-green"),
               ("HorizontalPodAutoscaler", "coordinator-green"),
               ("ScaledObject", "scheduler-blue"), ("ScaledObject", "scheduler-green")]
    extra = {"autoscaling_manifests": [_obj(kind, name, name) for kind, name in planned],
             "autoscaling_bundle": {"files": [
                 {"path": "releases/keda.yaml", "state": "unchanged"},
                 *({"path": _file(kind, name), "state": "unchanged"} for kind, name in planned),
                 {"path": _file("HorizontalPodAutoscaler", "old"), "state": "removed"}]},
             "autoscaling_live": live}
    result = run_playbook(str(playbook), "-e", json.dumps(extra))
    assert result.returncode == 0, result.output[-3000:]
    data = json.loads(out.read_text())
    assert data["owned"] == ["governor-blue", "coordinator-blue", "scheduler-blue"]
    # Only a real conflict is refused: two autoscalers on one Deployment.
    assert data["problems"] == [
        "HorizontalPodAutoscaler tai-system/legacy-scheduler, which this role does not manage, "
        "already scales Deployment scheduler-blue in localhost; two autoscalers on one "
        "Deployment fight, remove it.",
    ]
    assert data["skipped"] == [
        "HorizontalPodAutoscaler tai-system/governor-green is not created in localhost: its "
        "Deployment governor-green does not exist yet (a slot that is not deployed); the next "
        "converge after the rolling upgrade has created it adds it.",
        "ScaledObject tai-system/scheduler-green is not created in localhost: its Deployment "
        "scheduler-green is the idle slot (0 replicas) and KEDA would scale it up to 3; a "
        "converge after that slot serves adds it.",
    ]
    # An HPA leaves an idle slot alone; an existing (swap-paused) ScaledObject is re-applied.
    assert data["files"] == [_file("HorizontalPodAutoscaler", "governor-blue"),
                             _file("HorizontalPodAutoscaler", "coordinator-green"),
                             _file("ScaledObject", "scheduler-blue")]
