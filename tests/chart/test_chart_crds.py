"""A chart's crds/ folder, read with the real `helm show crds` and checked before it is
applied server-side (Helm installs crds/ once and never upgrades it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from tai_deploy.chart_crds import ChartCrdError, chart_crds, show_crds_argv

HELM = shutil.which("helm") or str(Path(__file__).resolve().parents[2] / ".venv/bin/helm")

# The shape of a CRD as kubernetes-validate's apiextensions.k8s.io/v1 schema requires it.
CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {"group": "example.com", "scope": "Namespaced",
             "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                 "openAPIV3Schema": {"type": "object", "properties": {
                     "spec": {"type": "object", "properties": {
                         "size": {"type": "integer"}}}}}}}]}}


def _chart(tmp_path: Path, *crds: object) -> Path:
    chart = tmp_path / "widgets"
    (chart / "crds").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: widgets\nversion: 1.2.3\n")
    for i, crd in enumerate(crds):
        (chart / "crds" / f"{i}.yaml").write_text(yaml.safe_dump(crd))
    return chart


def test_the_crds_of_a_chart_are_read_and_validated(tmp_path: Path) -> None:
    shown = subprocess.run([HELM, "show", "crds", str(_chart(tmp_path, CRD))],
                           capture_output=True, text=True, check=True).stdout
    assert chart_crds(shown, "widgets", "1.34") == [CRD]


def test_something_else_in_crds_is_refused(tmp_path: Path) -> None:
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
    shown = subprocess.run([HELM, "show", "crds", str(_chart(tmp_path, CRD, config))],
                           capture_output=True, text=True, check=True).stdout
    with pytest.raises(ChartCrdError) as exc:
        chart_crds(shown, "widgets", "1.34")
    assert str(exc.value) == ("the crds/ folder of release widgets holds a ConfigMap, not a "
                              "apiextensions.k8s.io/v1 CustomResourceDefinition")


def test_an_invalid_crd_is_refused_with_kubernetes_validates_message() -> None:
    bad = yaml.safe_load(yaml.safe_dump(CRD))
    bad["spec"]["scope"] = 3
    with pytest.raises(ChartCrdError) as exc:
        chart_crds(yaml.safe_dump(bad), "widgets", "1.34")
    assert "(at spec.scope)" in str(exc.value)


def test_helm_show_crds_of_a_pinned_version_from_a_repository_or_a_registry() -> None:
    spec = {"chart": "kube-prometheus-stack", "version": "79.5.0",
            "repository": "https://prometheus-community.github.io/helm-charts"}
    assert show_crds_argv("helm", spec) == [
        "helm", "show", "crds", "kube-prometheus-stack", "--repo",
        "https://prometheus-community.github.io/helm-charts", "--version", "79.5.0"]
    oci = {**spec, "repository": "oci://mirror.example/charts/"}
    assert show_crds_argv("helm", oci) == [
        "helm", "show", "crds", "oci://mirror.example/charts/kube-prometheus-stack",
        "--version", "79.5.0"]
