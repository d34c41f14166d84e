"""tai_chart_mirror: every third-party release fetched from one repository or OCI registry,
at the chart name and pinned version the plan rendered."""

from __future__ import annotations

from tai_deploy.chart_source import chart_source

SPEC = {"name": "keda", "chart": "keda", "version": "2.18.1",
        "repository": "https://kedacore.github.io/charts"}


def test_without_a_mirror_the_chart_comes_from_its_own_repository() -> None:
    assert chart_source(SPEC) == {"chart_ref": "keda",
                                  "repo_url": "https://kedacore.github.io/charts"}


def test_a_chart_repository_mirror_replaces_the_repository_only() -> None:
    assert chart_source(SPEC, "https://charts.internal.example.com/tai/") == {
        "chart_ref": "keda", "repo_url": "https://charts.internal.example.com/tai"}


def test_an_oci_mirror_names_the_chart_inside_the_registry_without_a_repository() -> None:
    # helm install oci://host/path/CHART --version V (https://helm.sh/docs/topics/registries/)
    assert chart_source(SPEC, "oci://registry.internal.example.com/helm-charts") == {
        "chart_ref": "oci://registry.internal.example.com/helm-charts/keda", "repo_url": ""}
