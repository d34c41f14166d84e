#!/usr/bin/python
# Copyright: tai-deploy contributors
"""Ansible module: blue-green swap of TAI services (two Deployment slots, one Service)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: blue_green_swap
short_description: Prepare, switch, roll back and scale down the blue/green slots of services
description:
  - Works on the chart's blue-green layout. Per service C(<svc>), Deployments C(<svc>-blue) and
    C(<svc>-green) with pod labels C(app) and C(slot); Service C(<svc>) selects the active slot
    and carries the label C(slot); Service C(<svc>-preview) selects the other slot.
  - The active slot is read from the Service selector. O(state=prepared) puts the new image on
    the inactive slot at the active slot's replica count (creating that Deployment from the
    active one if the chart has not deployed it), points the preview Service at it (creating
    it from the active Service when missing) and waits until it is fully available
    (observedGeneration caught up; spec, updated, available and total replicas all equal; no
    unavailable replica) within O(progress_deadline).
  - O(state=promoted) does the same, then switches the Service with ONE merge patch of the
    slot key of C(spec.selector), the C(slot) label and a record annotation, sent with the
    resourceVersion just read, right after re-reading the new slot and finding it fully
    available. A 409 Conflict makes it re-read and decide again. The selector is never empty
    or half-changed, and traffic never moves to a slot that is not fully available.
  - O(state=rolled_back) switches back to the slot recorded by the last switch (a single patch
    while that slot still runs; after O(state=finalized) it is scaled up and waited for
    first). O(state=finalized) scales the slot that lost traffic to zero once
    O(scale_down_delay) has passed since the switch, waiting for the rest of the delay.
  - KEDA would scale an idle slot back up to its minReplicaCount. When the slot's ScaledObject
    exists (named like the slot's Deployment C(<svc>-<slot>), as the autoscaling role names
    it), scaling the slot to zero first sets its annotation
    C(autoscaling.keda.sh/paused-replicas) to C("0"), and scaling a slot up first removes that
    annotation. No ScaledObject (or no KEDA) means nothing to do; the module's identity needs
    get and patch on C(scaledobjects.keda.sh).
  - With O(lease=true), one blue-green operation at a time per cluster and namespace - a
    C(coordination.k8s.io/v1) Lease C(tai-bluegreen) with C(holderIdentity) (O(lease_holder),
    by default C(user@host <lease_purpose> pid <ansible-playbook pid>)), C(acquireTime),
    C(renewTime) and C(leaseDurationSeconds), held before the first write of a call. With
    O(lease_acquire=true) the call takes it (refused, naming the holder and since when,
    while another holder renews it; taken over once it expired, or at once when its holder
    was a process of this machine that is gone, or with O(break_lease=true)); otherwise it
    must already hold it. Calls renew it while they wait, and stop if somebody else took it.
    O(state=unlocked) releases it if it is still ours. A call with nothing to write never
    touches it.
  - O(state=soaked) is the soak window after a switch - checks O(health_targets) (targets of
    M(grpc_health_check)) every O(check_interval) seconds for O(soak_seconds) and returns
    at the first unhealthy answer (C(healthy=false), not a failure); before each check it
    reads the Services and fails (C(failure_kind=aborted)) when an operator rolled the
    release back, and it renews the lease.
  - A rollback marks the release it replaced aborted on the Service (annotation
    C(bluegreen.tai-deploy.io/aborted)); O(state=prepared) refuses to upgrade to an aborted
    release again unless O(allow_aborted=true). The switch-back is retried with backoff on
    every 5xx, 429 and connection failure (O(switch_back_attempts)); when it still fails the
    message starts with C(SWITCH-BACK FAILED), the Service is marked
    C(bluegreen.tai-deploy.io/needs-operator) and C(failure_kind=switch_back). While the old
    slot runs, the switch-back comes first, onto that slot as it stands; it is scaled up to
    the active slot's count afterwards.
  - Every state is idempotent and resumable after an interruption at any step. What was done
    is read from the cluster (the Service's C(bluegreen.tai-deploy.io/state) annotation, which
    is written in the same patch as the selector, and the Deployments), never from a local
    file.
  - The scale-down delay (default 60 s) covers connection draining. gRPC clients keep HTTP/2
    connections open and a selector change does not move them; the chart makes servers close
    connections after C(GRPC_MAX_CONNECTION_AGE_SECONDS) (30 s) plus a grace period, and
    Istio's DestinationRule limits requests per connection, so after the delay no client is
    still on the old pods. Keep O(scale_down_delay) above MAX_CONNECTION_AGE + grace.
version_added: "0.1.0"
author: tai-deploy contributors
extends_documentation_fragment: [tai_k8s]
options:
  state:
    description:
      - V(prepared) deploys the new image to the inactive slot and waits (see O(wait)); no
        traffic moves.
      - V(promoted) prepares, then switches the Service to the new slot.
      - V(rolled_back) switches back to the slot recorded by the last switch. With O(image) or
        O(version), only services whose active slot runs that image are switched back.
      - V(finalized) scales the slot that lost traffic to zero after the scale-down delay.
      - V(status) reads and reports; never changes anything.
      - V(unlocked) releases the region's lease if this run holds it (see O(lease)).
      - V(soaked) runs the soak window (see O(health_targets)).
    type: str
    choices: [prepared, promoted, rolled_back, finalized, status, unlocked, soaked]
    default: promoted
  namespace:
    description: Namespace of the Services and Deployments.
    type: str
    default: tai-system
  service:
    description: Name of one service (its Service); use O(services) for several at once.
    type: str
  image:
    description:
      - Full image reference for O(service). For V(rolled_back), a guard (see O(state)).
    type: str
  version:
    description:
      - New tag for O(service), optionally with the digest it pins (V(v1.1.0@sha256:<64 hex>),
        deployed as C(repository:v1.1.0@sha256:...)); the repository is taken from the active
        slot's image. Whether a digest is required is the caller's rule (the rolling upgrade
        requires one in production).
    type: str
  container:
    description: Container whose image changes (default the container named like the service).
    type: str
  services:
    description:
      - Several services handled in one call; the waits for availability overlap.
    type: list
    elements: dict
    suboptions:
      name:
        description: Name of the service.
        type: str
        required: true
      image:
        description: Full image reference.
        type: str
      version:
        description:
          - New tag, optionally tag@sha256:<64 hex> (the repository comes from the active slot).
        type: str
      container:
        description: Container whose image changes.
        type: str
  slot_label:
    description: Label key that names the slot in selectors and pod labels.
    type: str
    default: slot
  slots:
    description: The two slot names.
    type: list
    elements: str
    default: [blue, green]
  preview_suffix:
    description:
      - Suffix of the preview Service's name. An empty string means no preview Service.
    type: str
    default: -preview
  wait:
    description:
      - With V(prepared), wait until the new slots are fully available. V(false) starts the
        rollouts and returns.
    type: bool
    default: true
  progress_deadline:
    description:
      - Seconds to wait for a slot to become fully available (like Argo Rollouts'
        progressDeadlineSeconds). On expiry nothing is switched and the task fails.
    type: float
    default: 600
  scale_down_delay:
    description:
      - Seconds the slot that lost traffic keeps running after a switch, for connection
        draining and instant rollback. Recorded on the Service as an absolute time.
    type: float
    default: 60
  wait_scale_down:
    description:
      - With V(promoted) or V(rolled_back), wait out the scale-down delay and scale the old
        slot down in the same task. Otherwise call V(finalized) later (after a soak window).
    type: bool
    default: false
  include_finalized:
    description:
      - With V(rolled_back), also switch back services whose old slot was already scaled down
        (it is scaled up and waited for first). V(false) leaves completed switches alone, as
        the automatic rollback of a failed upgrade does.
    type: bool
    default: true
  poll_interval:
    description: Longest pause between two readings of a Deployment while waiting.
    type: float
    default: 1.0
  conflict_attempts:
    description: How many times a write is attempted when it meets 409 Conflicts.
    type: int
    default: 5
  lease:
    description: Hold the region's Lease (see the description); V(false) ignores it.
    type: bool
    default: false
  lease_holder:
    description: holderIdentity of this run (default C(user@host <lease_purpose> pid N)).
    type: str
  lease_purpose:
    description: What the run does, part of the default O(lease_holder).
    type: str
    default: blue-green
  lease_duration:
    description:
      - leaseDurationSeconds. Longer than the longest task between two renewals (the
        pre-switch health check of the rolling upgrade).
    type: int
    default: 180
  lease_acquire:
    description: This call may take the lease (the first call of an operation).
    type: bool
    default: false
  break_lease:
    description: With O(lease_acquire), take the lease even from a live holder (an emergency).
    type: bool
    default: false
  break_lease_hint:
    description: How the person running it breaks the lease, added to a refusal.
    type: str
    default: "set break_lease=true"
  allow_aborted:
    description: With V(prepared)/V(promoted), upgrade to a release a rollback aborted.
    type: bool
    default: false
  switch_back_attempts:
    description: Attempts of each switch-back on retryable answers (5xx, 429, connection).
    type: int
    default: 6
  health_targets:
    description: With V(soaked), the targets to check (as M(grpc_health_check)'s C(targets)).
    type: list
    elements: dict
  soak_seconds:
    description: With V(soaked), how long the window lasts.
    type: float
    default: 180
  check_interval:
    description: With V(soaked), seconds between two rounds of checks.
    type: float
    default: 2
  request_timeout:
    description: Timeout of one API request, in seconds.
    type: float
    default: 30
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
notes:
  - Check mode reads the cluster and reports what would be done (and the diff of the active
    slot and images) without writing or waiting.
  - Runs on the controller (regions are inventory hosts with C(ansible_connection=local)).
requirements:
  - requests
  - PyYAML
"""

