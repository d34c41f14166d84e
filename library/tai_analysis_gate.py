#!/usr/bin/python
# Copyright: tai-deploy contributors
"""Ansible module: judge a new version by Prometheus metrics, against the other regions."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: tai_analysis_gate
short_description: Judge new service slots by Prometheus queries, with other regions as baseline
description:
  - Measures every gate of O(gates) for every service of O(services) once per O(interval)
    for O(duration) seconds against the Prometheus of the analysed region (O(prometheus)),
    and fails at once when a gate has failed more than its C(failure_limit) times, or its
    query errored more than C(consecutive_error_limit) times in a row. The message holds the
    query, the value and the limit.
  - A query that returns no series, or only NaN (no traffic), is a failure unless the gate
    sets C(no_data=pass).
  - A gate with C(baseline_factor) is also measured against each Prometheus of O(baselines)
    (the regions still on the old version; the same query without the slot), and its limit
    becomes C(max(threshold, median(baselines) * baseline_factor + baseline_margin)).
  - Each Prometheus is reached at its C(url), or through C(kubectl port-forward) to its
    Service (C(port_forward)), opened for the duration of the task; an optional bearer
    token file and CA bundle authenticate it.
  - With O(lease), the region's blue-green Lease (the rolling upgrade's lock, held by this
    run) is renewed before every measurement, and the analysis stops when it was lost or,
    with C(watch_promotion), when an operator rolled a judged service back (C(failure_kind)
    V(lease) or V(aborted), as the C(blue_green_swap) soak reports them).
  - Reads only (besides renewing the lease); C(changed) is always false. Check mode
    measures as usual and renews nothing.
options:
  prometheus:
    description: The analysed region's Prometheus.
    type: dict
    required: true
    suboptions:
      region:
        description: Region name (messages and the region placeholder).
        type: str
        required: true
      url:
        description: Base URL; with C(port_forward) its host and port are replaced.
        type: str
      bearer_token_file:
        description: File holding a bearer token sent with every query.
        type: path
      ca_file: {description: CA bundle that signs an https Prometheus., type: path}
      timeout: {description: Seconds per query., type: float, default: 5.0}
      port_forward:
        description: Reach the Prometheus Service through C(kubectl port-forward).
        type: dict
        suboptions:
          kubectl: {description: kubectl binary., type: str, default: kubectl}
          context: {description: kubeconfig context of the region., type: str}
          namespace: {description: Namespace of the Service., type: str, default: monitoring}
          service:
            description: Service name.
            type: str
            default: kube-prometheus-stack-prometheus
          port: {description: Service port., type: int, default: 9090}
  baselines:
    description: >-
      Prometheus of the regions still on the old version, with the suboptions of
      O(prometheus).
    type: list
    elements: dict
    default: []
  gates:
    description: >-
      Gates, each with C(name), C(query) (PromQL with C(${placeholders})), C(threshold), and
      optionally C(comparison) (<=, <, >=, >; the value passes when C(value comparison
      threshold)), C(failure_limit), C(consecutive_error_limit), C(no_data),
      C(baseline_factor), C(baseline_margin).
    type: list
    elements: dict
    required: true
  services:
    description: The services judged, each with its new slot (C(name), C(slot)).
    type: list
    elements: dict
    required: true
  namespace: {description: Namespace of the services., type: str, default: tai-system}
  window:
    description: Range of the rates, the C(${window}) placeholder.
    type: str
    default: 1m
  error_codes:
    description: gRPC codes that count as server errors (C(${error_codes})).
    type: list
    elements: str
    required: true
  interval: {description: Seconds between measurements., type: float, default: 10.0}
  duration:
    description: Seconds of analysis (at least one measurement).
    type: float
    default: 0.0
  initial_delay:
    description: Seconds to wait before the first measurement.
    type: float
    default: 0.0
  lease:
    description:
      - Renew the blue-green Lease of O(namespace) while measuring (see C(blue_green_swap)'s
        O(blue_green_swap#module:lease)); its holder is this run's, as the swap computes it.
    type: dict
    suboptions:
      kubeconfig: {description: Path of the kubeconfig (default as kubectl)., type: path}
      context: {description: kubeconfig context of the region., type: str}
      holder: {description: holderIdentity (default C(user@host <purpose> pid N))., type: str}
      purpose: {description: Part of the default holder., type: str, default: rolling-upgrade}
      duration: {description: leaseDurationSeconds., type: int, default: 180}
      watch_promotion:
        description: >-
          Also stop when a judged service is no longer on the promotion being soaked (an
          operator's rollback); false before the switch.
        type: bool
        default: true
  validate_only:
    description: >-
      Only check the settings (gates, placeholders, durations, every Prometheus' url or
      port_forward) and measure nothing: no port-forward, no query.
    type: bool
    default: false
author: tai-deploy contributors
"""

