#!/usr/bin/python
# Copyright: tai-deploy contributors
"""Ansible module: check many gRPC endpoints with the standard health protocol at once."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: grpc_health_check
short_description: Check many gRPC endpoints at once with the standard gRPC health protocol
description:
  - Calls C(grpc.health.v1.Health/Check) (or follows C(Watch)) on every target concurrently and
    reports, per target, the serving status, the latency, an error class and a message, plus a
    summary. Does what grpc-health-probe does for one address (connect and RPC timeouts,
    service name, headers, user agent, TLS, mTLS, server name override, skip-verify, gzip) for
    many addresses in one task, and adds waiting with backoff, stability checks and Watch.
  - Each attempt opens a fresh channel, waits at most O(connect_timeout) for it to become ready
    (an address where nothing listens fails at once), then makes one call bounded by
    O(rpc_timeout). An address that accepts connections and never answers therefore costs at
    most its timeouts.
  - With O(wait_timeout) greater than 0, unhealthy targets are retried with exponential backoff
    (O(interval), O(backoff), O(max_interval)) until each has answered SERVING
    O(consecutive_successes) times in a row, O(interval) seconds apart, or the deadline passes.
    Attempts start no later than the deadline, so the task takes at most
    O(wait_timeout) + O(connect_timeout) + O(rpc_timeout).
  - An empty O(service) asks for the server's overall health. A service name the server does
    not know answers C(NOT_FOUND), reported as C(service_unknown).
  - Never changes anything; C(changed) is always false and check mode runs the checks as usual.
  - Fails (unless O(fail_on_unhealthy=false)) with one message naming every unhealthy target and
    why. Invalid parameter combinations fail before any target is contacted.
version_added: "0.1.0"
author: tai-deploy contributors
requirements:
  - grpcio
  - grpcio-health-checking
  - cryptography (only for O(tls_no_verify))
options:
  targets:
    description:
      - The endpoints to check. Every option not set on a target is taken from the option of the
        same name at the top level.
    type: list
    elements: dict
    required: true
    suboptions:
      address:
        description:
          - C(host:port), C([ipv6]:port) or any gRPC target string such as C(dns:///host:port).
        type: str
        required: true
      name:
        description: Label of the target in results and messages (default the address).
        type: str
      service:
        description: Health service name for this target.
        type: str
      connect_timeout:
        description: Connect timeout for this target, in seconds.
        type: float
      rpc_timeout:
        description: RPC timeout for this target, in seconds.
        type: float
      metadata:
        description: Headers added to the top-level O(metadata) for this target.
        type: dict
      sensitive_metadata:
        description: Secret headers added to the top-level O(sensitive_metadata).
        type: dict
      tls:
        description:
          - Use TLS for this target. V(false) also drops every TLS option inherited from the
            top level.
        type: bool
      tls_ca_cert:
        description: CA bundle for this target. Setting it drops an inherited O(tls_no_verify).
        type: path
      tls_client_cert:
        description: Client certificate for this target (inherited as a pair with the key).
        type: path
      tls_client_key:
        description: Client key for this target (inherited as a pair with the certificate).
        type: path
      tls_server_name:
        description: Server name for this target. Setting it drops an inherited O(tls_no_verify).
        type: str
      tls_no_verify:
        description:
          - Skip verification for this target. V(true) drops an inherited O(tls_ca_cert) and
            O(tls_server_name).
        type: bool
      user_agent:
        description: User agent for this target.
        type: str
      gzip:
        description: Gzip compression for this target.
        type: bool
  service:
    description:
      - Default health service name (e.g. C(tai.governor.v1.Governor)). Empty means the server's
        overall health.
    type: str
    default: ""
  connect_timeout:
    description:
      - Seconds to wait for a channel to become ready (TCP, TLS and HTTP/2 handshakes), like
        grpc-health-probe's C(-connect-timeout). A refused connection fails at once.
    type: float
    default: 1.0
  rpc_timeout:
    description:
      - Seconds to wait for the health response once connected, like C(-rpc-timeout). In watch
        mode, the time allowed for the stream's first message.
    type: float
    default: 1.0
  wait_timeout:
    description:
      - Seconds to keep retrying targets that are not (yet stably) SERVING. V(0) checks once.
      - Must be at least (O(consecutive_successes) - 1) * O(interval).
    type: float
    default: 0.0
  interval:
    description:
      - Seconds between the SERVING checks that confirm stability, and the first retry delay
        after a failure.
    type: float
    default: 1.0
  backoff:
    description: Factor by which the retry delay grows after each consecutive failure.
    type: float
    default: 1.5
  max_interval:
    description: Upper bound of the retry delay, in seconds.
    type: float
    default: 5.0
  consecutive_successes:
    description:
      - SERVING answers in a row (O(interval) seconds apart) a target needs to count as healthy;
        a flapping target never gets there. In watch mode, the target must stay SERVING without
        any status change for (O(consecutive_successes) - 1) * O(interval) seconds.
      - A target that was SERVING but could not complete the series before the deadline is
        reported with error class C(unstable).
    type: int
    default: 1
  mode:
    description:
      - V(check) polls with unary C(Check) calls.
      - V(watch) opens a C(Watch) stream per target, so the server pushes status changes (one
        thread per target; streams are reopened with backoff when they break). Servers without
        C(Watch) give C(unimplemented). Unknown services report C(SERVICE_UNKNOWN) in watch mode
        and are waited for, as the protocol intends.
    type: str
    choices: [check, watch]
    default: check
  tls:
    description: Use TLS (like C(-tls)). Required by every other C(tls_*) option.
    type: bool
    default: false
  tls_ca_cert:
    description:
      - PEM file with the CA certificates to verify servers with (like C(-tls-ca-cert)).
        Without it, gRPC's default roots are used.
      - Mutually exclusive with O(tls_no_verify).
    type: path
  tls_client_cert:
    description:
      - PEM client certificate for mTLS (like C(-tls-client-cert)); needs O(tls_client_key).
    type: path
  tls_client_key:
    description: PEM private key of O(tls_client_cert) (like C(-tls-client-key)).
    type: path
  tls_server_name:
    description:
      - Name to verify the server certificate against, instead of the host of the address (like
        C(-tls-server-name)); also sent as SNI. Mutually exclusive with O(tls_no_verify).
    type: str
  tls_no_verify:
    description:
      - Do not verify the server certificate (like C(-tls-no-verify)). gRPC Python has no switch
        for this, so each attempt first makes a TLS handshake without verification (presenting
        the client certificate, if any) to fetch the server's certificate, then connects with
        that certificate as the only trusted root and a name from it (first DNS or IP subject
        alternative name, else the common name) as the expected server name. The connection is
        encrypted but not authenticated. The certificate must still be within its validity
        period. Needs the C(cryptography) package.
      - Mutually exclusive with O(tls_ca_cert) and O(tls_server_name).
    type: bool
    default: false
  metadata:
    description:
      - Headers sent with every call, such as an Istio routing header to reach the preview slot.
        Names are lower-cased; names starting with C(grpc-) and C(content-type), C(te),
        C(host), C(user-agent) are rejected. Values of names ending in C(-bin) are sent as
        UTF-8 bytes.
      - Values of C(authorization), C(proxy-authorization), C(cookie), C(x-api-key) and
        C(x-auth-token) are masked in the results even here, but put secrets in
        O(sensitive_metadata), which is also kept out of the module's invocation log.
    type: dict
    default: {}
  sensitive_metadata:
    description:
      - Headers like O(metadata) whose values are secret (e.g. C(authorization)). Their values
        never appear in results, messages or logs (no_log).
    type: dict
    default: {}
  user_agent:
    description: User agent sent with every call (like C(-user-agent)).
    type: str
    default: tai-deploy-grpc-health-check
  gzip:
    description: Compress requests with gzip (like C(-gzip)).
    type: bool
    default: false
  fail_on_unhealthy:
    description:
      - Fail the task when any target is unhealthy. With V(false) the task succeeds and the
        caller decides from RV(healthy) and RV(targets).
    type: bool
    default: true
  max_workers:
    description: Maximum number of attempts in flight at once in check mode.
    type: int
    default: 64
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
notes:
  - Error classes are C(connect_failed) (no connection within O(connect_timeout), refused, TLS
    handshake failed), C(rpc_failed) (any other RPC error), C(not_serving) (status
    C(NOT_SERVING) or C(UNKNOWN)), C(service_unknown) (C(NOT_FOUND) from Check,
    C(SERVICE_UNKNOWN) from Watch), C(unimplemented) (no health service), C(deadline_exceeded)
    (connected, but no answer within O(rpc_timeout)) and C(unstable) (SERVING, but fewer than
    O(consecutive_successes) in a row before the deadline).
  - The same checks are available from a shell, with grpc-health-probe's flags and exit codes
    (2 connect failure, 3 RPC failure, 4 not serving), as
    C(PYTHONPATH=module_utils python -m tai_deploy.grpc_health -addr host:port).
"""

