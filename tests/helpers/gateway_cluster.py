"""A region's cluster as the dns role reads it: the gateway's cert-manager Certificate.

The dns role publishes a region in the geo-routed name only once the gateway's Certificate
(istio-system/tai-tls-cert, group_vars/all/paths.yml) is Ready. ``gateway_cluster`` starts a
Kubernetes API TEST DOUBLE (tests/helpers/k8s_double.py) holding cert-manager's CRDs, a
ClusterIssuer and that Certificate, which the double's minimal cert-manager controller issues
(or, with ``issued=False``, leaves Ready=False as cert-manager reports an order that does not
complete), and writes a kubeconfig naming it under each region's kube context.
"""

from __future__ import annotations

from pathlib import Path

import requests
import yaml

from helpers.k8s_double import KubeApiDouble

CERT_MANAGER_CRDS = (Path(__file__).parent / "standin_charts" / "cert-manager" / "crds"
                     / "cert-manager.io.yaml")
# group_vars/all/paths.yml: tai_kube_context (gke_<project>_<region>_<cluster>)
CONTEXT = "gke_{project}_{region}_tai-cluster"


def gateway_cluster(directory: Path, project: str, regions: tuple[str, ...], *,
                    issued: bool = True) -> tuple[KubeApiDouble, Path]:
    """A started cluster double with the gateway's Certificate, and its kubeconfig (one
    context per region, the first current)."""
    cluster = KubeApiDouble(name="cluster")
    cluster.certificates_issued = issued
    cluster.start()
    crds = [c for c in yaml.safe_load_all(CERT_MANAGER_CRDS.read_text(encoding="utf-8")) if c]
    for path, body in [
            *(("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", c) for c in crds),
            ("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                    "metadata": {"name": "istio-system"}}),
            ("/apis/cert-manager.io/v1/clusterissuers", {
                "apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer",
                "metadata": {"name": "tai-acme-cloud-dns"}, "spec": {"selfSigned": {}}}),
            ("/apis/cert-manager.io/v1/namespaces/istio-system/certificates", {
                "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
                "metadata": {"name": "tai-tls-cert", "namespace": "istio-system"},
                "spec": {"secretName": "tai-tls-cert", "dnsNames": ["tai.example.com"],
                         "issuerRef": {"group": "cert-manager.io", "kind": "ClusterIssuer",
                                       "name": "tai-acme-cloud-dns"}}})]:
        answer = requests.post(cluster.url + path, json=body, timeout=10)
        if answer.status_code != 201:
            cluster.stop()
            raise AssertionError(f"{path}: {answer.status_code} {answer.text}")
    contexts = [CONTEXT.format(project=project, region=r) for r in regions]
    kubeconfig = directory / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": contexts[0],
        "clusters": [{"name": "cluster", "cluster": {"server": cluster.url}}],
        "users": [{"name": "tester", "user": {}}],
        "contexts": [{"name": c, "context": {"cluster": "cluster", "user": "tester"}}
                     for c in contexts]}), encoding="utf-8")
    return cluster, kubeconfig