EXAMPLES = r"""
- name: Judge the canary's new slots against the regions still on the old version
  tai_analysis_gate:
    prometheus: {region: asia-southeast1, url: "http://prometheus.asia.internal:9090"}
    baselines:
      - {region: europe-west1, url: "http://prometheus.europe.internal:9090"}
    services: [{name: governor, slot: green}]
    error_codes: [Unknown, Internal, Unavailable, DataLoss, DeadlineExceeded]
    gates:
      - name: error-ratio
        query: >-
          sum(rate(grpc_server_handled_total{${selector}, grpc_code=~"${error_codes}"}[${window}]))
          / sum(rate(grpc_server_handled_total{${selector}}[${window}]))
        threshold: 0.05
        baseline_factor: 1.5
        baseline_margin: 0.01
    interval: 10
    duration: 180
"""

RETURN = r"""
passed: {description: Whether every gate passed., type: bool, returned: always}
ticks: {description: Measurements made., type: int, returned: always}
elapsed: {description: Seconds spent measuring., type: float, returned: always}
failures: {description: Failures per gate and service., type: dict, returned: always}
measurements:
  description: The last measurement of every gate and service.
  type: list
  returned: always
failure_kind:
  description: >-
    On failure, V(lease) (the region's lease was lost), V(aborted) (an operator rolled a
    judged service back), or an empty string.
  type: str
  returned: on failure
"""

import contextlib
import traceback
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    from ansible.module_utils.tai_deploy import analysis
    from ansible.module_utils.tai_deploy.vault_bootstrap import PortForward, port_forward
except ImportError:
    IMPORT_ERROR: str | None = traceback.format_exc()
else:
    IMPORT_ERROR = None

_FORWARD = {
    "kubectl": {"type": "str", "default": "kubectl"},
    "context": {"type": "str"},
    "namespace": {"type": "str", "default": "monitoring"},
    "service": {"type": "str", "default": "kube-prometheus-stack-prometheus"},
    "port": {"type": "int", "default": 9090},
}
_SOURCE = {
    "region": {"type": "str", "required": True},
    "url": {"type": "str"},
    "bearer_token_file": {"type": "path"},
    "ca_file": {"type": "path"},
    "timeout": {"type": "float", "default": 5.0},
    "port_forward": {"type": "dict", "options": _FORWARD},
}
ARGUMENT_SPEC = {
    "prometheus": {"type": "dict", "required": True, "options": _SOURCE},
    "baselines": {"type": "list", "elements": "dict", "default": [], "options": _SOURCE},
    "gates": {"type": "list", "elements": "dict", "required": True},
    "services": {"type": "list", "elements": "dict", "required": True,
                 "options": {"name": {"type": "str", "required": True},
                             "slot": {"type": "str", "required": True}}},
    "namespace": {"type": "str", "default": "tai-system"},
    "window": {"type": "str", "default": "1m"},
    "error_codes": {"type": "list", "elements": "str", "required": True},
    "interval": {"type": "float", "default": 10.0},
    "duration": {"type": "float", "default": 0.0},
    "initial_delay": {"type": "float", "default": 0.0},
    "validate_only": {"type": "bool", "default": False},
    "lease": {"type": "dict", "options": {
        "kubeconfig": {"type": "path"},
        "context": {"type": "str"},
        "holder": {"type": "str"},
        "purpose": {"type": "str", "default": "rolling-upgrade"},
        "duration": {"type": "int", "default": 180},
        "watch_promotion": {"type": "bool", "default": True},
    }},
}


