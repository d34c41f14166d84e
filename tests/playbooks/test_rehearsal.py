"""The rehearsal (`make rehearsal`): the whole first apply of a region, then the same command.

``site.yml -l europe-west1 -e tai_apply=true`` from an empty project and an empty cluster
against the GCP and Kubernetes TEST DOUBLES, stand-in charts from a loopback chart repository
(``tai_chart_mirror``) and a real OpenBao server (tests/helpers/rehearsal.py). The first run
creates everything the plan promised; the second changes nothing.
"""

from __future__ import annotations

import pytest
from helpers.k8s_double import Behaviour
from helpers.rehearsal import rehearsal

REGION = "europe-west1"


@pytest.mark.playbook
@pytest.mark.rehearsal
def test_the_first_apply_of_a_region_converges_and_a_second_changes_nothing() -> None:
    with rehearsal(REGION) as lab:
        first = lab.apply()
        print("\n" + first.summary("first apply "))
        assert first.run.returncode == 0, first.run.output[-6000:]
        assert first.recap["changed"] > 0
        kube, gcp = lab.kube, lab.gcp
        # what the plan promised exists: the cluster, the namespaces, every release's record
        assert any(c["status"] == "RUNNING" for c in gcp.clusters.values())
        for ns in ("istio-system", "monitoring", "logging", "vault", "keda", "tai-system"):
            assert kube.find("Namespace", "", ns) is not None, ns
        releases = {s["metadata"]["labels"]["name"] for s in kube.objects("secrets")
                    if (s["metadata"].get("labels") or {}).get("owner") == "helm"}
        assert {"istio-base", "istiod", "istio-ingressgateway", "kube-prometheus-stack",
                "fluent-bit", "vault", "keda", "cert-manager", "tai"} <= releases, releases
        # every chart came from the mirror, none from upstream
        assert lab.chart_requests and all(p.startswith("/") for p in lab.chart_requests)

        second = lab.apply()
        print(second.summary("second apply"))
        assert second.run.returncode == 0, second.run.output[-6000:]
        # Nothing changes: the live overlay holds only what differs from the plan.
        assert second.changed_tasks == [] and second.recap["changed"] == 0, second.changed_tasks
        # ... and writes nothing to Google's APIs: every call of the second run only reads
        assert second.gcp_writes == 0 and second.gcp_reads > 0, second.summary("second apply")


@pytest.mark.playbook
@pytest.mark.rehearsal
def test_a_first_apply_with_the_vault_injector_down_stops_before_the_tai_release() -> None:
    """The agent injector's pods never become available: its webhook (failurePolicy Fail, the
    TAI namespace selected) has no endpoint, so the API server would refuse every TAI pod. The
    apply stops after Vault, names the webhook and what to check, and installs nothing of TAI."""
    def injector_down(image: str) -> Behaviour:
        return Behaviour(available="vault-agent-injector" not in image)

    with rehearsal(REGION, behaviour=injector_down) as lab:
        run = lab.apply("-e", "vault_pods_timeout=6", "-e", "vault_pods_poll_interval=2")
        assert run.run.returncode != 0
        failure = run.run.stdout[run.run.stdout.rindex("fatal: ["):]
        assert "Stop when the Vault agent injector cannot admit the TAI pods" in (
            run.run.stdout[:run.run.stdout.rindex("fatal: [")].rsplit("TASK [", 1)[1])
        assert ("The Vault agent injector (Deployment vault/vault-agent-injector) has no "
                "available pod after 6 seconds (vault_pods_timeout); its webhook "
                "vault.hashicorp.com (failurePolicy Fail) makes the API server refuse every pod "
                "in tai-system, so nothing of the TAI release was installed or changed") in (
            " ".join(failure.split()))
        assert "Traceback" not in run.run.output
        # nothing of TAI exists: no release record, no workload in its namespace
        assert not [s for s in lab.kube.objects("secrets", "tai-system")
                    if (s["metadata"].get("labels") or {}).get("owner") == "helm"]
        assert lab.kube.objects("deployments.apps", "tai-system") == []
        assert lab.kube.objects("statefulsets.apps", "tai-system") == []
