"""namespaces role: the contract's namespaces with Pod Security Standards labels."""

from __future__ import annotations

from typing import Any

import pytest
from helpers.platform_plan import REGIONS, host_failure, render, variant

pytestmark = pytest.mark.playbook

PSS = "pod-security.kubernetes.io/"
EXPECTED = {"istio-system", "monitoring", "logging", "tai-system", "vault", "keda",
            "cert-manager"}


def namespaces(region: str) -> dict[str, dict[str, Any]]:
    objs = render().manifests(region, "namespaces")
    assert all(o["apiVersion"] == "v1" and o["kind"] == "Namespace" for o in objs)
    return {o["metadata"]["name"]: o["metadata"] for o in objs}


@pytest.mark.parametrize("region", REGIONS)
def test_contract_namespaces_exist_with_pss_labels(region: str) -> None:
    found = namespaces(region)
    assert set(found) == EXPECTED
    for name, meta in found.items():
        labels = meta["labels"]
        assert labels[PSS + "enforce"] in {"privileged", "baseline", "restricted"}, name
        # Everything audits and warns at restricted, pinned to the clusters' minor version.
        assert labels[PSS + "audit"] == "restricted"
        assert labels[PSS + "warn"] == "restricted"
        for mode in ("enforce", "audit", "warn"):
            assert labels[PSS + mode + "-version"] == "v1.34"
        assert labels["app.kubernetes.io/managed-by"] == "tai-deploy"


def test_tai_system_enforces_restricted_and_has_sidecar_injection() -> None:
    meta = namespaces("europe-west1")["tai-system"]
    assert meta["labels"][PSS + "enforce"] == "restricted"
    assert meta["labels"]["istio-injection"] == "enabled"
    assert "annotations" not in meta
    assert namespaces("europe-west1")["keda"]["labels"][PSS + "enforce"] == "restricted"
    others = [n for n, m in namespaces("europe-west1").items() if "istio-injection" in m["labels"]]
    assert others == ["tai-system"]


def test_every_exception_below_restricted_says_why() -> None:
    for name, meta in namespaces("us-central1").items():
        level = meta["labels"][PSS + "enforce"]
        reason = (meta.get("annotations") or {}).get("tai.example.com/pod-security-exception")
        if level == "restricted":
            assert reason is None
        else:
            assert reason and len(reason) > 40, name
    found = namespaces("us-central1")
    assert found["logging"]["labels"][PSS + "enforce"] == "privileged"
    assert "hostPath" in found["logging"]["annotations"]["tai.example.com/pod-security-exception"]
    assert found["vault"]["labels"][PSS + "enforce"] == "baseline"


def test_inventory_adds_and_drops_namespaces_per_region() -> None:
    plan = variant()
    us = {o["metadata"]["name"]: o["metadata"] for o in plan.manifests("us-central1", "namespaces")}
    assert set(us) == EXPECTED - {"keda"} | {"batch"}
    assert us["batch"]["labels"][PSS + "enforce"] == "baseline"
    assert us["batch"]["annotations"]["tai.example.com/pod-security-exception"] == (
        "batch jobs of a vendor image that runs as root.")
    europe = {o["metadata"]["name"] for o in plan.manifests("europe-west1", "namespaces")}
    assert europe == EXPECTED


# One run, one broken input per region: each region stops with its own sentence.
BAD: dict[str, dict[str, Any]] = {
    "europe-west1": {"namespaces_definitions": {"tai-system": {"enforce": "baseline",
                                                               "exception": "Because."}}},
    "us-central1": {"namespaces_definitions": {"batch": {"enforce": "privileged"}}},
    "asia-southeast1": {"namespaces_definitions": {"monitoring": {"enforce": "strict"}}},
}


def test_bad_definitions_are_refused_with_one_sentence_each() -> None:
    plan = render(("namespaces",), host_vars=BAD)
    assert plan.run.returncode != 0
    assert host_failure(plan.run, "europe-west1") == (
        "tai-system must enforce the restricted Pod Security Standard (the application "
        "namespace has no exception).")
    assert host_failure(plan.run, "us-central1") == (
        "namespace batch enforces privileged, below restricted, without an exception: say why in "
        "namespaces_definitions.batch.exception.")
    assert ("namespaces_definitions.monitoring.enforce is strict; it must be one of privileged, "
            "baseline, restricted.") in host_failure(plan.run, "asia-southeast1")
    assert "Traceback" not in plan.run.output
    for region in REGIONS:
        assert not (plan.region(region) / "namespaces").exists()
