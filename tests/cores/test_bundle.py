"""The bundle writer and the manifest validator behind every role's plan."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from tai_deploy.bundle import (
    CREATED,
    REMOVED,
    UNCHANGED,
    UPDATED,
    BundleError,
    collect,
    plan,
    release_files,
    serialise,
    summarise,
    write,
)
from tai_deploy.manifests import load_documents, manifest_path, validate_objects

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "governor-blue", "namespace": "tai-system"},
    "spec": {
        "selector": {"matchLabels": {"app": "governor"}},
        "template": {
            "metadata": {"labels": {"app": "governor"}},
            "spec": {"containers": [{"name": "governor", "image": "gcr.io/p/governor:v1.0.0"}]},
        },
    },
}
RELEASE = {"name": "vault", "namespace": "vault", "chart": "vault",
           "repository": "https://helm.releases.hashicorp.com", "version": "0.31.0",
           "values": {"server": {"ha": {"enabled": True}}}}


def test_serialisation_is_deterministic_and_sorted() -> None:
    a = serialise("x.json", {"b": 1, "a": {"d": 2, "c": 3}})
    b = serialise("x.json", {"a": {"c": 3, "d": 2}, "b": 1})
    assert a == b
    assert a.index('"a"') < a.index('"b"')
    assert serialise("x.yaml", {"k": "one\ntwo"}) == "---\nk: |-\n  one\n  two\n"


def test_structured_data_needs_a_known_extension() -> None:
    with pytest.raises(BundleError, match=r"x.txt: structured content needs a .json"):
        serialise("x.txt", {"a": 1})


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ([{"path": "../escape.json", "data": {}}], "must be relative and stay inside"),
        ([{"path": "/etc/passwd", "content": "x"}], "must be relative and stay inside"),
        ([{"path": "a.json", "data": {}}, {"path": "a.json", "data": {}}],
         "a.json is listed twice"),
        ([{"path": "a.json", "data": {}, "content": "x"}], "give content or data, not both"),
        ([{"path": "a.json"}], "content or data is required"),
    ],
)
def test_bad_file_entries_are_refused(files: list[dict[str, object]], message: str) -> None:
    with pytest.raises(BundleError, match=message):
        collect(files)


def test_manifests_are_written_by_namespace_kind_and_name() -> None:
    wanted, objects = collect(manifests=yaml.safe_dump_all([DEPLOYMENT]))
    assert list(wanted) == ["manifests/tai-system/deployment-governor-blue.yaml"]
    assert objects == [DEPLOYMENT]
    assert manifest_path({"kind": "Namespace", "metadata": {"name": "vault"}}) == \
        "_cluster/namespace-vault.yaml"


def test_plan_reports_created_unchanged_updated_removed(tmp_path: Path) -> None:
    dest = tmp_path / "gke"
    first = plan(dest, {"a.json": "1\n", "sub/b.json": "2\n"})
    assert [c.state for c in first.changes] == [CREATED, CREATED]
    write(first)
    again = plan(dest, {"a.json": "1\n", "sub/b.json": "2\n"})
    assert not again.changed
    assert {c.state for c in again.changes} == {UNCHANGED}
    third = plan(dest, {"a.json": "changed\n"})
    assert {(c.path, c.state) for c in third.changes} == {("a.json", UPDATED),
                                                         ("sub/b.json", REMOVED)}
    write(third)
    assert (dest / "a.json").read_text() == "changed\n"
    assert not (dest / "sub").exists(), "pruning removes the emptied folder"


def test_plan_touches_nothing(tmp_path: Path) -> None:
    plan(tmp_path / "x", {"a.json": "1\n"})
    assert not (tmp_path / "x").exists()


def test_prune_can_be_disabled(tmp_path: Path) -> None:
    write(plan(tmp_path, {"keep.json": "1\n"}))
    result = plan(tmp_path, {"new.json": "2\n"}, prune=False)
    assert {c.state for c in result.changes} == {CREATED}


def test_an_invalid_core_object_is_reported_with_its_path() -> None:
    bad = json.loads(json.dumps(DEPLOYMENT))
    bad["spec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "Always"
    report = validate_objects([bad], "1.34")
    assert not report.ok
    assert len(report.problems) == 1
    text = str(report.problems[0])
    assert text.startswith("Deployment/tai-system/governor-blue: ")
    assert "'imagePullPolice' was unexpected" in text
    assert "spec.template.spec.containers.0" in text


def test_a_valid_core_object_is_schema_validated() -> None:
    report = validate_objects([DEPLOYMENT], "1.34")
    assert report.ok
    assert report.schema_validated == 1


PEER = {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
        "metadata": {"name": "default", "namespace": "istio-system"},
        "spec": {"mtls": {"mode": "STRICT"}}}


def test_custom_resources_of_unknown_groups_get_structural_checks_only() -> None:
    other = {"apiVersion": "example.com/v1", "kind": "Widget",
             "metadata": {"name": "w", "namespace": "tai-system"}, "spec": {"any": "thing"}}
    report = validate_objects([other], "1.34")
    assert report.ok
    assert report.structural_only == ["Widget/tai-system/w"]
    broken = {**PEER, "metadata": {"name": "Not_A_Name", "labels": {"a": 1}}}
    problems = [p.message for p in validate_objects([broken], "1.34").problems]
    assert "metadata.name 'Not_A_Name' is not a valid DNS-1123 name" in problems
    assert "metadata.labels values must all be strings" in problems


def test_istio_resources_are_validated_against_istios_crd_schema() -> None:
    report = validate_objects([PEER], "1.34")
    assert report.ok and report.structural_only == []
    assert report.crd_validated == [
        "PeerAuthentication/istio-system/default (cloudcoil-models-istio 1.24.2.1)"]
    # Istio's CRD: spec.mtls.mode is one of UNSET, DISABLE, PERMISSIVE, STRICT, and mtls has no
    # field "enabled".
    typo = {**PEER, "spec": {"mtls": {"mode": "STRICTER", "enabled": True}}}
    problems = [str(p) for p in validate_objects([typo], "1.34").problems]
    assert problems == [
        "PeerAuthentication/istio-system/default: Additional properties are not allowed "
        "('enabled' was unexpected) (at spec.mtls; schema of cloudcoil-models-istio 1.24.2.1)",
        "PeerAuthentication/istio-system/default: 'STRICTER' is not one of ['UNSET', 'DISABLE', "
        "'PERMISSIVE', 'STRICT'] (at spec.mtls.mode; schema of cloudcoil-models-istio 1.24.2.1)"]


@pytest.mark.parametrize(("obj", "fragment"), [
    ({"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
      "metadata": {"name": "m", "namespace": "tai-system"},
      "spec": {"selector": {}, "endpoints": [{"port": "http-metrics", "interval": 30}]}},
     "30 is not of type 'string' (at spec.endpoints.0.interval"),
    ({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
      "metadata": {"name": "s", "namespace": "tai-system"},
      "spec": {"scaleTargetRef": {"name": "governor-blue"}, "triggers": [{"typ": "cpu"}]}},
     "'type' is a required property (at spec.triggers.0"),
    ({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
      "metadata": {"name": "c", "namespace": "istio-system"},
      "spec": {"secretName": "tai-tls-cert", "dnsNames": ["api.tai.example.com"]}},
     "'issuerRef' is a required property (at spec"),
])
def test_prometheus_keda_and_cert_manager_resources_use_their_crd_schemas(
        obj: dict[str, Any], fragment: str) -> None:
    problems = [str(p) for p in validate_objects([obj], "1.34").problems]
    assert any(fragment in p for p in problems), problems


def test_an_unknown_kind_of_a_known_group_is_refused() -> None:
    obj = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualServce",
           "metadata": {"name": "v", "namespace": "tai-system"}, "spec": {}}
    problems = [p.message for p in validate_objects([obj], "1.34").problems]
    assert problems == ["cloudcoil-models-istio 1.24.2.1 has no VirtualServce in "
                        "cloudcoil.models.istio.networking.v1"]


def test_duplicates_and_unknown_versions_are_reported() -> None:
    report = validate_objects([DEPLOYMENT, DEPLOYMENT], "1.34")
    assert [p.message for p in report.problems] == ["defined twice in the same bundle"]
    report = validate_objects([DEPLOYMENT], "1.99")
    assert "no schemas for Kubernetes 1.99" in report.problems[0].message


def test_helm_list_documents_are_flattened() -> None:
    text = "---\n# only a comment\n---\n" + yaml.safe_dump(
        {"apiVersion": "v1", "kind": "List", "items": [DEPLOYMENT]})
    assert load_documents(text) == [DEPLOYMENT]


def test_release_files_pin_the_chart_and_carry_the_values() -> None:
    files = release_files([RELEASE])
    spec = yaml.safe_load(files["releases/vault.yaml"])
    assert spec == {"name": "vault", "namespace": "vault", "chart": "vault",
                    "repository": "https://helm.releases.hashicorp.com", "version": "0.31.0",
                    "values_file": "values/vault.yaml"}
    assert yaml.safe_load(files["values/vault.yaml"]) == RELEASE["values"]


@pytest.mark.parametrize("version", ["latest", "^0.31", "0.31", ">=0.31.0", "", "0.31.x"])
def test_a_release_without_an_exact_version_is_refused(version: str) -> None:
    message = "not pinned to an exact version" if version else "lacks version"
    with pytest.raises(BundleError, match=message):
        release_files([{**RELEASE, "version": version}])


def test_summary_lists_every_artifact_deterministically(tmp_path: Path) -> None:
    write(plan(tmp_path / "gke", {"cluster.json": "{}\n"}))
    write(plan(tmp_path / "vault", {"values/vault.yaml": "a: 1\n"}))
    first = summarise(tmp_path, "europe-west1", "plan")
    write(plan(tmp_path, first, prune=False))
    second = summarise(tmp_path, "europe-west1", "plan")
    assert first == second, "the summary does not list itself or change on a rerun"
    doc = json.loads(first["summary.json"])
    assert doc["artifact_count"] == 2
    assert [a["path"] for a in doc["roles"]["gke"]] == ["gke/cluster.json"]
    assert "| `vault/values/vault.yaml` |" in first["SUMMARY.md"]