EXAMPLES = r"""
- name: Deploy v1.1.0 of governor and scheduler to their inactive slots and wait
  blue_green_swap:
    state: prepared
    context: "{{ tai_kube_context }}"
    services:
      - {name: governor, version: v1.1.0}
      - {name: scheduler, version: v1.1.0}

- name: Switch governor to the slot that runs v1.1.0
  blue_green_swap:
    state: promoted
    context: "{{ tai_kube_context }}"
    service: governor
    version: v1.1.0

- name: Switch back whatever still runs v1.1.0 and has not been finalized
  blue_green_swap:
    state: rolled_back
    context: "{{ tai_kube_context }}"
    services: [{name: governor, version: v1.1.0}]
    include_finalized: false

- name: Scale the old slots down once the scale-down delay has passed
  blue_green_swap:
    state: finalized
    context: "{{ tai_kube_context }}"
    services: [{name: governor}, {name: scheduler}]

- name: Read which slot is active
  blue_green_swap:
    state: status
    service: coordinator
    host: https://10.0.0.2
    api_key: "{{ tai_kube_token }}"
    ca_cert: /etc/tai/cluster-ca.pem
  register: coordinator_slots
"""

RETURN = r"""
msg:
  description: One line per service saying what was done (or found).
  returned: always
  type: str
  sample: "governor: switched from slot blue to green (gcr.io/ggen-project/governor:v1.1.0)"
services:
  description: Per service, what was done and the resulting state.
  returned: always
  type: dict
  contains:
    changed:
      description: Whether anything was (or, in check mode, would be) changed for it.
      type: bool
    actions:
      description: The changes made, in order.
      type: list
      elements: str
    warnings:
      description: Things left alone, such as a missing preview Service.
      type: list
      elements: str
    active_slot:
      description: The slot the Service selects afterwards.
      type: str
    image:
      description: The image of the active slot afterwards.
      type: str
    target_image:
      description: The image asked for (or the rollback guard).
      type: str
    promotion_needed:
      description: The active slot does not run the target image yet.
      type: bool
    soak_pending:
      description: The last switch was a promotion whose old slot is still running.
      type: bool
    rolled_back:
      description: This call switched the Service back.
      type: bool
    scale_down_pending:
      description: The slot that lost traffic has not been scaled down yet.
      type: bool
    record:
      description: The switch record of the Service's annotation (null before any switch).
      type: dict
    slots:
      description: Per slot, the Deployment, whether it exists, its image and replicas.
      type: dict
    message:
      description: What was done, in words.
      type: str
  sample:
    governor:
      changed: true
      actions:
        - "switch Service tai-system/governor from slot blue to green (...:v1.1.0)"
        - "point Service tai-system/governor-preview at slot blue"
      active_slot: green
      promotion_needed: false
      soak_pending: true
promotion_needed:
  description: Services whose active slot does not run the target image yet.
  returned: always
  type: list
  elements: str
soak_pending:
  description: Services switched by a promotion whose old slot still runs.
  returned: always
  type: list
  elements: str
rolled_back:
  description: Services this call switched back.
  returned: always
  type: list
  elements: str
scale_down_pending:
  description: Services whose previous slot still waits for its scale-down.
  returned: always
  type: list
  elements: str
active_slots:
  description: Active slot per service after the call.
  returned: always
  type: dict
  sample: {"governor": "green", "scheduler": "blue"}
conflicts:
  description: 409 Conflicts met and resolved by re-reading.
  returned: always
  type: int
lease_holder:
  description: The holderIdentity this call used (with O(lease=true)).
  returned: always
  type: str
lease_notes:
  description: A lease taken over or broken, in words.
  returned: always
  type: list
  elements: str
healthy:
  description: With V(soaked), whether the whole window passed.
  returned: with state soaked
  type: bool
failure_kind:
  description:
    - On failure, V(aborted) (an operator rolled the release back), V(aborted_release) (the
      release was aborted before), V(lease) (the region is locked or the lock was lost),
      V(switch_back) (a switch-back failed for good), or an empty string.
  returned: on failure
  type: str
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    from ansible.module_utils.tai_deploy.bluegreen import (
        BlueGreen,
        Settings,
        SwapError,
        Target,
        run,
    )
    from ansible.module_utils.tai_deploy.bluegreen_lease import (
        LeaseError,
        LeaseLock,
        default_holder,
    )
    from ansible.module_utils.tai_deploy.bluegreen_soak import soak
    from ansible.module_utils.tai_deploy.k8s_api import (
        KubeClient,
        KubeConfigError,
        access_from_options,
    )
except ImportError:
    IMPORT_ERROR: str | None = traceback.format_exc()
else:
    IMPORT_ERROR = None

K8S_AUTH_OPTIONS = ("kubeconfig", "context", "host", "api_key", "ca_cert", "client_cert",
                    "client_key", "validate_certs", "proxy")

ARGUMENT_SPEC = {
    "state": {"type": "str", "default": "promoted",
              "choices": ["prepared", "promoted", "rolled_back", "finalized", "status",
                          "unlocked", "soaked"]},
    "namespace": {"type": "str", "default": "tai-system"},
    "service": {"type": "str"},
    "image": {"type": "str"},
    "version": {"type": "str"},
    "container": {"type": "str"},
    "services": {"type": "list", "elements": "dict", "options": {
        "name": {"type": "str", "required": True},
        "image": {"type": "str"},
        "version": {"type": "str"},
        "container": {"type": "str"},
    }},
    "slot_label": {"type": "str", "default": "slot"},
    "slots": {"type": "list", "elements": "str", "default": ["blue", "green"]},
    "preview_suffix": {"type": "str", "default": "-preview"},
    "wait": {"type": "bool", "default": True},
    "progress_deadline": {"type": "float", "default": 600.0},
    "scale_down_delay": {"type": "float", "default": 60.0},
    "wait_scale_down": {"type": "bool", "default": False},
    "include_finalized": {"type": "bool", "default": True},
    "poll_interval": {"type": "float", "default": 1.0},
    "conflict_attempts": {"type": "int", "default": 5},
    "lease": {"type": "bool", "default": False},
    "lease_holder": {"type": "str"},
    "lease_purpose": {"type": "str", "default": "blue-green"},
    "lease_duration": {"type": "int", "default": 180},
    "lease_acquire": {"type": "bool", "default": False},
    "break_lease": {"type": "bool", "default": False},
    "break_lease_hint": {"type": "str", "default": "set break_lease=true"},
    "allow_aborted": {"type": "bool", "default": False},
    "switch_back_attempts": {"type": "int", "default": 6},
    "health_targets": {"type": "list", "elements": "dict"},
    "soak_seconds": {"type": "float", "default": 180.0},
    "check_interval": {"type": "float", "default": 2.0},
    # kubernetes.core's auth options (plugins/doc_fragments/tai_k8s.py).
    "kubeconfig": {"type": "path"},
    "context": {"type": "str"},
    "host": {"type": "str", "aliases": ["api_server"]},
    "api_key": {"type": "str", "no_log": True, "aliases": ["api_token"]},
    "ca_cert": {"type": "path", "aliases": ["ssl_ca_cert"]},
    "client_cert": {"type": "path", "aliases": ["cert_file"]},
    "client_key": {"type": "path", "aliases": ["key_file"]},
    "validate_certs": {"type": "bool", "aliases": ["verify_ssl"]},
    "proxy": {"type": "str"},
    "request_timeout": {"type": "float", "default": 30.0},
}


def _targets(params: dict) -> list:
    if params["services"] is not None:
        return [Target(s["name"], s.get("image"), s.get("version"), s.get("container"))
                for s in params["services"]]
    return [Target(params["service"], params["image"], params["version"], params["container"])]


def _fail(module: AnsibleModule, bg: BlueGreen, msg: str, kind: str, **extra: object) -> None:
    for note in bg.lease_notes:
        module.warn(note)
    partial = {name: o.as_dict() for name, o in bg.outcomes.items()}
    module.fail_json(msg=msg, services=partial, failure_kind=kind,
                     changed=any(o["changed"] for o in partial.values()), **extra)


def _lease_state(module: AnsibleModule, bg: BlueGreen, lock: LeaseLock) -> None:
    p = module.params
    try:
        released = lock.release()
        module.exit_json(changed=released and not module.check_mode, lease_holder=lock.holder,
                         lease_notes=[], msg=f"{lock.ref} released" if released else
                         f"{lock.ref} was not held by {lock.holder}; left alone")
    except LeaseError as exc:
        _fail(module, bg, str(exc), "lease", lease_holder=lock.holder)
    except (SwapError, Exception) as exc:
        _fail(module, bg, f"blue-green {p['state']} failed: {exc}", "")


def _soak_state(module: AnsibleModule, bg: BlueGreen, holder: str | None) -> None:
    p = module.params
    names = [t.service for t in _targets(p)]
    try:
        result = soak(bg, names, p["health_targets"] or [], seconds=p["soak_seconds"],
                      interval=p["check_interval"])
    except SwapError as exc:
        _fail(module, bg, str(exc), exc.kind, healthy=False, lease_holder=holder)
    except Exception as exc:  # an API failure during the soak: the rescue switches back
        _fail(module, bg, f"the soak window failed: {type(exc).__name__}: {exc}", "",
              healthy=False, lease_holder=holder)
    module.exit_json(changed=False, healthy=result.healthy, msg=result.message,
                     checks=result.checks, elapsed=round(result.elapsed, 2),
                     targets=result.report["targets"], lease_holder=holder, lease_notes=[])


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        mutually_exclusive=[("service", "services"), ("image", "version"),
                            ("services", "image"), ("services", "version"),
                            ("services", "container"), ("host", "kubeconfig"),
                            ("host", "context")],
        required_if=[("state", "soaked", ("health_targets",))],
        supports_check_mode=True,
    )
    if IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib("requests and PyYAML"),
                         exception=IMPORT_ERROR)
    p = module.params
    if p["state"] != "unlocked" and not (p["service"] or p["services"]):
        module.fail_json(msg="one of the following is required: service, services")
    holder = (p["lease_holder"] or default_holder(p["lease_purpose"])) if p["lease"] else None
    try:
        settings = Settings(
            namespace=p["namespace"], slot_label=p["slot_label"], slots=tuple(p["slots"]),
            progress_deadline=p["progress_deadline"], scale_down_delay=p["scale_down_delay"],
            poll_interval=p["poll_interval"], conflict_attempts=p["conflict_attempts"],
            preview_suffix=p["preview_suffix"], switch_back_attempts=p["switch_back_attempts"])
        access = access_from_options(**{k: p[k] for k in K8S_AUTH_OPTIONS})
        client = KubeClient(access, timeout=p["request_timeout"], thin=True)  # see KubeClient
        lock = (LeaseLock(client, p["namespace"], holder, duration=p["lease_duration"],
                          check_mode=module.check_mode) if holder else None)
        bg = BlueGreen(client, settings, check_mode=module.check_mode, lease=lock,
                       may_acquire=p["lease_acquire"], break_lease=p["break_lease"],
                       break_hint=p["break_lease_hint"], allow_aborted=p["allow_aborted"])
    except (KubeConfigError, SwapError) as exc:
        module.fail_json(msg=str(exc))
    try:
        if p["state"] == "unlocked":
            if lock is None:
                module.fail_json(msg=f"state {p['state']} needs lease=true")
            _lease_state(module, bg, lock)
        if p["state"] == "soaked":
            _soak_state(module, bg, holder)
        outcomes = run(bg, p["state"], _targets(p), wait=p["wait"],
                       wait_scale_down=p["wait_scale_down"],
                       include_finalized=p["include_finalized"])
    except SwapError as exc:
        _fail(module, bg, str(exc), exc.kind, lease_holder=holder)
    except Exception as exc:
        module.fail_json(msg=f"blue-green {p['state']} failed: {type(exc).__name__}: {exc}",
                         exception=traceback.format_exc())
    finally:
        client.close()
    for note in bg.lease_notes:
        module.warn(note)
    for o in outcomes:
        for warning in o.warnings:
            module.warn(f"{o.service}: {warning}")
    module.exit_json(
        changed=any(o.changed for o in outcomes),
        msg="; ".join(f"{o.service}: {o.message}" for o in outcomes),
        services={o.service: o.as_dict() for o in outcomes},
        promotion_needed=[o.service for o in outcomes if o.promotion_needed],
        soak_pending=[o.service for o in outcomes if o.soak_pending],
        rolled_back=[o.service for o in outcomes if o.rolled_back],
        scale_down_pending=[o.service for o in outcomes if o.scale_down_pending],
        active_slots={o.service: o.after.get("active_slot") for o in outcomes},
        conflicts=bg.conflicts,
        lease_holder=holder,
        lease_notes=bg.lease_notes,
        diff={"before": {o.service: o.before for o in outcomes},
              "after": {o.service: o.after for o in outcomes}},
    )


if __name__ == "__main__":
    main()
