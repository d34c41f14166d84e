"""logging role: fluent-bit DaemonSet to Cloud Logging; Elasticsearch and Kibana one switch each."""

from __future__ import annotations

from typing import Any

import pytest
from helpers.platform_plan import REGIONS, host_failure, render, variant

pytestmark = pytest.mark.playbook


def sections(config: str) -> list[dict[str, str]]:
    """fluent-bit classic configuration -> one dict per [SECTION] (keys lower-cased)."""
    out: list[dict[str, str]] = []
    for raw in config.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("["):
            out.append({"section": line.strip("[]")})
        else:
            key, _, value = line.partition(" ")
            out[-1][key.lower()] = value.strip()
    return out


@pytest.mark.parametrize("region", REGIONS)
def test_fluent_bit_daemonset_ships_to_cloud_logging_only_by_default(region: str) -> None:
    plan = render()
    assert [f for f in plan.files(region, "logging") if f.startswith("releases/")] == [
        "releases/fluent-bit.yaml"]
    values = plan.values(region, "logging", "fluent-bit")
    assert values["kind"] == "DaemonSet"
    assert values["tolerations"] == [{"operator": "Exists"}]
    (output,) = sections(values["config"]["outputs"])
    assert output["name"] == "stackdriver"
    assert output["resource"] == "k8s_container"
    assert output["k8s_cluster_location"] == region
    assert output["k8s_cluster_name"] == "tai-cluster"
    assert output["tag_prefix"] == "kube.var.log.containers."
    (tail,) = sections(values["config"]["inputs"])
    assert tail["tag"] == "kube.*" and tail["path"] == "/var/log/containers/*.log"
    assert "*_kube-system_*" in tail["exclude_path"]
    assert tail["db"].startswith("/var/fluent-bit/state/")
    (kube,) = sections(values["config"]["filters"])
    assert kube["kube_tag_prefix"] == output["tag_prefix"]
    sa = values["serviceAccount"]["annotations"]["iam.gke.io/gcp-service-account"]
    assert sa == "fluent-bit@tai-production.iam.gserviceaccount.com"
    assert values["env"] == [] and values["extraVolumes"] == []
    mounts = {m["mountPath"]: m for m in values["daemonSetVolumeMounts"]}
    assert mounts["/var/log"]["readOnly"] is True


@pytest.mark.parametrize("region", REGIONS)
def test_node_agents_priority_class_is_admitted_by_a_quota(region: str) -> None:
    plan = render()
    assert plan.values(region, "logging", "fluent-bit")["priorityClassName"] == (
        "system-node-critical")
    (quota,) = plan.manifests(region, "logging")
    assert quota["kind"] == "ResourceQuota"
    assert quota["metadata"]["namespace"] == "logging"
    (expr,) = quota["spec"]["scopeSelector"]["matchExpressions"]
    assert expr == {"operator": "In", "scopeName": "PriorityClass",
                    "values": ["system-node-critical"]}


def test_elasticsearch_and_kibana_switch_on_together_in_one_region() -> None:
    plan = variant()
    files = plan.files("europe-west1", "logging")
    assert [f for f in files if f.startswith("releases/")] == [
        "releases/elasticsearch.yaml", "releases/fluent-bit.yaml", "releases/kibana.yaml"]
    es = plan.values("europe-west1", "logging", "elasticsearch")
    assert es["replicas"] == 3 and es["protocol"] == "https"
    kibana = plan.values("europe-west1", "logging", "kibana")
    assert kibana["elasticsearchHosts"] == "https://elasticsearch-master.logging.svc:9200"
    fb = plan.values("europe-west1", "logging", "fluent-bit")
    outputs = sections(fb["config"]["outputs"])
    assert [o["name"] for o in outputs] == ["stackdriver", "es"]
    es_out = outputs[1]
    assert es_out["host"] == "elasticsearch-master.logging.svc"
    assert es_out["http_passwd"] == "${ES_PASSWORD}"  # from the Secret, never a value
    assert es_out["tls.verify"] == "On"
    assert {e["name"] for e in fb["env"]} == {"ES_USERNAME", "ES_PASSWORD"}
    # The other regions keep the default.
    for region in ("us-central1", "asia-southeast1"):
        assert [f for f in plan.files(region, "logging") if f.startswith("releases/")] == [
            "releases/fluent-bit.yaml"]


BAD: dict[str, dict[str, Any]] = {
    "europe-west1": {"logging_kibana_enabled": True},
    "us-central1": {"logging_elasticsearch_enabled": True, "logging_elasticsearch_replicas": 2},
    "asia-southeast1": {"logging_elasticsearch_enabled": "maybe"},
}


def test_kibana_without_elasticsearch_is_refused_with_one_sentence() -> None:
    plan = render(("logging",), host_vars=BAD)
    assert plan.run.returncode != 0
    assert host_failure(plan.run, "europe-west1") == (
        "logging_kibana_enabled is true in europe-west1 but logging_elasticsearch_enabled is "
        "false: Kibana needs the in-cluster Elasticsearch, enable both or neither.")
    assert host_failure(plan.run, "us-central1") == (
        "logging_elasticsearch_replicas is 2; Elasticsearch needs at least 3 master-eligible "
        "nodes to keep a quorum through the loss of one.")
    assert "logging_elasticsearch_enabled" in host_failure(plan.run, "asia-southeast1")
    assert "Traceback" not in plan.run.output
