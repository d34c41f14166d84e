"""Pod waits that see a crash loop instead of waiting for "Running" until the timeout.

The pod shapes follow the Kubernetes API reference (core/v1 PodStatus, ContainerStatus:
state.waiting.reason, lastState.terminated.{reason,exitCode,message}; the kubelet's waiting
reasons CrashLoopBackOff, ImagePullBackOff, ErrImagePull, CreateContainerConfigError).
"""

from __future__ import annotations

from typing import Any

from tai_deploy.pod_status import certificate_wait, deployment_wait, pod_wait

KMS_ERROR = ("Error parsing Seal configuration: error fetching GCP CKMS wrapper key information: "
             "rpc error: code = PermissionDenied desc = Permission 'cloudkms.cryptoKeyVersions."
             "useToEncrypt' denied")


def pod(name: str, phase: str, statuses: list[dict[str, Any]], init: list[dict[str, Any]]
        | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "containerStatuses": statuses}
    if init is not None:
        status["initContainerStatuses"] = init
    return {"metadata": {"name": name, "namespace": "vault"}, "status": status}


def running(name: str = "vault") -> dict[str, Any]:
    return {"name": name, "ready": False, "restartCount": 0, "state": {"running": {}}}


def crashing(name: str = "vault") -> dict[str, Any]:
    return {"name": name, "ready": False, "restartCount": 4,
            "state": {"waiting": {"reason": "CrashLoopBackOff",
                                  "message": "back-off 1m20s restarting failed container"}},
            "lastState": {"terminated": {"reason": "Error", "exitCode": 1,
                                         "message": KMS_ERROR}}}


def test_every_pod_running_is_done() -> None:
    pods = [pod(f"vault-{i}", "Running", [running()]) for i in range(3)]
    assert pod_wait(pods, 3) == {"done": True, "failed": False, "message": ""}


def test_fewer_pods_than_wanted_is_not_done() -> None:
    pods = [pod("vault-0", "Running", [running()]), pod("vault-1", "Pending", [])]
    assert pod_wait(pods, 3) == {"done": False, "failed": False, "message": ""}


def test_a_crash_loop_fails_with_the_containers_last_error() -> None:
    # The kubelet reports phase Running between two restarts of a crash-looping container.
    pods = [pod("vault-0", "Running", [running()]), pod("vault-1", "Running", [crashing()]),
            pod("vault-2", "Running", [running()])]
    result = pod_wait(pods, 3)
    assert result["failed"] and not result["done"]
    assert result["message"] == (
        f"Pod vault/vault-1: container vault is in CrashLoopBackOff (restarted 4 times); its "
        f"last run ended with Error (exit code 1): {KMS_ERROR}.")


def test_an_image_pull_failure_fails_with_the_kubelets_message() -> None:
    pulling = {"name": "vault", "ready": False, "restartCount": 0,
               "state": {"waiting": {"reason": "ImagePullBackOff",
                                     "message": 'Back-off pulling image "hashicorp/vault:9.9"'}}}
    result = pod_wait([pod("vault-0", "Pending", [pulling])], 1)
    assert result["failed"]
    assert result["message"] == ('Pod vault/vault-0: container vault is in ImagePullBackOff: '
                                 'Back-off pulling image "hashicorp/vault:9.9".')


def test_a_crashing_init_container_fails_too() -> None:
    result = pod_wait([pod("vault-0", "Pending", [], init=[crashing("init-tls")])], 1)
    assert result["failed"]
    assert result["message"].startswith("Pod vault/vault-0: init container init-tls is in "
                                        "CrashLoopBackOff")


def test_a_container_still_creating_is_only_waited_for() -> None:
    creating = {"name": "vault", "ready": False, "restartCount": 0,
                "state": {"waiting": {"reason": "ContainerCreating"}}}
    assert pod_wait([pod("vault-0", "Pending", [creating])], 1)["failed"] is False


