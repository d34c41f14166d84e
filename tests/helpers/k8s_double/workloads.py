"""The controllers of the workloads an apply waits for, in the Kubernetes API TEST DOUBLE.

Part of the Kubernetes API TEST DOUBLE (NOT Kubernetes): StatefulSets (with their Pods, created
through admission: admission.py), DaemonSets, Jobs, PersistentVolumeClaims, LoadBalancer
Services, HorizontalPodAutoscalers and PodDisruptionBudgets reach the status their controllers
report once done, and Certificates are issued (cert_manager.py); a pod refused by admission is a
Warning Event. Nothing runs in the pods. Deployments have their own controller
(deployments.py).
"""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from collections.abc import Mapping
from typing import Any

from .admission import Admission
from .cert_manager import CertManager
from .common import _now_iso


class Workloads(CertManager, Admission):
    """The controllers of StatefulSets, DaemonSets, Jobs, PVCs, LoadBalancers, HPAs, PDBs."""

    # -- the other controllers the apply waits for ----------------------------------------

    def _reconcile_workloads(self, now: float) -> None:
        """StatefulSets (with their Pods), DaemonSets, Jobs, PersistentVolumeClaims and
        LoadBalancer Services reach the status their controllers report once done (API
        reference: StatefulSetStatus, DaemonSetStatus, JobStatus, PersistentVolumeClaimStatus,
        ServiceStatus). Every pod becomes Running and Ready ``pod_ready_delay`` seconds after
        its workload was written; nothing runs in them."""
        for (q, ns, name), obj in list(self._objects.items()):
            meta = obj["metadata"]
            age = now - self._written_at.get((q, ns, name), 0.0)
            generation = meta.get("generation", 1)
            if q == "statefulsets.apps":
                spec = obj.get("spec") or {}
                replicas = int(spec.get("replicas", 1))
                template = json.dumps(spec.get("template"), sort_keys=True).encode()
                revision = f"{name}-{hashlib.sha256(template).hexdigest()[:10]}"
                created = self._sync_pods(ns, name, obj, replicas, revision,
                                          ready=age >= self.pod_ready_delay)
                ready = created if age >= self.pod_ready_delay else 0
                self._set_status(obj, {
                    "observedGeneration": generation, "replicas": created,
                    "readyReplicas": ready, "currentReplicas": created,
                    "updatedReplicas": created, "availableReplicas": ready,
                    "currentRevision": revision, "updateRevision": revision,
                    "collisionCount": 0})
            elif q == "daemonsets.apps":
                nodes = 3 if age >= self.pod_ready_delay else 0
                self._set_status(obj, {
                    "observedGeneration": generation, "desiredNumberScheduled": 3,
                    "currentNumberScheduled": 3, "numberReady": nodes,
                    "numberAvailable": nodes, "updatedNumberScheduled": 3,
                    "numberMisscheduled": 0, **({"numberUnavailable": 3} if not nodes else {})})
            elif q == "jobs.batch" and age >= self.pod_ready_delay and not (
                    obj.get("status") or {}).get("completionTime"):
                start = _now_iso(now - age)
                self._set_status(obj, {
                    "startTime": start, "completionTime": _now_iso(now), "succeeded": 1,
                    "ready": 0, "terminating": 0, "uncountedTerminatedPods": {},
                    "conditions": [
                        {"type": "SuccessCriteriaMet", "status": "True",
                         "reason": "CompletionsReached", "message": "Reached expected number "
                         "of succeeded pods", "lastProbeTime": _now_iso(now),
                         "lastTransitionTime": _now_iso(now)},
                        {"type": "Complete", "status": "True", "reason": "CompletionsReached",
                         "message": "Reached expected number of succeeded pods",
                         "lastProbeTime": _now_iso(now), "lastTransitionTime": _now_iso(now)}]})
            elif q == "persistentvolumeclaims":
                spec = obj.get("spec") or {}
                self._set_status(obj, {
                    "phase": "Bound", "accessModes": spec.get("accessModes") or [],
                    "capacity": (spec.get("resources") or {}).get("requests") or {}})
            elif q == "services" and (obj.get("spec") or {}).get("type") == "LoadBalancer":
                index = sum(map(ord, f"{ns}/{name}")) % 250
                self._set_status(obj, {"loadBalancer": {"ingress": [
                    {"ip": f"10.128.0.{index + 2}", "ipMode": "VIP"}]}})
            elif q == "certificates.cert-manager.io":
                self._issue_certificate(ns, obj, now)
            elif q in {"horizontalpodautoscalers.autoscaling", "poddisruptionbudgets.policy"}:
                status = dict(obj.get("status") or {})
                if status.get("observedGeneration") != generation:
                    status["observedGeneration"] = generation
                    if q == "poddisruptionbudgets.policy":
                        status.update({"currentHealthy": 0, "desiredHealthy": 0,
                                       "disruptionsAllowed": 0, "expectedPods": 0})
                    self._set_status(obj, status)

    def _sync_pods(self, ns: str, owner: str, sts: Mapping[str, Any], replicas: int,
                   revision: str, *, ready: bool) -> int:
        """Create, update and delete the pods of a StatefulSet; the number that exist."""
        template = (sts.get("spec") or {}).get("template") or {}
        created = replicas
        for i in range(replicas):
            key = ("pods", ns, f"{owner}-{i}")
            pod = self._objects.get(key)
            if pod is None:
                refusal = self._admission_refusal(ns, template.get("metadata") or {})
                if refusal is not None:  # the controller records it and retries later
                    self._record_event(sts, "FailedCreate", f"create Pod {owner}-{i} in "
                                       f"StatefulSet {owner} failed error: {refusal}")
                    created = i
                    break
                pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {
                    **copy.deepcopy(template.get("metadata") or {}), "name": f"{owner}-{i}",
                    "namespace": ns, "uid": str(uuid.uuid4()), "creationTimestamp": _now_iso(),
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                                         "name": owner, "uid": sts["metadata"]["uid"],
                                         "controller": True, "blockOwnerDeletion": True}],
                    "resourceVersion": str(next(self._rv))},
                    "spec": copy.deepcopy(template.get("spec") or {}), "status": {}}
                pod["metadata"].setdefault("labels", {}).update({
                    "apps.kubernetes.io/pod-index": str(i),
                    "statefulset.kubernetes.io/pod-name": f"{owner}-{i}",
                    "controller-revision-hash": revision})
                self._objects[key] = pod
            state = "True" if ready else "False"
            containers = [c.get("name", "") for c in (pod["spec"].get("containers") or [])]
            self._set_status(pod, {
                "phase": "Running", "podIP": f"10.4.0.{10 + i}", "hostIP": "10.16.0.2",
                "startTime": pod["metadata"]["creationTimestamp"],
                "conditions": [{"type": t, "status": state if t in ("Ready", "ContainersReady")
                                else "True", "lastTransitionTime": _now_iso()}
                               for t in ("PodScheduled", "Initialized", "ContainersReady",
                                         "Ready")],
                "containerStatuses": [{"name": c, "ready": ready, "restartCount": 0,
                                       "started": True, "image": "", "imageID": "",
                                       "state": {"running": {"startedAt": _now_iso()}}}
                                      for c in containers]})
        for key in [k for k in self._objects if k[0] == "pods" and k[1] == ns
                    and k[2].startswith(owner + "-") and k[2][len(owner) + 1:].isdigit()
                    and int(k[2][len(owner) + 1:]) >= replicas]:
            del self._objects[key]
        return created

    def _record_event(self, about: Mapping[str, Any], reason: str, message: str) -> None:
        """A Warning Event about an object, as a controller records it (core/v1 Event); one
        per object and reason, its count bumped when it repeats."""
        meta = about["metadata"]
        ns, name = str(meta.get("namespace", "")), str(meta["name"])
        event_name = f"{name}.{hashlib.sha256(reason.encode()).hexdigest()[:16]}"
        key = ("events", ns, event_name)
        event = self._objects.get(key)
        if event is not None:
            if event.get("message") != message:
                event["message"] = message
                event["count"] = int(event.get("count", 1)) + 1
                event["lastTimestamp"] = _now_iso()
                event["metadata"]["resourceVersion"] = str(next(self._rv))
            return
        self._objects[key] = {
            "apiVersion": "v1", "kind": "Event", "type": "Warning", "reason": reason,
            "message": message, "count": 1, "firstTimestamp": _now_iso(),
            "lastTimestamp": _now_iso(),
            "involvedObject": {"kind": about.get("kind"), "namespace": ns, "name": name,
                               "uid": meta.get("uid")},
            "source": {"component": "statefulset-controller"},
            "metadata": {"name": event_name, "namespace": ns, "uid": str(uuid.uuid4()),
                         "creationTimestamp": _now_iso(),
                         "resourceVersion": str(next(self._rv))}}
