"""The blue-green core (module_utils/tai_deploy/bluegreen/) against the Kubernetes API double.

Every test reads the outcome from the double's stored objects and request log, the way a
real API server would show it, not from the code's own report.
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers.ansible_run import REPO, ansible_env, run_playbook
from helpers.bluegreen_env import NAMESPACE, SERVICES, chart_objects
from helpers.k8s_double import Fault, KubeApiDouble
from tai_deploy.bluegreen import (
    ANNOTATION,
    KEDA_PAUSED_REPLICAS,
    BlueGreen,
    Record,
    Settings,
    SwapError,
    Target,
    readiness,
    run,
    with_version,
)
from tai_deploy.k8s_api import (
    ClusterAccess,
    KubeClient,
    KubeConfigError,
    access_from_options,
    load_kubeconfig,
)

IMAGE = "gcr.io/ggen-project/governor"
SVC_PATH = f"/api/v1/namespaces/{NAMESPACE}/services/governor"


@pytest.fixture
def client(double: KubeApiDouble) -> Iterator[KubeClient]:
    with KubeClient(ClusterAccess(server=double.url)) as c:
        yield c


Factory = Callable[..., BlueGreen]


@pytest.fixture
def bg(client: KubeClient) -> Factory:
    def make(check_mode: bool = False, **settings: Any) -> BlueGreen:
        values: dict[str, Any] = {"poll_interval": 0.05, "scale_down_delay": 0.0,
                                  "progress_deadline": 5.0, **settings}
        return BlueGreen(client, Settings(NAMESPACE, **values), check_mode=check_mode)
    return make


def selector(double: KubeApiDouble, name: str = "governor") -> dict[str, str]:
    return dict(double.get("Service", NAMESPACE, name)["spec"]["selector"])


def image(double: KubeApiDouble, dep: str) -> str | None:
    obj = double.find("Deployment", NAMESPACE, dep)
    return str(obj["spec"]["template"]["spec"]["containers"][0]["image"]) if obj else None


def replicas(double: KubeApiDouble, dep: str) -> int | None:
    obj = double.find("Deployment", NAMESPACE, dep)
    return int(obj["spec"]["replicas"]) if obj else None


def record(double: KubeApiDouble, name: str = "governor") -> Record:
    ann = double.get("Service", NAMESPACE, name)["metadata"]["annotations"][ANNOTATION]
    return Record.from_annotation(ann, name)


def assert_selectors_always_whole(double: KubeApiDouble) -> None:
    for (_, name), history in double.selector_history.items():
        app = name.removesuffix("-preview")
        for _, sel in history:
            assert sel.get("app") == app and sel.get("slot") in ("blue", "green"), (name, sel)


# ------------------------------------------------------------------------------------------
# versions pinned by digest


DIGEST = "sha256:" + "3b" * 32


def test_a_version_with_its_digest_is_deployed_pinned_and_a_second_run_changes_nothing(
        double: KubeApiDouble, bg: Factory) -> None:
    pinned = f"v1.1.0@{DIGEST}"
    out = bg().promote([Target("governor", version=pinned)])[0]
    assert out.changed and out.after["active_slot"] == "green"
    assert image(double, "governor-green") == f"{IMAGE}:v1.1.0@{DIGEST}"
    assert record(double).active_image == f"{IMAGE}:v1.1.0@{DIGEST}"
    again = bg().promote([Target("governor", version=pinned)])[0]
    assert not again.changed and not again.promotion_needed
    # The same tag with another digest is another image: it goes to the idle slot.
    other = "sha256:" + "4c" * 32
    out = bg().promote([Target("governor", version=f"v1.1.0@{other}")])[0]
    assert out.changed and image(double, "governor-blue") == f"{IMAGE}:v1.1.0@{other}"


@pytest.mark.parametrize("version", [
    "v1.1.0@sha256:" + "AB" * 32,  # the digest's hex is lowercase
    "v1.1.0@sha256:" + "ab" * 31,  # 62 hex digits
    "v1.1.0@sha512:" + "ab" * 64,  # the chart pins sha256 only
    "@sha256:" + "ab" * 32,        # a digest needs its tag
])
def test_a_malformed_digest_is_refused_before_anything_is_written(
        double: KubeApiDouble, bg: Factory, version: str) -> None:
    before = len(double.writes())
    with pytest.raises(SwapError) as refused:
        run(bg(), "promoted", [Target("governor", version=version)])
    assert (f"service governor: version {version!r} is not a valid image tag (letters, "
            "digits, '_', '.', '-'; at most 128), optionally with its digest "
            "(@sha256:<64 hex digits>)") in str(refused.value)
    assert len(double.writes()) == before


# ------------------------------------------------------------------------------------------
# promote


def test_promote_creates_the_inactive_slot_and_switches_with_one_patch(
        double: KubeApiDouble, bg: Factory) -> None:
    out = bg().promote([Target("governor", version="v1.1.0")])[0]
    assert out.changed and out.after["active_slot"] == "green"
    assert selector(double) == {"app": "governor", "slot": "green"}
    assert double.get("Service", NAMESPACE, "governor")["metadata"]["labels"]["slot"] == "green"
    preview = double.get("Service", NAMESPACE, "governor-preview")
    assert preview["spec"]["selector"] == {"app": "governor", "slot": "blue"}
    assert preview["metadata"]["labels"]["slot"] == "blue"
    assert preview["metadata"]["labels"]["tai.example.com/route"] == "preview"
    assert ANNOTATION not in preview["metadata"]["annotations"]
    green = double.get("Deployment", NAMESPACE, "governor-green")
    assert green["spec"]["template"]["spec"]["containers"][0]["image"] == f"{IMAGE}:v1.1.0"
    assert green["spec"]["replicas"] == 3
    assert green["spec"]["selector"]["matchLabels"] == {"app": "governor", "slot": "green"}
    # Helm keeps managing the new slot: its ownership annotations were carried over.
    assert green["metadata"]["annotations"]["meta.helm.sh/release-name"] == "tai"
    swaps = [r for r in double.writes(SVC_PATH) if r.path == SVC_PATH]
    assert len(swaps) == 1
    patch = swaps[0].body
    assert swaps[0].content_type == "application/merge-patch+json"
    assert patch["spec"] == {"selector": {"slot": "green"}}  # only the slot key moves
    assert patch["metadata"]["resourceVersion"]  # precondition
    rec = record(double)
    assert (rec.phase, rec.active, rec.previous) == ("promoted", "green", "blue")
    assert rec.previous_image == f"{IMAGE}:v1.0.0" and not rec.scaled_down
    # The old slot keeps running until finalize.
    assert replicas(double, "governor-blue") == 3
    assert out.soak_pending and out.scale_down_pending
    assert_selectors_always_whole(double)


def test_the_new_slot_is_read_again_right_before_the_switch(double: KubeApiDouble,
                                                           bg: Factory) -> None:
    bg().promote([Target("governor", version="v1.1.0")])
    log = [(r.method, r.path) for r in double.requests]
    swap = log.index(("PATCH", SVC_PATH))
    assert log[swap - 2:swap] == [
        ("GET", SVC_PATH),  # fresh resourceVersion for the precondition
        ("GET", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/governor-green"),
    ]


def test_promote_twice_changes_nothing(double: KubeApiDouble, bg: Factory) -> None:
    bg().promote([Target("governor", version="v1.1.0")])
    writes = len(double.writes())
    out = bg().promote([Target("governor", version="v1.1.0")])[0]
    assert not out.changed and not out.actions
    assert len(double.writes()) == writes


def test_next_promotion_reuses_the_scaled_down_slot(double: KubeApiDouble, bg: Factory) -> None:
    bg().promote([Target("governor", version="v1.1.0")])
    bg().finalize([Target("governor")])
    assert replicas(double, "governor-blue") == 0
    out = bg().promote([Target("governor", version="v1.2.0")])[0]
    assert selector(double)["slot"] == "blue"
    assert image(double, "governor-blue") == f"{IMAGE}:v1.2.0"
    assert replicas(double, "governor-blue") == 3
    assert any("0 -> 3 replicas" in a for a in out.actions)
    assert record(double).previous_image == f"{IMAGE}:v1.1.0"


def test_several_services_wait_together(double: KubeApiDouble, bg: Factory) -> None:
    outs = bg().promote([Target(s, version="v1.1.0") for s in SERVICES])
    assert [o.after["active_slot"] for o in outs] == ["green"] * 3
    assert all(selector(double, s)["slot"] == "green" for s in SERVICES)


def test_never_available_hits_the_deadline_and_switches_nothing(
        double: KubeApiDouble, bg: Factory) -> None:
    with pytest.raises(SwapError) as err:
        bg(progress_deadline=0.6).promote([Target("governor", version="v1.1.0-never")])
    msg = str(err.value)
    assert "governor-green did not become fully available within 0.6 s" in msg
    assert "0 available of 3" in msg and "no Service was switched" in msg
    assert selector(double)["slot"] == "blue"
    assert not [r for r in double.writes() if "governor-blue" in r.path]
    assert replicas(double, "governor-blue") == 3


def test_the_readiness_wait_backs_off_to_the_poll_interval_and_stops_at_the_deadline(
        client: KubeClient) -> None:
    """On the swap's own clock: pauses double from 0.1 s up to poll_interval, and the last one
    ends at progress_deadline (2.2 s) rather than a whole interval later."""
    now = [time.time()]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    swap = BlueGreen(client, Settings(NAMESPACE, progress_deadline=2.2, poll_interval=1.0),
                     clock=lambda: now[0], sleep=sleep)
    with pytest.raises(SwapError, match=r"did not become fully available within 2\.2 s"):
        swap.promote([Target("governor", version="v1.1.0-never")])
    assert sleeps == pytest.approx([0.1, 0.2, 0.4, 0.8, 0.7])


def test_progress_deadline_exceeded_fails_fast(double: KubeApiDouble, client: KubeClient,
                                               bg: Factory) -> None:
    client.patch(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/governor-blue",
                 {"spec": {"progressDeadlineSeconds": 1}})
    with pytest.raises(SwapError, match="ProgressDeadlineExceeded"):
        bg(progress_deadline=30).promote([Target("governor", version="v1.1.0-never")])
    assert selector(double)["slot"] == "blue"


@pytest.mark.parametrize(("status", "spec", "ready", "why"), [
    ({"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3},
     {}, False, "not observed"),
    ({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 2,
      "unavailableReplicas": 1}, {}, False, "2 available"),
    ({"observedGeneration": 2, "replicas": 5, "updatedReplicas": 3, "availableReplicas": 5},
     {}, False, "5 pods in total"),
    ({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3},
     {"paused": True}, False, "paused"),
    ({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3},
     {}, True, "3 available"),
])
def test_readiness_rules(status: dict[str, Any], spec: dict[str, Any], ready: bool,
                         why: str) -> None:
    dep = {"metadata": {"generation": 2}, "status": status,
           "spec": {"replicas": 3, **spec, "template": {"spec": {"containers": [
               {"name": "governor", "image": "i:2"}]}}}}
    state = readiness(dep, desired=3, image="i:2", container="governor")
    assert state.ready is ready and why in state.detail
    assert not readiness(dep, desired=3, image="i:3", container="governor").ready


def test_conflict_on_the_service_patch_is_retried(double: KubeApiDouble, bg: Factory) -> None:
    double.add_fault(Fault("PATCH", SVC_PATH, action="touch"))
    swapper = bg()
    swapper.promote([Target("governor", version="v1.1.0")])
    assert swapper.conflicts == 1
    statuses = [r.status for r in double.requests if r.method == "PATCH" and r.path == SVC_PATH]
    assert statuses == [409, 200]
    assert selector(double)["slot"] == "green"
    # The concurrent change survived: the retry re-read the object instead of overwriting it.
    labels = double.get("Service", NAMESPACE, "governor")["metadata"]["annotations"]
    assert labels["double.test/touched"] == "1"


def test_endless_conflicts_give_up_without_switching(double: KubeApiDouble,
                                                     bg: Factory) -> None:
    double.add_fault(Fault("PATCH", SVC_PATH, action="touch", times=10))
    with pytest.raises(SwapError, match="409 Conflict"):
        run(bg(conflict_attempts=3), "promoted", [Target("governor", version="v1.1.0")])
    assert selector(double)["slot"] == "blue"


# ------------------------------------------------------------------------------------------
# interruption at every write, then a rerun


def _writes_of_a_promotion(double: KubeApiDouble, bg: Factory) -> list[tuple[str, str]]:
    bg().promote([Target("governor", version="v1.1.0")])
    bg().finalize([Target("governor")])
    return [(r.method, r.path) for r in double.writes()]


FULL_PROMOTION = [
    ("POST", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"),  # the green slot
    # A release of an older chart has no preview Service while only blue is deployed (the
    # lab seeds that shape): create it. The current chart renders it always (test below).
    ("POST", f"/api/v1/namespaces/{NAMESPACE}/services"),
    ("PATCH", SVC_PATH),  # the switch
    ("PATCH", f"/api/v1/namespaces/{NAMESPACE}/services/governor-preview"),  # -> blue
    ("PATCH", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/governor-blue"),  # scale 0
    ("PATCH", SVC_PATH),  # record the scale-down
]


def test_the_write_sequence_of_a_promotion(double: KubeApiDouble, bg: Factory) -> None:
    assert _writes_of_a_promotion(double, bg) == FULL_PROMOTION


@pytest.mark.parametrize("action", ["drop", "drop_after"])
@pytest.mark.parametrize("step", range(len(FULL_PROMOTION)))
def test_interrupted_at_any_write_then_rerun_converges(double: KubeApiDouble, bg: Factory,
                                                       step: int, action: str) -> None:
    method, path = FULL_PROMOTION[step]
    skip = sum(1 for m, p in FULL_PROMOTION[:step] if (m, p) == (method, path))
    double.add_fault(Fault(method, path, action=action, skip=skip))
    with pytest.raises(SwapError, match="run again to resume"):
        run(bg(), "promoted", [Target("governor", version="v1.1.0")], wait_scale_down=True)
    # The lost controller comes back: the same call converges from the cluster's state.
    run(bg(), "promoted", [Target("governor", version="v1.1.0")], wait_scale_down=True)
    assert selector(double) == {"app": "governor", "slot": "green"}
    assert selector(double, "governor-preview")["slot"] == "blue"
    assert replicas(double, "governor-blue") == 0 and replicas(double, "governor-green") == 3
    rec = record(double)
    assert rec.active == "green" and rec.scaled_down
    switches = [s for _, s in double.selector_history[(NAMESPACE, "governor")]]
    assert switches == [{"app": "governor", "slot": "blue"}, {"app": "governor", "slot": "green"}]
    assert_selectors_always_whole(double)
    again = run(bg(), "promoted", [Target("governor", version="v1.1.0")], wait_scale_down=True)
    assert not again[0].changed


def test_a_preview_service_rendered_by_the_chart_is_used_not_created(
        double: KubeApiDouble, client: KubeClient, bg: Factory) -> None:
    """The chart renders <svc>-preview always, also while the other slot is not deployed."""
    preview = next(o for o in chart_objects("governor", 50051,
                                            tags={"blue": "v1.0.0", "green": "v0.9.0"})
                   if o["metadata"]["name"] == "governor-preview")
    client.create(f"/api/v1/namespaces/{NAMESPACE}/services", preview)
    assert double.find("Deployment", NAMESPACE, "governor-green") is None
    before = len(double.writes())
    _writes_of_a_promotion(double, bg)
    writes = [(r.method, r.path) for r in double.writes()[before:]]
    create_service = ("POST", f"/api/v1/namespaces/{NAMESPACE}/services")
    assert writes == [w for w in FULL_PROMOTION if w != create_service]
    assert selector(double, "governor-preview") == {"app": "governor", "slot": "blue"}
    assert selector(double) == {"app": "governor", "slot": "green"}


# ------------------------------------------------------------------------------------------
# KEDA: the idle slot's ScaledObject is paused


SO_PATH = f"/apis/keda.sh/v1alpha1/namespaces/{NAMESPACE}/scaledobjects"


def scaled_object(deployment: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """ScaledObject <svc>-<slot> as the autoscaling role renders it (names and target)."""
    service, slot = deployment.rsplit("-", 1)
    meta: dict[str, Any] = {"name": deployment, "namespace": NAMESPACE, "labels": {
        "app": service, "slot": slot, "app.kubernetes.io/managed-by": "tai-deploy",
        "app.kubernetes.io/component": "autoscaling"}}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": meta,
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                        "name": deployment},
                     "minReplicaCount": 3, "maxReplicaCount": 12,
                     "triggers": [{"type": "cpu", "metricType": "Utilization",
                                   "metadata": {"value": "70"}}]}}


def paused(double: KubeApiDouble, name: str) -> str | None:
    annotations = double.get("ScaledObject", NAMESPACE, name)["metadata"].get("annotations")
    return (annotations or {}).get(KEDA_PAUSED_REPLICAS)


def keda_writes(double: KubeApiDouble) -> list[tuple[str, str, Any]]:
    return [(r.method, r.path.rsplit("/", 1)[-1], r.body) for r in double.writes(SO_PATH)]


def test_finalize_pauses_the_idle_slots_scaled_object_before_scaling_it_down(
        double: KubeApiDouble, bg: Factory) -> None:
    double.seed(scaled_object("scheduler-blue", {"team": "sre"}))
    bg().promote([Target("scheduler", version="v1.1.0")])
    assert paused(double, "scheduler-blue") is None  # still the rollback target: not paused
    assert keda_writes(double) == []
    out = bg().finalize([Target("scheduler")])[0]
    assert paused(double, "scheduler-blue") == "0"
    assert replicas(double, "scheduler-blue") == 0
    annotations = double.get("ScaledObject", NAMESPACE, "scheduler-blue")["metadata"][
        "annotations"]
    assert annotations["team"] == "sre"  # only the pause annotation was touched
    [(method, name, body)] = keda_writes(double)
    assert (method, name) == ("PATCH", "scheduler-blue")
    assert body["metadata"]["annotations"] == {KEDA_PAUSED_REPLICAS: "0"}
    assert body["metadata"]["resourceVersion"]  # precondition, like every write here
    assert double.writes(SO_PATH)[0].content_type == "application/merge-patch+json"
    # Paused first, then scaled down: KEDA never sees the idle slot at 0 while it may act.
    assert [(r.method, r.path) for r in double.writes()[-3:]] == [
        ("PATCH", f"{SO_PATH}/scheduler-blue"),
        ("PATCH", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/scheduler-blue"),
        ("PATCH", f"/api/v1/namespaces/{NAMESPACE}/services/scheduler")]  # the record
    assert any(a.startswith("pause ScaledObject tai-system/scheduler-blue") for a in out.actions)
    writes = len(double.writes())
    assert not bg().finalize([Target("scheduler")])[0].changed
    assert len(double.writes()) == writes


def test_prepare_resumes_the_slots_scaled_object_first(double: KubeApiDouble,
                                                       bg: Factory) -> None:
    double.seed(scaled_object("scheduler-blue"))
    bg().promote([Target("scheduler", version="v1.1.0")])
    bg().finalize([Target("scheduler")])
    double.seed(scaled_object("scheduler-green"))  # the next converge of the autoscaling role
    assert paused(double, "scheduler-blue") == "0"
    before = len(double.writes())
    out = bg().promote([Target("scheduler", version="v1.2.0")])[0]
    assert selector(double, "scheduler")["slot"] == "blue"
    assert paused(double, "scheduler-blue") is None
    # null in the merge patch removed the key (and nothing else was there)
    assert not double.get("ScaledObject", NAMESPACE, "scheduler-blue")["metadata"].get(
        "annotations")
    resume, scale_up = double.writes()[before:before + 2]
    # First the ScaledObject (a paused one would hold the slot at 0), then the Deployment.
    assert (resume.method, resume.path) == ("PATCH", f"{SO_PATH}/scheduler-blue")
    assert resume.body["metadata"]["annotations"] == {KEDA_PAUSED_REPLICAS: None}
    assert resume.body["metadata"]["resourceVersion"]
    assert (scale_up.method, scale_up.path) == (
        "PATCH", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/scheduler-blue")
    assert scale_up.body["spec"]["replicas"] == 3
    assert any(a.startswith("resume ScaledObject tai-system/scheduler-blue")
               for a in out.actions)
    assert paused(double, "scheduler-green") is None  # serving until finalize
    bg().finalize([Target("scheduler")])
    assert paused(double, "scheduler-green") == "0" and paused(double, "scheduler-blue") is None


def test_rollback_of_a_finalized_switch_resumes_the_old_slot(double: KubeApiDouble,
                                                             bg: Factory) -> None:
    double.seed(scaled_object("scheduler-blue"))
    bg().promote([Target("scheduler", version="v1.1.0")])
    bg().finalize([Target("scheduler")])
    out = bg().rollback([Target("scheduler")])[0]
    assert out.rolled_back and selector(double, "scheduler")["slot"] == "blue"
    assert paused(double, "scheduler-blue") is None and replicas(double, "scheduler-blue") == 3


def test_no_scaled_object_means_nothing_to_pause(double: KubeApiDouble, bg: Factory) -> None:
    bg().promote([Target("scheduler", version="v1.1.0")])
    bg().finalize([Target("scheduler")])
    assert replicas(double, "scheduler-blue") == 0
    asked = [(r.method, r.path.rsplit("/", 1)[-1], r.status) for r in double.requests
             if r.path.startswith(SO_PATH)]
    # Looked up (green before it is scaled up, blue before it is scaled down): 404, no write.
    assert asked == [("GET", "scheduler-green", 404), ("GET", "scheduler-blue", 404)]


def test_check_mode_reports_the_pause_and_writes_nothing(double: KubeApiDouble,
                                                         bg: Factory) -> None:
    double.seed(scaled_object("scheduler-blue"), scaled_object("scheduler-green",
                                                               {KEDA_PAUSED_REPLICAS: "0"}))
    planned = bg(check_mode=True).promote([Target("scheduler", version="v1.1.0")])[0]
    assert any(a.startswith("resume ScaledObject tai-system/scheduler-green")
               for a in planned.actions)
    assert paused(double, "scheduler-green") == "0"
    bg().promote([Target("scheduler", version="v1.1.0")])
    before = len(double.writes())
    final = bg(check_mode=True).finalize([Target("scheduler")])[0]
    assert any(a.startswith("pause ScaledObject tai-system/scheduler-blue")
               for a in final.actions)
    assert len(double.writes()) == before
    assert paused(double, "scheduler-blue") is None and replicas(double, "scheduler-blue") == 3


@pytest.mark.parametrize("action", ["drop", "drop_after"])
def test_interrupted_pause_then_rerun_converges(double: KubeApiDouble, bg: Factory,
                                                action: str) -> None:
    double.seed(scaled_object("scheduler-blue"))
    bg().promote([Target("scheduler", version="v1.1.0")])
    double.add_fault(Fault("PATCH", f"{SO_PATH}/scheduler-blue", action=action))
    with pytest.raises(SwapError, match="run again to resume"):
        run(bg(), "finalized", [Target("scheduler")])
    assert replicas(double, "scheduler-blue") == 3  # nothing scaled down without the pause
    run(bg(), "finalized", [Target("scheduler")])
    assert paused(double, "scheduler-blue") == "0" and replicas(double, "scheduler-blue") == 0
    assert record(double, "scheduler").scaled_down


def test_a_scaled_object_that_cannot_be_read_stops_the_scale_down(double: KubeApiDouble,
                                                                  bg: Factory) -> None:
    bg().promote([Target("scheduler", version="v1.1.0")])
    double.add_fault(Fault("GET", f"{SO_PATH}/scheduler-blue", status=403, reason="Forbidden",
                           message='scaledobjects.keda.sh "scheduler-blue" is forbidden'))
    with pytest.raises(SwapError) as err:
        run(bg(), "finalized", [Target("scheduler")])
    assert "is forbidden" in str(err.value) and "run again to resume" in str(err.value)
    assert replicas(double, "scheduler-blue") == 3


# ------------------------------------------------------------------------------------------
# rollback and finalize


def test_rollback_is_one_patch_while_the_old_slot_runs(double: KubeApiDouble,
                                                       bg: Factory) -> None:
    bg().promote([Target("governor", version="v1.1.0")])
    before = len(double.writes())
    out = bg().rollback([Target("governor")])[0]
    assert out.rolled_back and selector(double)["slot"] == "blue"
    new_writes = [(r.method, r.path) for r in double.writes()[before:]]
    assert new_writes[0] == ("PATCH", SVC_PATH)  # traffic moves first, in one patch
    rec = record(double)
    assert (rec.phase, rec.active, rec.previous) == ("rolled-back", "blue", "green")
    assert replicas(double, "governor-green") == 3  # kept for diagnosis until finalize
    again = bg().rollback([Target("governor")])[0]
    assert not again.changed and "already rolled back" in again.message


def test_rollback_after_finalize_scales_the_old_slot_up_first(double: KubeApiDouble,
                                                              bg: Factory) -> None:
    bg().promote([Target("governor", version="v1.1.0")])
    bg().finalize([Target("governor")])
    assert replicas(double, "governor-blue") == 0
    skipped = bg().rollback([Target("governor")], include_finalized=False)[0]
    assert not skipped.changed and selector(double)["slot"] == "green"
    out = bg().rollback([Target("governor")])[0]
    assert out.rolled_back and selector(double)["slot"] == "blue"
    assert replicas(double, "governor-blue") == 3
    assert image(double, "governor-blue") == f"{IMAGE}:v1.0.0"


def test_rollback_guard_and_nothing_recorded(double: KubeApiDouble, bg: Factory) -> None:
    nothing = bg().rollback([Target("scheduler")])[0]
    assert not nothing.changed and "nothing to roll back" in nothing.message
    bg().promote([Target("governor", version="v1.1.0")])
    other = bg().rollback([Target("governor", version="v9.9.9")])[0]
    assert not other.changed and selector(double)["slot"] == "green"
    guarded = bg().rollback([Target("governor", version="v1.1.0")])[0]
    assert guarded.rolled_back and selector(double)["slot"] == "blue"


def test_rollback_refuses_a_selector_changed_by_hand(double: KubeApiDouble, client: KubeClient,
                                                     bg: Factory) -> None:
    bg().promote([Target("governor", version="v1.1.0")])
    client.patch(SVC_PATH, {"spec": {"selector": {"slot": "blue"}}})
    with pytest.raises(SwapError, match="changed by hand"):
        bg().rollback([Target("governor")])


def test_finalize_waits_for_the_rest_of_the_delay(double: KubeApiDouble, bg: Factory) -> None:
    slept: list[float] = []
    bg(scale_down_delay=30).promote([Target("governor", version="v1.1.0")])
    pending = bg(check_mode=True).finalize([Target("governor")])[0]
    assert "s from now" in pending.message and replicas(double, "governor-blue") == 3
    finalizer = bg()
    finalizer.sleep = slept.append
    finalizer.finalize([Target("governor")])
    assert 29 < slept[0] <= 30
    assert replicas(double, "governor-blue") == 0 and record(double).scaled_down
    assert not bg().finalize([Target("governor")])[0].changed


def test_finalize_never_scales_down_what_the_service_selects(
        double: KubeApiDouble, client: KubeClient, bg: Factory) -> None:
    bg().promote([Target("governor", version="v1.1.0")])
    client.patch(SVC_PATH, {"spec": {"selector": {"slot": "blue"}}})  # by hand
    with pytest.raises(SwapError, match="not scaling anything down"):
        bg().finalize([Target("governor")])
    assert replicas(double, "governor-blue") == 3 and replicas(double, "governor-green") == 3


# ------------------------------------------------------------------------------------------
# check mode, inputs, errors


def test_check_mode_reports_the_switch_and_writes_nothing(double: KubeApiDouble,
                                                          bg: Factory) -> None:
    out = bg(check_mode=True).promote([Target("governor", version="v1.1.0")])[0]
    assert out.changed
    assert out.before["active_slot"] == "blue" and out.after["active_slot"] == "green"
    assert out.after["image"] == f"{IMAGE}:v1.1.0"
    assert any(a.startswith("switch Service") for a in out.actions)
    assert not double.writes()


@pytest.mark.parametrize(("seed", "target", "message"), [
    (None, Target("nope", version="v1"), "Service tai-system/nope does not exist"),
    ("noslot", Target("governor", version="v1"), "without a 'slot' key"),
    (None, Target("governor", version="1.0/x"), "is not a valid image tag"),
    (None, Target("governor", version="v1", container="sidecar"), "has no container 'sidecar'"),
    (None, Target("governor"), "the new image or version is required"),
    (None, Target("governor", image="a:1", version="v1"), "give image or version, not both"),
])
def test_bad_input_is_one_sentence(double: KubeApiDouble, client: KubeClient, bg: Factory,
                                   *, seed: str | None, target: Target, message: str) -> None:
    if seed == "noslot":
        client.patch(SVC_PATH, {"spec": {"selector": {"slot": None}}})
    with pytest.raises(SwapError) as err:
        run(bg(), "promoted", [target])
    assert message in str(err.value)
    assert "Traceback" not in str(err.value)


def test_settings_are_checked() -> None:
    with pytest.raises(SwapError, match="slots must be two different"):
        BlueGreen(KubeClient(ClusterAccess(server="http://127.0.0.1:1")),
                  Settings(NAMESPACE, slots=("blue", "blue")))


def test_with_version() -> None:
    assert with_version("gcr.io/p/governor:v1", "v2") == "gcr.io/p/governor:v2"
    assert with_version("localhost:5000/governor", "v2") == "localhost:5000/governor:v2"
    assert with_version("gcr.io/p/g@sha256:abc", "v2") == "gcr.io/p/g:v2"
    pinned = "v2@sha256:" + "0f" * 32
    assert with_version("gcr.io/p/g:v1@sha256:" + "ab" * 32, pinned) == f"gcr.io/p/g:{pinned}"
    assert with_version("localhost:5000/g:v1", pinned) == f"localhost:5000/g:{pinned}"


# ------------------------------------------------------------------------------------------
# kubeconfig


def test_kubeconfig_contexts_token_file_and_exec_plugin(tmp_path: Path) -> None:
    plugin = tmp_path / "fake-auth-plugin"
    plugin.write_text("#!/bin/sh\necho '{\"apiVersion\": \"client.authentication.k8s.io/v1\", "
                      "\"kind\": \"ExecCredential\", \"status\": {\"token\": \"from-exec\"}}'\n")
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    (tmp_path / "token").write_text("from-file\n")
    with KubeApiDouble(token="from-exec") as exec_double, \
            KubeApiDouble(token="from-file") as file_double:
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "exec",
            "clusters": [{"name": "a", "cluster": {"server": exec_double.url}},
                         {"name": "b", "cluster": {"server": file_double.url,
                                                   "insecure-skip-tls-verify": True}}],
            "users": [{"name": "exec", "user": {"exec": {
                "apiVersion": "client.authentication.k8s.io/v1", "command": str(plugin),
                "interactiveMode": "Never"}}},
                      {"name": "file", "user": {"tokenFile": str(tmp_path / "token")}}],
            "contexts": [{"name": "exec", "context": {"cluster": "a", "user": "exec"}},
                         {"name": "file", "context": {"cluster": "b", "user": "file"}}]}
        path = tmp_path / "config"
        path.write_text(yaml.safe_dump(config))
        with KubeClient(load_kubeconfig(str(path))) as c:
            assert c.get("/api")["kind"] == "APIVersions"
        access = load_kubeconfig(str(path), "file")
        assert not access.verify
        with KubeClient(access) as c:
            assert c.get("/api")["kind"] == "APIVersions"
        assert "from-file" not in repr(access)
        with pytest.raises(KubeConfigError, match=r"context 'gke_x' is not in kubeconfig"):
            load_kubeconfig(str(path), "gke_x")
    missing = {"apiVersion": "v1", "kind": "Config", "current-context": "c",
               "clusters": [{"name": "c", "cluster": {"server": "https://x"}}],
               "users": [{"name": "u", "user": {"exec": {"command": "gke-gcloud-auth-plugin-nope",
                                                         "installHint": "Install it."}}}],
               "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}
    (tmp_path / "missing").write_text(yaml.safe_dump(missing))
    with pytest.raises(KubeConfigError, match=r"was not found on PATH; Install it\."), \
            KubeClient(load_kubeconfig(str(tmp_path / "missing"))) as c:
        c.get("/api")
    with pytest.raises(KubeConfigError, match="no kubeconfig found"):
        access_from_options(kubeconfig=str(tmp_path / "absent"))


# ------------------------------------------------------------------------------------------
# the Ansible module


def test_module_documentation_renders() -> None:
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-doc"), "-M",
                           str(REPO / "library"), "blue_green_swap"], capture_output=True,
                          text=True, env=ansible_env(), timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "scale_down_delay" in proc.stdout and "MAX_CONNECTION_AGE" in proc.stdout


def test_module_check_mode_diff_and_messages(double: KubeApiDouble, tmp_path: Path) -> None:
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "Plan a promotion", "blue_green_swap": {
            "api_server": double.url, "service": "governor", "version": "v1.1.0"},
         "check_mode": True, "diff": True, "register": "plan"},
        {"name": "Show", "ansible.builtin.debug": {"var": "plan.services.governor.actions"}},
        {"name": "Give both image and version", "blue_green_swap": {
            "api_server": double.url, "service": "governor", "version": "v1", "image": "a:1"},
         "ignore_errors": True},
        {"name": "Ask a missing context", "blue_green_swap": {
            "kubeconfig": str(tmp_path / "absent"), "service": "governor", "version": "v1"},
         "ignore_errors": True},
    ]}]
    path = tmp_path / "play.yml"
    path.write_text(yaml.safe_dump(play))
    result = run_playbook("-i", "localhost,", "-c", "local", str(path),
                          env={"ANSIBLE_PYTHON_INTERPRETER": sys.executable})
    assert result.returncode == 0, result.output[-3000:]
    assert "active_slot: blue" in result.stdout and "active_slot: green" in result.stdout
    assert "switch Service tai-system/governor from slot blue to green" in result.stdout
    assert "parameters are mutually exclusive: image|version" in result.stdout
    assert "no kubeconfig found at" in result.stdout
    assert "Traceback" not in result.output
    assert not double.writes()
    assert json.dumps(selector(double)) == '{"app": "governor", "slot": "blue"}'