def test_a_failed_pod_fails_with_its_reason() -> None:
    evicted = {"metadata": {"name": "vault-0", "namespace": "vault"},
               "status": {"phase": "Failed", "reason": "Evicted",
                          "message": "The node was low on resource: ephemeral-storage."}}
    result = pod_wait([evicted], 1)
    assert result["failed"]
    assert result["message"] == ("Pod vault/vault-0 failed (Evicted): The node was low on "
                                 "resource: ephemeral-storage.")


def test_a_wait_for_ready_reads_the_ready_condition() -> None:
    ready = pod("vault-0", "Running", [running()])
    ready["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    unready = pod("vault-1", "Running", [running()])
    unready["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    assert pod_wait([ready, unready], 2, "Ready")["done"] is False
    assert pod_wait([ready], 1, "Ready")["done"] is True


def test_the_filter_tells_an_until_when_to_stop() -> None:
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "tai_pods", Path(__file__).resolve().parents[1] / "plugins/filter/tai_pods.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    wait = module.FilterModule().filters()["tai_pod_wait"]
    assert wait([pod("vault-0", "Running", [crashing()])], "3")["stop"] is True
    assert wait([pod("vault-0", "Pending", [])], "1")["stop"] is False


WEBHOOK_REFUSAL = (
    'Internal error occurred: failed calling webhook "vault.hashicorp.com": failed to call '
    'webhook: Post "https://vault-agent-injector-svc.vault.svc:443/mutate?timeout=30s": no '
    'endpoints available for service "vault-agent-injector-svc"')


def deployment(*conditions: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "governor-blue", "namespace": "tai-system", "generation": 1},
            "status": {"conditions": list(conditions)}}


def test_a_deployment_whose_pods_are_refused_stops_the_wait_with_the_api_servers_answer() -> None:
    dep = deployment({"type": "Available", "status": "False"},
                     {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"},
                     {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                      "message": WEBHOOK_REFUSAL})
    wait = deployment_wait([dep])
    assert (wait["done"], wait["failed"], wait["stop"]) == (False, True, True)
    assert wait["message"] == ("Deployment tai-system/governor-blue cannot create its pods "
                               f"(FailedCreate): {WEBHOOK_REFUSAL}.")


def test_a_deployment_past_its_progress_deadline_stops_the_wait() -> None:
    dep = deployment({"type": "Progressing", "status": "False",
                      "reason": "ProgressDeadlineExceeded",
                      "message": 'ReplicaSet "governor-blue-5d8" has timed out progressing.'})
    assert deployment_wait([dep])["message"] == (
        'Deployment tai-system/governor-blue stopped progressing: ReplicaSet "governor-blue-5d8"'
        " has timed out progressing.")


def test_an_available_deployment_or_one_still_rolling_out() -> None:
    assert deployment_wait([deployment({"type": "Available", "status": "True"})])["done"]
    rolling = deployment_wait([deployment({"type": "Available", "status": "False"})])
    assert (rolling["stop"], rolling["message"]) == (False, "")
    assert deployment_wait([])["stop"] is False  # not created yet: keep waiting


def test_a_certificate_is_ready_only_for_its_current_generation() -> None:
    cert: dict[str, Any] = {
        "metadata": {"name": "tai-tls-cert", "generation": 2},
        "status": {"conditions": [{"type": "Ready", "status": "True", "observedGeneration": 1}]}}
    assert certificate_wait(cert)["done"] is False
    cert["status"]["conditions"][0]["observedGeneration"] = 2
    assert certificate_wait(cert) == {"done": True, "message": ""}
    pending = {"metadata": {"generation": 1}, "status": {"conditions": [
        {"type": "Ready", "status": "False", "reason": "DoesNotExist",
         "message": "Issuing certificate as Secret does not exist"}]}}
    assert certificate_wait(pending)["message"] == (
        "Ready is False (DoesNotExist: Issuing certificate as Secret does not exist)")
    assert "cert-manager controller running" in certificate_wait({"metadata": {}})["message"]
    assert certificate_wait(None)["message"] == "it does not exist"