EXAMPLES = r"""
- name: Check the three TAI services once
  grpc_health_check:
    targets:
      - {name: governor, address: "tai-governor.tai.svc:50051"}
      - {name: coordinator, address: "tai-coordinator.tai.svc:50052"}
      - {name: scheduler, address: "tai-scheduler.tai.svc:50053"}

- name: Wait up to 5 minutes until every service is stably SERVING (3 checks, 2 s apart)
  grpc_health_check:
    targets:
      - {address: "10.8.0.11:50051", service: tai.governor.v1.Governor}
      - {address: "10.8.0.12:50052", service: tai.coordinator.v1.Coordinator}
      - {address: "10.8.0.13:50053", service: tai.scheduler.v1.Scheduler}
    wait_timeout: 300
    interval: 2
    max_interval: 10
    consecutive_successes: 3
    connect_timeout: 2
    rpc_timeout: 2

- name: Reach the preview slot through the Istio ingress with mTLS and a token
  grpc_health_check:
    targets:
      - {name: governor-preview, address: "tai.example.com:443", service: tai.governor.v1.Governor}
    tls: true
    tls_ca_cert: /etc/tai/ca.pem
    tls_client_cert: /etc/tai/client.pem
    tls_client_key: /etc/tai/client-key.pem
    tls_server_name: tai.example.com
    metadata:
      x-tai-slot: preview
    sensitive_metadata:
      authorization: "Bearer {{ tai_health_token }}"

- name: Follow status changes with Watch while a pod restarts, without failing the play
  grpc_health_check:
    targets:
      - address: "{{ tai_scheduler_pod_ip }}:50053"
        tls: true
        tls_no_verify: true
        gzip: true
    mode: watch
    wait_timeout: 120
    consecutive_successes: 2
    interval: 5
    user_agent: tai-runbook
    fail_on_unhealthy: false
  register: scheduler_health

- name: Report what is unhealthy
  ansible.builtin.debug:
    msg: "{{ scheduler_health.targets | rejectattr('healthy') | map(attribute='message') }}"
  when: not scheduler_health.healthy
"""

