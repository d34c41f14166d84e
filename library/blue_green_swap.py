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
    type: str
    choices: [prepared, promoted, rolled_back, finalized, status]
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
      - New tag for O(service); the repository is taken from the active slot's image.
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
        description: New tag (the repository comes from the active slot).
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
  kubeconfig:
    description:
      - Path of the kubeconfig. Default as kubectl - C(KUBECONFIG), then C(~/.kube/config).
    type: path
  context:
    description: kubeconfig context (default its current context).
    type: str
  api_server:
    description: URL of the API server, instead of a kubeconfig.
    type: str
  api_token:
    description: Bearer token for O(api_server).
    type: str
  ca_cert:
    description: CA bundle for O(api_server).
    type: path
  validate_certs:
    description: Verify the API server's certificate.
    type: bool
    default: true
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
    api_server: https://10.0.0.2
    api_token: "{{ tai_kube_token }}"
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
    from ansible.module_utils.tai_deploy.k8s_api import (
        KubeClient,
        KubeConfigError,
        access_from_options,
    )
except ImportError:
    IMPORT_ERROR: str | None = traceback.format_exc()
else:
    IMPORT_ERROR = None

ARGUMENT_SPEC = {
    "state": {"type": "str", "default": "promoted",
              "choices": ["prepared", "promoted", "rolled_back", "finalized", "status"]},
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
    "kubeconfig": {"type": "path"},
    "context": {"type": "str"},
    "api_server": {"type": "str"},
    "api_token": {"type": "str", "no_log": True},
    "ca_cert": {"type": "path"},
    "validate_certs": {"type": "bool", "default": True},
    "request_timeout": {"type": "float", "default": 30.0},
}


def _targets(params: dict) -> list:
    if params["services"] is not None:
        return [Target(s["name"], s.get("image"), s.get("version"), s.get("container"))
                for s in params["services"]]
    return [Target(params["service"], params["image"], params["version"], params["container"])]


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        mutually_exclusive=[("service", "services"), ("image", "version"),
                            ("services", "image"), ("services", "version"),
                            ("services", "container"), ("api_server", "kubeconfig"),
                            ("api_server", "context")],
        required_one_of=[("service", "services")],
        supports_check_mode=True,
    )
    if IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib("requests and PyYAML"),
                         exception=IMPORT_ERROR)
    p = module.params
    try:
        settings = Settings(
            namespace=p["namespace"], slot_label=p["slot_label"], slots=tuple(p["slots"]),
            progress_deadline=p["progress_deadline"], scale_down_delay=p["scale_down_delay"],
            poll_interval=p["poll_interval"], conflict_attempts=p["conflict_attempts"],
            preview_suffix=p["preview_suffix"])
        access = access_from_options(
            kubeconfig=p["kubeconfig"], context=p["context"], api_server=p["api_server"],
            api_token=p["api_token"], ca_cert=p["ca_cert"], validate_certs=p["validate_certs"])
        client = KubeClient(access, timeout=p["request_timeout"])
        bg = BlueGreen(client, settings, check_mode=module.check_mode)
    except (KubeConfigError, SwapError) as exc:
        module.fail_json(msg=str(exc))
    try:
        outcomes = run(bg, p["state"], _targets(p), wait=p["wait"],
                       wait_scale_down=p["wait_scale_down"],
                       include_finalized=p["include_finalized"])
    except SwapError as exc:
        partial = {name: o.as_dict() for name, o in bg.outcomes.items()}
        module.fail_json(msg=str(exc), services=partial,
                         changed=any(o["changed"] for o in partial.values()))
    except Exception as exc:
        module.fail_json(msg=f"blue-green {p['state']} failed: {type(exc).__name__}: {exc}",
                         exception=traceback.format_exc())
    finally:
        client.close()
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
        diff={"before": {o.service: o.before for o in outcomes},
              "after": {o.service: o.after for o in outcomes}},
    )

if __name__ == "__main__":
    main()
