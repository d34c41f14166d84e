"""The tai_services role: live blue-green state kept on apply, and the plan it writes."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from helpers.ansible_run import REPO, PlaybookRun, run_playbook
from helpers.k8s_double import KubeApiDouble

FILTER_FILE = REPO / "roles" / "tai_services" / "filter_plugins" / "tai_services_live.py"


def _load_filter() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tai_services_live", FILTER_FILE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


live = _load_filter()

PLANNED: dict[str, Any] = yaml.safe_load(
    (REPO / "charts" / "tai-chart" / "values.yaml").read_text())


def service(name: str, slot: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"slot": slot}},
            "spec": {"selector": {"app": name.removesuffix("-preview"), "slot": slot}}}


def deployment(svc: str, slot: str, image: str, replicas: int) -> dict[str, Any]:
    return {"metadata": {"name": f"{svc}-{slot}"},
            "spec": {"replicas": replicas,
                     "template": {"spec": {"containers": [
                         {"name": "vault-agent", "image": "hashicorp/vault:1.20.0"},
                         {"name": svc, "image": image}]}}}}


def effective(planned: Mapping[str, Any], result: Mapping[str, Any]) -> dict[str, Any]:
    """The values the role installs: the planned ones with the live overlay combined over them
    (Ansible's combine(recursive=true))."""
    def merge(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(a)
        for k, v in b.items():
            out[k] = merge(out[k], v) if isinstance(v, Mapping) and isinstance(
                out.get(k), Mapping) else v
        return out
    return merge(planned, result["values"])


def planned_with(**services: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(PLANNED))
    for svc, values in services.items():
        out["services"][svc].update(values)
    return out


# ---- the live-state filter ----------------------------------------------------------------

@pytest.mark.parametrize(("image", "expected"), [
    ("gcr.io/ggen-project/governor:v1.0.0", ("gcr.io/ggen-project/governor", "v1.0.0", None)),
    ("localhost:5000/governor:v1.2.3", ("localhost:5000/governor", "v1.2.3", None)),
    ("localhost:5000/governor", ("localhost:5000/governor", None, None)),
    ("gcr.io/p/governor:v1.0.0@sha256:" + "a" * 64,
     ("gcr.io/p/governor", "v1.0.0", "sha256:" + "a" * 64)),
])
def test_split_image(image: str, expected: tuple[str, str | None, str | None]) -> None:
    assert live.split_image(image) == expected


def test_first_install_lets_the_plan_decide() -> None:
    assert live.live_values(PLANNED, [], []) == {"values": {}, "notes": []}


def test_an_unchanged_cluster_adds_nothing() -> None:
    # The rehearsal's second apply upgraded the release: the overlay copied the planned tag and
    # replicas into slots.blue, values.yaml changed although the cluster ran the plan.
    result = live.live_values(
        PLANNED, [service("governor", "blue")],
        [deployment("governor", "blue", "gcr.io/ggen-project/governor:v1.0.0", 3)])
    assert result == {"values": {}, "notes": []}


def test_a_swapped_service_stays_swapped() -> None:
    """After a swap to green, a re-converge with the old values keeps green serving."""
    planned = planned_with(governor={"activeSlot": "blue",
                                     "slots": {"blue": {"tag": "v1.0.0"}, "green": {}}})
    result = live.live_values(
        planned, [service("governor", "green"), service("governor-preview", "blue")],
        [deployment("governor", "blue", "gcr.io/ggen-project/governor:v1.0.0", 0),
         deployment("governor", "green", "gcr.io/ggen-project/governor:v1.1.0", 5)])
    gov = effective(planned, result)["services"]["governor"]
    assert gov["activeSlot"] == "green"
    # The serving slot keeps its image and the HPA's replicas; the idle one its scale-down.
    assert gov["slots"]["green"] == {"tag": "v1.1.0", "replicas": 5}
    assert gov["slots"]["blue"] == {"tag": "v1.0.0", "replicas": 0}
    assert any("serves slot green; keeping it active" in n for n in result["notes"])


def test_a_new_tag_for_the_serving_slot_is_not_rolled_in_place() -> None:
    planned = planned_with(governor={"slots": {"blue": {"tag": "v2.0.0"}, "green": {}}})
    result = live.live_values(
        planned, [service("governor", "blue")],
        [deployment("governor", "blue", "gcr.io/ggen-project/governor:v1.0.0", 3)])
    assert result["values"]["services"]["governor"]["slots"]["blue"]["tag"] == "v1.0.0"
    assert result["notes"] == [
        "governor: slot blue serves v1.0.0; keeping it (the plan says v2.0.0: deploy it to "
        "slot green and swap)"]


def test_a_kept_live_image_never_takes_the_digest_of_another_tag() -> None:
    new = "sha256:" + "2" * 64
    planned = planned_with(governor={"slots": {"blue": {"tag": "v2.0.0", "digest": new},
                                               "green": {}}})
    result = live.live_values(
        planned, [service("governor", "blue")],
        [deployment("governor", "blue", "gcr.io/ggen-project/governor:v1.0.0", 3)])
    # The live image has no digest, and the planned one pins v2.0.0: none is rendered.
    assert effective(planned, result)["services"]["governor"]["slots"]["blue"] == {
        "tag": "v1.0.0", "digest": ""}
    pinned = "gcr.io/ggen-project/governor:v1.0.0@sha256:" + "1" * 64
    result = live.live_values(planned, [service("governor", "blue")],
                              [deployment("governor", "blue", pinned, 3)])
    assert effective(planned, result)["services"]["governor"]["slots"]["blue"] == {
        "tag": "v1.0.0", "digest": "sha256:" + "1" * 64}


def test_a_production_install_refuses_the_placeholder_digest() -> None:
    problems = live.tai_services_placeholder_digests(PLANNED, "europe-west1", "production")
    assert problems[0] == (
        "services.coordinator.slots.blue (gcr.io/ggen-project/coordinator:v1.0.0) of region "
        "europe-west1 carries the placeholder digest sha256:000…; set "
        "services.coordinator.slots.blue.digest to the registry's digest of "
        "gcr.io/ggen-project/coordinator:v1.0.0 before applying.")
    # The service slots and the exporter; Redis carries the registry's digest.
    assert [p.split(" (")[0] for p in problems] == [
        "services.coordinator.slots.blue", "services.governor.slots.blue",
        "services.scheduler.slots.blue", "redis.exporter.image"]
    blue = {"tag": "v1.0.0", "digest": "sha256:" + "c" * 64}
    pinned = planned_with(**{s: {"slots": {"blue": blue, "green": {}}}
                             for s in ("governor", "coordinator", "scheduler")})
    pinned["redis"]["exporter"]["image"]["digest"] = "sha256:" + "d" * 64
    assert live.tai_services_placeholder_digests(pinned, "europe-west1", "production") == []
    # A test environment pulls nothing.
    assert live.tai_services_placeholder_digests(PLANNED, "europe-west1", "test") == []


def test_update_active_slot_rolls_the_serving_slot_in_place() -> None:
    planned = planned_with(governor={"slots": {"blue": {"tag": "v2.0.0"}, "green": {}}})
    result = live.live_values(
        planned, [service("governor", "blue")],
        [deployment("governor", "blue", "gcr.io/ggen-project/governor:v1.0.0", 4)],
        update_active_slot=True)
    # Only the replicas are kept: the planned tag rolls out.
    assert result["values"]["services"]["governor"]["slots"]["blue"] == {"replicas": 4}


def test_a_new_tag_for_the_idle_slot_gets_the_planned_replicas() -> None:
    planned = planned_with(governor={"slots": {"blue": {"tag": "v1.0.0"},
                                               "green": {"tag": "v1.2.0"}}})
    result = live.live_values(
        planned, [service("governor", "blue")],
        [deployment("governor", "blue", "gcr.io/ggen-project/governor:v1.0.0", 3),
         deployment("governor", "green", "gcr.io/ggen-project/governor:v1.1.0", 0)])
    # planned tag v1.2.0 and planned replicas apply
    assert effective(planned, result)["services"]["governor"]["slots"]["green"] == {
        "tag": "v1.2.0"}


# Without keep_idle_slot the plan's empty green slot is installed: Helm removes the Deployment.
@pytest.mark.parametrize(("keep", "expected"), [(True, {"tag": "v0.9.0", "replicas": 0}),
                                                 (False, {})])
def test_an_idle_slot_without_a_planned_tag(keep: bool, expected: dict[str, Any] | None) -> None:
    result = live.live_values(
        PLANNED, [service("governor", "blue")],
        [deployment("governor", "blue", "gcr.io/ggen-project/governor:v1.0.0", 3),
         deployment("governor", "green", "gcr.io/ggen-project/governor:v0.9.0", 0)],
        keep_idle_slot=keep)
    assert effective(PLANNED, result)["services"]["governor"]["slots"]["green"] == expected


def test_the_effective_values_merge_the_overlay_as_ansibles_combine_does() -> None:
    """The filter merges the live overlay itself (vars/main.yml templates the planned values
    once): the same result as Ansible's own combine(recursive=true), which the role used."""
    from ansible.plugins.filter.core import combine

    services = [service("governor", "green")]
    deployments = [deployment("governor", "blue", "gcr.io/ggen-project/governor:1.4.1", 3),
                   deployment("governor", "green", "gcr.io/ggen-project/governor:1.4.2", 5)]
    got = live.tai_services_live_values(PLANNED, services, deployments)
    assert got["values"], "the swapped service must give an overlay, else the test proves nothing"
    assert got["effective"] == combine(PLANNED, got["values"], recursive=True)
    assert got["effective"]["services"]["governor"]["activeSlot"] == "green"
    assert PLANNED["services"]["governor"].get("activeSlot", "blue") == "blue"  # not mutated
    nested = {"a": {"b": [1, 2], "c": {"d": 1}}, "e": 1}
    over = {"a": {"b": [3], "c": {"f": 2}}, "e": {"g": 1}}
    assert live.combine(nested, over) == combine(nested, over, recursive=True)


def test_a_service_without_a_slot_selector_is_left_to_the_plan() -> None:
    svc = {"metadata": {"name": "governor"}, "spec": {"selector": {"app": "governor"}}}
    result = live.live_values(PLANNED, [svc], [])
    assert result["values"] == {}
    assert result["notes"] == [
        "governor: the live Service selects no blue/green slot; the plan decides"]


# ---- the role end to end (plan mode) ------------------------------------------------------

PLAYBOOK = """\
---
- name: Plan the TAI chart of one region
  hosts: europe-west1
  gather_facts: false
  vars:
    tai_build_dir: "{build}"
    tai_charts_dir: "{charts}"
    tai_helm_binary: "{{{{ ansible_playbook_python | dirname }}}}/helm"
    tai_kubernetes_version: "1.34"
    tai_kube_context: gke_tai-production_europe-west1_tai-cluster
  roles:
    - role: tai_services
"""


def plan(tmp_path: Path, *extra: str) -> PlaybookRun:
    book = tmp_path / "play.yml"
    if not book.exists():
        book.write_text(PLAYBOOK.format(build=tmp_path / "build", charts=REPO / "charts"))
    return run_playbook(str(book), "-l", "europe-west1", *extra)


def plan_dir(tmp_path: Path) -> Path:
    return tmp_path / "build" / "tai-services"


def manifest(tmp_path: Path, name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(
        (plan_dir(tmp_path) / "manifests" / "tai-system" / name).read_text())
    return doc


@pytest.mark.playbook
def test_plan_writes_values_and_manifests_and_is_idempotent(tmp_path: Path) -> None:
    first = plan(tmp_path)
    assert first.returncode == 0, first.output
    assert first.recap("europe-west1")["changed"] == 1
    values = yaml.safe_load((plan_dir(tmp_path) / "values.yaml").read_text())
    assert values["region"] == "europe-west1"
    assert values["serviceAccounts"]["gcpProject"] == "tai-production"
    assert values["istio"]["hosts"] == ["api.tai.example.com", "europe-west1.tai.example.com"]
    assert len(values["chartDigest"]) == 64
    files = {p.name for p in (plan_dir(tmp_path) / "manifests" / "tai-system").iterdir()}
    assert {"deployment-governor-blue.yaml", "statefulset-redis.yaml",
            "job-redis-cluster-init.yaml", "virtualservice-tai-api.yaml"} <= files
    assert (plan_dir(tmp_path) / "manifests" / "istio-system" / "gateway-tai-gateway.yaml").exists()
    assert not (plan_dir(tmp_path) / "live.yaml").exists()
    # The agents verify Vault's private CA from the Secret the vault role writes into
    # tai-system (vault_tls_ca_secret_name): without these annotations no pod ever starts.
    assert values["vault"]["caSecret"] == "vault-ca"
    annotations = manifest(tmp_path, "deployment-governor-blue.yaml")[
        "spec"]["template"]["metadata"]["annotations"]
    assert annotations["vault.hashicorp.com/tls-secret"] == "vault-ca"
    assert annotations["vault.hashicorp.com/ca-cert"] == "/vault/tls/ca.crt"
    # Redis: the plan holds ACL rules and Vault references, never a password or its hash.
    acl = manifest(tmp_path, "configmap-redis-acl.yaml")["data"]["users.acl"]
    users = [line.split() for line in acl.splitlines() if line.startswith("user ")]
    assert {u[1] for u in users} >= {"default", "governor", "coordinator", "scheduler",
                                     "replication", "cluster-admin", "snapshot"}
    assert all(not w.startswith((">", "<", "#")) and w not in ("on", "nopass")
               for u in users for w in u[2:])
    annotations = manifest(tmp_path, "statefulset-redis.yaml")["spec"]["template"]["metadata"][
        "annotations"]
    assert annotations["vault.hashicorp.com/agent-inject-secret-redis-user-replication"] == (
        "tai/data/redis/replication")
    for path in plan_dir(tmp_path).rglob("*.yaml"):
        if path.name == "configmap-redis-scripts.yaml":
            continue      # redis-start.sh, which writes masterauth inside the pod at start
        text = path.read_text()
        assert "masterauth" not in text and "requirepass" not in text, path
    second = plan(tmp_path)
    assert second.returncode == 0, second.output
    assert second.recap("europe-west1")["changed"] == 0


@pytest.mark.playbook
def test_inventory_values_and_live_state_shape_the_plan(tmp_path: Path) -> None:
    """Inventory values deploy a preview slot; a live swap (as k8s_info reports it) is kept.

    The live read only runs in apply mode; here its registered results are given as extra
    vars, which is exactly what the role's templating consumes.
    """
    extra = {
        "tai_services_values": {"services": {"governor": {"slots": {"green": {"tag": "v1.1.0"}}}}},
        "tai_services_live_services": {"resources": [service("scheduler", "green")]},
        "tai_services_live_deployments": {"resources": [
            deployment("scheduler", "blue", "gcr.io/ggen-project/scheduler:v1.0.0", 0),
            deployment("scheduler", "green", "gcr.io/ggen-project/scheduler:v1.1.0", 4)]},
    }
    run = plan(tmp_path, "-e", json.dumps(extra))
    assert run.returncode == 0, run.output
    assert manifest(tmp_path, "service-governor.yaml")["spec"]["selector"] == {
        "app": "governor", "slot": "blue"}
    assert manifest(tmp_path, "service-governor-preview.yaml")["spec"]["selector"] == {
        "app": "governor", "slot": "green"}
    green = manifest(tmp_path, "deployment-governor-green.yaml")
    assert green["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":v1.1.0")
    assert manifest(tmp_path, "service-scheduler.yaml")["spec"]["selector"]["slot"] == "green"
    assert manifest(tmp_path, "deployment-scheduler-green.yaml")["spec"]["replicas"] == 4
    assert manifest(tmp_path, "deployment-scheduler-blue.yaml")["spec"]["replicas"] == 0


@pytest.mark.playbook
def test_bad_inventory_values_stop_the_plan_with_the_schema_message(tmp_path: Path) -> None:
    extra = {"tai_services_values": {"services": {"governor": {"replicas": -1}}}}
    run = plan(tmp_path, "-e", json.dumps(extra))
    assert run.returncode != 0
    flat = " ".join(run.stdout.split())
    assert ("charts/tai-chart refused the values of europe-west1 (values-europe-west1.yaml + "
            "tai_services_values)") in flat
    assert "at '/services/governor/replicas': minimum: got -1, want 0" in flat
    assert "Traceback" not in run.output
    assert not plan_dir(tmp_path).exists()


# ---- the role end to end (apply mode, against the Kubernetes API test double) ------------

STANDIN_CRDS = sorted((REPO / "tests" / "helpers" / "standin_charts").glob("*/crds/*.yaml"))


def _digest(name: str) -> str:
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


@pytest.mark.playbook
def test_an_install_whose_pods_a_webhook_refuses_stops_with_the_api_servers_answer(
        tmp_path: Path) -> None:
    """The TAI pods are refused by a webhook that went down after the Vault role checked it
    (failurePolicy Fail, no endpoint): Helm's wait ends at its timeout without a reason; the
    role reads the Deployments and stops with the API server's answer and what Helm left."""
    with KubeApiDouble(namespaces=("default", "kube-system", "vault")) as double:
        for path in STANDIN_CRDS:  # what the platform releases install before the TAI chart
            for crd in yaml.safe_load_all(path.read_text()):
                if crd:
                    double.seed(crd)
        double.seed(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {
                "name": "tai-system", "labels": {"istio-injection": "enabled"}}},
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": "vault-agent-injector-svc", "namespace": "vault"},
             "spec": {"selector": {"app": "vault-agent-injector"}, "ports": [{"port": 443}]}},
            {"apiVersion": "admissionregistration.k8s.io/v1",
             "kind": "MutatingWebhookConfiguration",
             "metadata": {"name": "vault-agent-injector-cfg"},
             "webhooks": [{"name": "vault.hashicorp.com", "admissionReviewVersions": ["v1"],
                           "sideEffects": "None", "failurePolicy": "Fail", "timeoutSeconds": 30,
                           "namespaceSelector": {"matchLabels": {
                               "kubernetes.io/metadata.name": "tai-system"}},
                           "clientConfig": {"service": {"name": "vault-agent-injector-svc",
                                                        "namespace": "vault",
                                                        "path": "/mutate"}},
                           "rules": [{"operations": ["CREATE"], "apiGroups": [""],
                                      "apiVersions": ["v1"], "resources": ["pods"]}]}]})
        kubeconfig = tmp_path / "kubeconfig"
        context = "gke_tai-production_europe-west1_tai-cluster"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": "double", "cluster": {"server": double.url}}],
            "users": [{"name": "tester", "user": {"token": "t"}}],
            "contexts": [{"name": context, "context": {"cluster": "double",
                                                       "user": "tester"}}]}))
        extra = {"tai_apply": True, "tai_services_helm_timeout": "20s",
                 "tai_services_values": {
                     "services": {s: {"slots": {"blue": {"digest": _digest(s)}}}
                                  for s in ("governor", "coordinator", "scheduler")},
                     "redis": {"exporter": {"image": {"digest": _digest("exporter")}},
                               "backup": {"image": {"digest": _digest("backup")}}}}}
        book = tmp_path / "play.yml"
        book.write_text(PLAYBOOK.format(build=tmp_path / "build", charts=REPO / "charts"))
        run = run_playbook(str(book), "-l", "europe-west1", "-e", json.dumps(extra),
                           env={"KUBECONFIG": str(kubeconfig)}, timeout=600)
    assert run.returncode != 0
    failure = " ".join(run.stdout[run.stdout.rindex("fatal: ["):].split())
    assert "The TAI release tai was not installed or upgraded (Helm waits up to " \
           "tai_services_helm_timeout, 20s): Deployment tai-system/" in failure, failure
    assert ('cannot create its pods (FailedCreate): Internal error occurred: failed calling '
            'webhook "vault.hashicorp.com": failed to call webhook: Post "https://vault-agent-'
            'injector-svc.vault.svc:443/mutate?timeout=30s": no endpoints available for service '
            '"vault-agent-injector-svc".') in failure, failure
    assert ("The release is left failed with what it created (a first install is not rolled "
            "back); the next apply upgrades it.") in failure