RETURN = r"""
healthy:
  description: Whether every target is healthy.
  returned: always
  type: bool
  sample: false
msg:
  description: All healthy, or every unhealthy target with its error class and message.
  returned: always
  type: str
  sample: >-
    1 of 3 gRPC target(s) unhealthy: scheduler (10.8.0.13:50053): not_serving - status
    NOT_SERVING
elapsed_ms:
  description: Wall time of the checks in milliseconds.
  returned: always
  type: float
  sample: 41.7
summary:
  description: Counts over all targets.
  returned: always
  type: dict
  contains:
    total:
      description: Number of targets.
      type: int
    healthy:
      description: Number of healthy targets.
      type: int
    unhealthy:
      description: Number of unhealthy targets.
      type: int
    by_error:
      description: Number of unhealthy targets per error class.
      type: dict
  sample: {"total": 3, "healthy": 2, "unhealthy": 1, "by_error": {"not_serving": 1}}
targets:
  description: One result per target, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The target's name, or its address (and service) when it has none.
      type: str
    address:
      description: The address checked.
      type: str
    service:
      description: The health service name checked ("" is the server's overall health).
      type: str
    healthy:
      description: Whether the target is (stably) SERVING.
      type: bool
    status:
      description:
        - Last status received (C(SERVING), C(NOT_SERVING), C(UNKNOWN), C(SERVICE_UNKNOWN)); null
          when no health response was received.
      type: str
    error:
      description:
        - Null when healthy, else one of C(connect_failed), C(rpc_failed), C(not_serving),
          C(service_unknown), C(unimplemented), C(deadline_exceeded), C(unstable).
      type: str
    message:
      description: Why, in words (gRPC's own error text included); secrets masked.
      type: str
    latency_ms:
      description: Duration of the last health call (in watch mode, time to the first message).
      type: float
    connect_ms:
      description: Time the last attempt took to connect (or to give up connecting).
      type: float
    attempts:
      description: Health observations made (calls, or messages received in watch mode).
      type: int
    consecutive_successes:
      description: SERVING observations in a row at the end.
      type: int
    metadata_keys:
      description: Names of the headers sent (never their values).
      type: list
      elements: str
  sample:
    - name: governor
      address: "10.8.0.11:50051"
      service: ""
      healthy: true
      status: SERVING
      error: null
      message: SERVING
      latency_ms: 1.9
      connect_ms: 4.2
      attempts: 1
      consecutive_successes: 1
      metadata_keys: []
"""