class _Stop(Exception):
    """The blue-green watch ended the analysis (lease lost, release aborted)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def _lease_watch(stack: contextlib.ExitStack, params: dict[str, Any], namespace: str,
                 services: list[str], check_mode: bool) -> Any:
    """The callable that renews the region's lease (and watches for a rollback) per measurement.

    Built on its first call (the Kubernetes client and its imports only when the analysis
    starts measuring).
    """
    watch: list[Any] = []

    def build() -> Any:
        # Imported here: only the rolling upgrade's gates need the Kubernetes client.
        from ansible.module_utils.tai_deploy.bluegreen import BlueGreen, Settings
        from ansible.module_utils.tai_deploy.bluegreen_lease import LeaseLock, default_holder
        from ansible.module_utils.tai_deploy.bluegreen_soak import SoakWatch
        from ansible.module_utils.tai_deploy.k8s_api import KubeClient, access_from_options

        client = KubeClient(access_from_options(kubeconfig=params["kubeconfig"],
                                                context=params["context"]))
        stack.callback(client.close)
        holder = params["holder"] or default_holder(params["purpose"])
        lock = LeaseLock(client, namespace, holder, duration=params["duration"],
                         check_mode=check_mode)
        bg = BlueGreen(client, Settings(namespace=namespace), check_mode=check_mode, lease=lock)
        return SoakWatch(bg, services, watch_promotion=params["watch_promotion"])

    def check() -> None:
        from ansible.module_utils.tai_deploy.bluegreen import SwapError

        try:
            if not watch:
                watch.append(build())
            watch[0].check()
        except SwapError as exc:
            raise _Stop(str(exc), exc.kind) from None
        except Exception as exc:  # a kubeconfig that cannot be read, an unreachable API server
            raise _Stop(f"cannot watch the region's blue-green lease: {exc}", "") from None

    return check


def _source(stack: contextlib.ExitStack | None, params: dict[str, Any]) -> Any:
    """The Prometheus client of one source; with no stack, only its settings are checked."""
    url = params.get("url") or ""
    forward = params.get("port_forward")
    if forward and stack is None:
        url = url or "http://127.0.0.1:9090"
    elif forward:
        spec = PortForward(kubectl=forward["kubectl"], namespace=forward["namespace"],
                           context=forward.get("context"), remote_port=forward["port"],
                           scheme="http")
        local = stack.enter_context(port_forward(spec, f"svc/{forward['service']}"))
        parts = urlsplit(url or "http://localhost")
        url = urlunsplit((parts.scheme, f"127.0.0.1:{local}", parts.path, "", ""))
    if not url:
        raise analysis.AnalysisError([f"the Prometheus of {params['region']} has neither a url "
                                      "nor port_forward settings."])
    source = analysis.Source(region=params["region"], url=url,
                             bearer_token_file=params.get("bearer_token_file"),
                             ca_file=params.get("ca_file"), timeout=params["timeout"])
    problems = source.problems()
    if problems:
        raise analysis.AnalysisError(problems)
    return analysis.Prometheus(source)


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    if IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("requests"), exception=IMPORT_ERROR)
    p = module.params
    try:
        gates = analysis.gates_from(p["gates"])
        settings = analysis.Settings(
            namespace=p["namespace"], window=p["window"], error_codes=tuple(p["error_codes"]),
            interval=p["interval"], duration=p["duration"], initial_delay=p["initial_delay"])
        targets = [analysis.Target(s["name"], s["slot"]) for s in p["services"]]
        if p["validate_only"]:
            problems = list(settings.problems()) + [x for g in gates for x in g.problems()]
            for source in [p["prometheus"], *p["baselines"]]:
                try:
                    _source(None, source)
                except analysis.AnalysisError as exc:
                    problems.extend(exc.problems)
            if problems:
                raise analysis.AnalysisError(problems)
            module.exit_json(changed=False, passed=True, msg="the analysis settings are valid",
                             ticks=0, elapsed=0.0, failures={}, measurements=[])
        with contextlib.ExitStack() as stack:
            on_tick = (_lease_watch(stack, p["lease"], p["namespace"],
                                    [t.service for t in targets], module.check_mode)
                       if p["lease"] else None)
            canary = _source(stack, p["prometheus"])
            baselines = [_source(stack, b) for b in p["baselines"]]
            verdict = analysis.run(analysis.Analysis(gates, targets, settings, canary,
                                                     baselines), on_tick=on_tick)
    except _Stop as exc:
        module.fail_json(msg=str(exc), failure_kind=exc.kind, passed=False)
    except analysis.AnalysisError as exc:
        module.fail_json(msg=f"invalid analysis settings: {exc}", errors=exc.problems,
                         passed=False)
    except Exception as exc:  # port-forward failures (VaultError) and the like
        module.fail_json(msg=str(exc), passed=False)
    result = verdict.as_dict()
    if not verdict.passed:
        module.fail_json(changed=False, failure_kind="", **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
