#!/usr/bin/python
# Copyright: tai-deploy contributors
"""Ansible module: manage one region's item of a geo-routed Cloud DNS record set."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cloud_dns_geo_item
short_description: Add, update or remove one location's item of a geo-routed Cloud DNS record set
description:
  - Cloud DNS holds one record set per name and type; geolocation routing is its
    C(routingPolicy.geo.items), one item per GCP region. google.cloud.gcp_dns_resource_record_set
    cannot express a routing policy; this module speaks the Cloud DNS v1 REST API.
  - Reads the record set, replaces (O(state=present)) or removes (O(state=absent)) only the item
    whose C(location) is O(location), and writes through C(changes.create) with the record set
    it read as the deletion and the merged one as the addition. The items of other locations
    are kept as they are, so regions can run in parallel.
  - Cloud DNS applies a change only if its deletion still matches the live record set; when
    another run changed it in between (HTTP 412, or 409 when both create it) the module reads
    again and retries, up to O(change_attempts) times.
  - Creates the record set (with this one item) when it does not exist. Refuses to remove the
    last item of the policy, which would leave the name without an answer.
  - Fails with one sentence when the record set exists with static C(rrdatas) or another
    routing policy, instead of replacing it.
  - HTTP 429 and 5xx are retried with back-off; other errors fail with one sentence naming the
    record set and the API's message.
version_added: "0.1.0"
author: tai-deploy contributors
requirements:
  - google-auth
  - requests
extends_documentation_fragment:
  - tai_gcp
options:
  project:
    description: GCP project id of the managed zone.
    type: str
    required: true
  managed_zone:
    description: Name of the Cloud DNS managed zone (not its DNS name).
    type: str
    required: true
  record_name:
    description: Fully qualified record name with a trailing dot.
    type: str
    required: true
  record_type:
    description: Record type.
    type: str
    default: A
  ttl:
    description: TTL of the record set, in seconds (shared by all items).
    type: int
    default: 60
  location:
    description: GCP region that keys this item, such as C(europe-west1).
    type: str
    required: true
  rrdatas:
    description: Answers for clients routed to O(location) (the region's load balancer address).
    type: list
    elements: str
    default: []
  health_checked_targets:
    description: Optional C(healthCheckedTargets) of the item, passed to the API as is.
    type: dict
  state:
    description: C(present) writes the item, C(absent) removes it (drains the location).
    type: str
    choices: [present, absent]
    default: present
  api_endpoint:
    description: Root URL of the Cloud DNS API. Plain C(http) only for a loopback test double.
    type: str
    default: https://dns.googleapis.com
  scopes:
    description: OAuth scopes requested for the credentials.
    type: list
    elements: str
    default: [https://www.googleapis.com/auth/ndev.clouddns.readwrite]
  change_attempts:
    description: Read-merge-write attempts when a concurrent change wins the race.
    type: int
    default: 5
  wait_timeout:
    description: Seconds to wait for the change to be C(done).
    type: int
    default: 300
  poll_interval:
    description: Seconds between two reads of a pending change.
    type: float
    default: 2
attributes:
  check_mode:
    support: full
    details: Reads the record set and returns the change it would send (RV(change)).
  diff_mode:
    support: full
"""

EXAMPLES = r"""
- name: Point the europe-west1 item of the geo policy at the region's load balancer
  cloud_dns_geo_item:
    project: tai-production
    managed_zone: tai-example-com
    record_name: api.tai.example.com.
    ttl: 60
    location: europe-west1
    rrdatas: [35.2.2.2]

- name: Drain europe-west1 (clients of that region go to the nearest other item)
  cloud_dns_geo_item:
    project: tai-production
    managed_zone: tai-example-com
    record_name: api.tai.example.com.
    location: europe-west1
    state: absent
"""

RETURN = r"""
items:
  description: Locations of the geo policy after the run, in the record set's order.
  returned: always
  type: list
  elements: str
  sample: [us-central1, europe-west1, asia-southeast1]
record_set:
  description: The record set after the run (as sent, or as read when unchanged).
  returned: always
  type: dict
change:
  description: The C(changes.create) body sent (or that would be sent in check mode).
  returned: when changed
  type: dict
change_id:
  description: Id of the Cloud DNS change.
  returned: when changed and not in check mode
  type: str
attempts:
  description: Read-merge-write attempts used.
  returned: always
  type: int
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "project": {"type": "str", "required": True},
            "managed_zone": {"type": "str", "required": True},
            "record_name": {"type": "str", "required": True},
            "record_type": {"type": "str", "default": "A"},
            "ttl": {"type": "int", "default": 60},
            "location": {"type": "str", "required": True},
            "rrdatas": {"type": "list", "elements": "str", "default": []},
            "health_checked_targets": {"type": "dict"},
            "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
            "api_endpoint": {"type": "str", "default": "https://dns.googleapis.com"},
            "auth_kind": {"type": "str", "default": "application",
                          "choices": ["application", "serviceaccount", "none"]},
            "service_account_file": {"type": "path"},
            "scopes": {"type": "list", "elements": "str",
                       "default": ["https://www.googleapis.com/auth/ndev.clouddns.readwrite"]},
            "change_attempts": {"type": "int", "default": 5},
            "wait_timeout": {"type": "int", "default": 300},
            "poll_interval": {"type": "float", "default": 2},
            "retries": {"type": "int", "default": 5},
            "retry_base_delay": {"type": "float", "default": 1.0},
        },
        supports_check_mode=True,
    )
    # Imported once the argument spec is declared: ansible-lint's args rule executes this
    # file outside Ansible, where the project's module_utils are not importable.
    from ansible.module_utils.tai_deploy.cloud_dns import (
        DnsError,
        GeoItemConverger,
        items_of,
        record_from_params,
    )
    from ansible.module_utils.tai_deploy.gcp_rest import (
        GcpApiError,
        GcpConfigError,
        RestClient,
        RetryPolicy,
        make_session,
    )
    p = module.params
    rec = record_from_params(project=p["project"], zone=p["managed_zone"], name=p["record_name"],
                             rtype=p["record_type"], ttl=p["ttl"], location=p["location"],
                             rrdatas=p["rrdatas"],
                             health_checked_targets=p["health_checked_targets"])
    try:
        session = make_session(p["auth_kind"], p["api_endpoint"], p["scopes"],
                               p["service_account_file"])
        client = RestClient(session, p["api_endpoint"], service="the Cloud DNS API",
                            retry=RetryPolicy(max(1, p["retries"]), p["retry_base_delay"]))
        result = GeoItemConverger(client, rec, attempts=p["change_attempts"],
                                  wait_timeout=p["wait_timeout"],
                                  poll_interval=p["poll_interval"]).converge(
            p["state"], check_mode=module.check_mode)
    except (GcpConfigError, GcpApiError, DnsError) as exc:
        module.fail_json(msg=str(exc))
    out = {
        "changed": result.changed,
        "items": [str(i.get("location")) for i in items_of(result.after)],
        "record_set": result.after or {},
        "attempts": result.attempts,
    }
    if result.changed:
        out["change"] = result.change
        if result.change_id:
            out["change_id"] = result.change_id
    if module._diff:
        out["diff"] = {"before": result.before or {}, "after": result.after or {},
                       "before_header": f"live {rec.name} {rec.rtype}",
                       "after_header": f"{rec.name} {rec.rtype} with {rec.location} "
                                       f"{'removed' if p['state'] == 'absent' else 'written'}"}
    module.exit_json(**out)


if __name__ == "__main__":
    main()