import os
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

# gRPC's C core logs failed TLS handshakes to stderr at INFO level; keep module output clean.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

try:
    from ansible.module_utils.tai_deploy.grpc_health import (
        DEFAULT_USER_AGENT,
        ConfigError,
        policy_from_params,
        run_health_checks,
        sensitive_header_values,
        targets_from_params,
    )
except ImportError:
    IMPORT_ERROR: str | None = traceback.format_exc()
    DEFAULT_USER_AGENT = "tai-deploy-grpc-health-check"
else:
    IMPORT_ERROR = None

_TARGET_OPTIONS = {
    "address": {"type": "str", "required": True},
    "name": {"type": "str"},
    "service": {"type": "str"},
    "connect_timeout": {"type": "float"},
    "rpc_timeout": {"type": "float"},
    "metadata": {"type": "dict"},
    "sensitive_metadata": {"type": "dict", "no_log": True},
    "tls": {"type": "bool"},
    "tls_ca_cert": {"type": "path"},
    "tls_client_cert": {"type": "path"},
    "tls_client_key": {"type": "path", "no_log": False},
    "tls_server_name": {"type": "str"},
    "tls_no_verify": {"type": "bool"},
    "user_agent": {"type": "str"},
    "gzip": {"type": "bool"},
}

ARGUMENT_SPEC = {
    "targets": {"type": "list", "elements": "dict", "required": True,
                "options": _TARGET_OPTIONS},
    "service": {"type": "str", "default": ""},
    "connect_timeout": {"type": "float", "default": 1.0},
    "rpc_timeout": {"type": "float", "default": 1.0},
    "wait_timeout": {"type": "float", "default": 0.0},
    "interval": {"type": "float", "default": 1.0},
    "backoff": {"type": "float", "default": 1.5},
    "max_interval": {"type": "float", "default": 5.0},
    "consecutive_successes": {"type": "int", "default": 1},
    "mode": {"type": "str", "choices": ["check", "watch"], "default": "check"},
    "tls": {"type": "bool", "default": False},
    "tls_ca_cert": {"type": "path"},
    "tls_client_cert": {"type": "path"},
    "tls_client_key": {"type": "path", "no_log": False},
    "tls_server_name": {"type": "str"},
    "tls_no_verify": {"type": "bool", "default": False},
    "metadata": {"type": "dict", "default": {}},
    "sensitive_metadata": {"type": "dict", "default": {}, "no_log": True},
    "user_agent": {"type": "str", "default": DEFAULT_USER_AGENT},
    "gzip": {"type": "bool", "default": False},
    "fail_on_unhealthy": {"type": "bool", "default": True},
    "max_workers": {"type": "int", "default": 64},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    if IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib("grpcio and grpcio-health-checking"),
                         exception=IMPORT_ERROR)
    params = module.params
    # Secret headers given as plain metadata are masked before anything can fail.
    module.no_log_values.update(sensitive_header_values(params))
    try:
        targets = targets_from_params(params)
        policy = policy_from_params(params)
    except ConfigError as exc:
        module.fail_json(msg=f"invalid parameters: {exc}", errors=exc.problems)
    for target in targets:
        # Also well-known secret headers passed as plain metadata (sensitive_metadata is
        # no_log already).
        module.no_log_values.update(target.sensitive_values())
    if params["max_workers"] < 1:
        module.fail_json(msg=f"invalid parameters: max_workers must be at least 1 "
                             f"(got {params['max_workers']})")
    try:
        report = run_health_checks(targets, policy, max_workers=params["max_workers"])
    except ConfigError as exc:  # unreadable certificate files
        module.fail_json(msg=f"invalid parameters: {exc}", errors=exc.problems)
    result = {"changed": False, **report.as_dict()}
    if not report.healthy and params["fail_on_unhealthy"]:
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
