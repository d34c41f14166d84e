#!/usr/bin/python
# Copyright: tai-deploy contributors
"""Ansible module: check a Redis snapshot set from the backup bucket, or re-form a cluster."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: redis_snapshot_restore
short_description: Fetch and check a Redis snapshot set, or re-form the cluster from it
description:
  - O(action=prepare) picks the set (O(set_stamp), else the newest complete one of
    O(source_region), by default O(region)), downloads its manifest and every master's RDB into
    O(workdir) and refuses, in one sentence,
    a missing set or RDB, one from another region (unless O(allow_other_region)), an RDB whose
    sha256 differs from the recorded one, an RDB that the project's own check refuses (its
    header and format version up to 12, the EOF opcode and the CRC64 trailer, a walk of its
    records), an RDB that C(redis-check-rdb) refuses where it reads the RDB's format version,
    and a set that does not cover every slot exactly once. It then refuses nodes that hold keys
    or belong to a formed cluster unless O(confirm). It returns the masters in slot order with
    their local RDB file, key count and the checks that accepted it.
  - O(action=reform) gives each master (already loaded with its RDB by the chart's
    C(redis-load-snapshot.sh)) its recorded slot ranges, makes every node meet, attaches the
    replicas and waits for C(cluster_state:ok); each master must then hold at most its RDB's
    keys and at least those without an expiry plus those whose expiry is still ahead (a master
    drops the keys whose expiry passed; the expire times are read again from the RDB files of
    O(prepared)).
  - Nodes are C(host:port), or Kubernetes targets such as C(pod/redis-0) reached through
    O(port_forward).
  - The chart's nodes listen on TLS only and refuse anonymous clients - O(tls_ca_file) and
    O(redis_user)/O(redis_password) (the chart's cluster-admin user) say how to reach them.
version_added: "0.1.0"
author: tai-deploy contributors
requirements: [google-auth]
options:
  action:
    description: What to do.
    type: str
    choices: [prepare, reform]
    default: prepare
  region:
    description: Region whose Redis is restored.
    type: str
    required: true
  bucket:
    description: Backup bucket.
    type: str
    required: true
  set_stamp:
    description: Stamp of the set (redis/<region>/<stamp>/); empty for the newest complete set.
    type: str
    default: ""
  source_region:
    description:
      - Region whose sets are read (C(redis/<source_region>/) of O(bucket)); empty for O(region).
      - A set of another region is restored only with O(allow_other_region).
    type: str
    default: ""
  allow_other_region:
    description: Accept a set taken in another region.
    type: bool
    default: false
  confirm:
    description: Allow replacing the data of nodes that hold keys or form a cluster.
    type: bool
    default: false
  nodes:
    description: Every Redis node (O(action=prepare) checks them for live data).
    type: list
    elements: str
    default: []
  masters:
    description:
      - O(action=reform) - C(node), C(announce) (host:port the cluster uses) and C(object) per
        master.
    type: list
    elements: dict
    default: []
  replicas:
    description: O(action=reform) - C(node) and C(announce) per replica.
    type: list
    elements: dict
    default: []
  pods:
    description:
      - O(action=reform) in Kubernetes - the Redis Pod objects (as C(k8s_info) returns them);
        in ordinal order the first ones become the masters (in the set's slot order), the others
        the replicas, announced by their pod IP. Replaces O(masters) and O(replicas).
    type: list
    elements: dict
    default: []
  redis_port:
    description: Redis port of the pods.
    type: int
    default: 6379
  prepared:
    description:
      - O(action=reform) - the RV(masters) that O(action=prepare) returned (key counts, keys with
        an expiry, local RDB files).
    type: list
    elements: dict
    default: []
  workdir:
    description: Local folder of the downloaded RDB files.
    type: path
    required: true
  check_rdb:
    description:
      - The redis-check-rdb binary, run after the project's own check where it reads the RDB's
        format version (it must then count the same keys). An older one (Debian bookworm's 7.0
        reads up to format 10; the chart's Redis 7.4 writes 12), or the default one when it is
        not installed, leaves the decision to the project's check.
    type: str
    default: redis-check-rdb
  storage_endpoint:
    description: Cloud Storage endpoint; a loopback URL for a test double.
    type: str
    default: https://storage.googleapis.com
  auth_kind:
    description: C(application) (Application Default Credentials) or C(none) (loopback only).
    type: str
    choices: [application, none]
    default: application
  tls_ca_file:
    description:
      - CA of the Redis node certificates (the C(ca.crt) of Secret C(redis-tls)); every connection
        then uses TLS and verifies the node's certificate chain. Empty - plain TCP.
    type: path
    default: ""
  redis_user:
    description: ACL user to log in as (the chart's C(cluster-admin)); empty - no login.
    type: str
    default: ""
  redis_password:
    description: Password of O(redis_user).
    type: str
    default: ""
  timeout:
    description: Seconds to wait for the re-formed cluster.
    type: float
    default: 300
  port_forward:
    description: How to reach pods through C(kubectl port-forward).
    type: dict
    suboptions:
      kubectl: {description: Path of kubectl., type: path, required: true}
      namespace: {description: Namespace of the Redis pods., type: str, default: tai-system}
      context: {description: kubeconfig context., type: str}
      remote_port: {description: Redis port in the pods., type: int, default: 6379}
      timeout: {description: Seconds to wait for a forward., type: float, default: 30}
"""

EXAMPLES = r"""
- name: Check the newest Redis snapshot set of the region
  redis_snapshot_restore:
    region: europe-west1
    bucket: tai-tai-production-europe-west1-backups
    nodes: [pod/redis-0, pod/redis-1, pod/redis-2]
    workdir: /tmp/redis-restore
    port_forward: {kubectl: kubectl, context: gke_p_europe-west1_tai-cluster}
"""

RETURN = r"""
set:
  description: Object name of the set's manifest.
  returned: always
  type: str
masters:
  description:
    - prepare - object, node_id, slots, file, keys, expires (keys with an expiry), rdb_version
      and checked_by (the checks that accepted the RDB) per master, in slot order.
  returned: always
  type: list
  elements: dict
live:
  description: prepare - nodes that held data (replaced because O(confirm) was given).
  returned: always
  type: list
  elements: str
cluster:
  description: reform - new node ids of masters and replicas, keys per master.
  returned: action=reform
  type: dict
"""

import contextlib
import json
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule

FORWARD = {
    "kubectl": {"type": "path", "required": True},
    "namespace": {"type": "str", "default": "tai-system"},
    "context": {"type": "str"},
    "remote_port": {"type": "int", "default": 6379},
    "timeout": {"type": "float", "default": 30},
}


def main() -> None:  # noqa: PLR0915 - one module flow, read top to bottom
    module = AnsibleModule(
        argument_spec={
            "action": {"type": "str", "choices": ["prepare", "reform"], "default": "prepare"},
            "region": {"type": "str", "required": True},
            "bucket": {"type": "str", "required": True},
            "set_stamp": {"type": "str", "default": ""},
            "source_region": {"type": "str", "default": ""},
            "allow_other_region": {"type": "bool", "default": False},
            "confirm": {"type": "bool", "default": False},
            "nodes": {"type": "list", "elements": "str", "default": []},
            "masters": {"type": "list", "elements": "dict", "default": []},
            "replicas": {"type": "list", "elements": "dict", "default": []},
            "pods": {"type": "list", "elements": "dict", "default": []},
            "redis_port": {"type": "int", "default": 6379},
            "prepared": {"type": "list", "elements": "dict", "default": []},
            "workdir": {"type": "path", "required": True},
            "check_rdb": {"type": "str", "default": "redis-check-rdb"},
            "storage_endpoint": {"type": "str", "default": "https://storage.googleapis.com"},
            "auth_kind": {"type": "str", "choices": ["application", "none"],
                          "default": "application"},
            "tls_ca_file": {"type": "path", "default": ""},
            "redis_user": {"type": "str", "default": ""},
            "redis_password": {"type": "str", "default": "", "no_log": True},
            "timeout": {"type": "float", "default": 300},
            "port_forward": {"type": "dict", "options": FORWARD},
        },
        supports_check_mode=True,
    )
    from ansible.module_utils.tai_deploy.backup_store import (
        BackupStore,
        StoreError,
        check_origin,
        controller_transport,
        verify_download,
    )
    from ansible.module_utils.tai_deploy.redis_snapshot import (
        SET_KIND,
        Access,
        ExpectedKeys,
        RedisError,
        download_and_check,
        expected_from_file,
        latest_set,
        live_data,
        members,
        reform,
    )
    from ansible.module_utils.tai_deploy.vault_api import VaultError
    from ansible.module_utils.tai_deploy.vault_bootstrap import PortForward, port_forward

    p = module.params
    if p["redis_user"] and not p["redis_password"]:
        module.fail_json(msg=f"redis_password is empty: the password of Redis user "
                             f"{p['redis_user']} is needed to log in")
    if p["tls_ca_file"] and not Path(p["tls_ca_file"]).is_file():
        module.fail_json(msg=f"tls_ca_file {p['tls_ca_file']} does not exist: it must hold the CA "
                             "of the Redis node certificates (ca.crt of Secret redis-tls)")
    access = Access(ca_file=p["tls_ca_file"] or "", user=p["redis_user"],
                    password=p["redis_password"])
    forward = PortForward(scheme="http", **p["port_forward"]) if p["port_forward"] else None

    def reach(stack: contextlib.ExitStack, node: str) -> str:
        if not node.startswith(("pod/", "svc/")):
            return node
        if forward is None:
            raise RedisError(f"node {node} is a Kubernetes target but no port_forward was given")
        return f"127.0.0.1:{stack.enter_context(port_forward(forward, node))}"

    out: dict[str, object] = {}
    changed = False
    try:
        store = BackupStore(p["bucket"], controller_transport(p["auth_kind"],
                                                              p["storage_endpoint"]),
                            p["storage_endpoint"])
        chosen = latest_set(store, p["source_region"] or p["region"], p["set_stamp"])
        check_origin(chosen, kind=SET_KIND, region=p["region"],
                     allow_other_region=p["allow_other_region"])
        workdir = Path(p["workdir"])
        workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        manifest_file = workdir / "manifest.json"
        store.download(chosen.name, manifest_file)
        verify_download(chosen, manifest_file)
        manifest = json.loads(manifest_file.read_text())
        objects = {o.name: o for o in store.list(chosen.name.rsplit("/", 1)[0] + "/")}
        set_members = members(manifest, objects)
        out["set"] = chosen.name
        with contextlib.ExitStack() as stack:
            if p["action"] == "prepare":
                listed = download_and_check(store, set_members, workdir, p["check_rdb"])
                live = live_data([reach(stack, n) for n in p["nodes"]], access)
                if live and not p["confirm"]:
                    raise RedisError(
                        f"{len(live)} Redis nodes hold data ({'; '.join(live[:3])}); restoring "
                        f"{chosen.name} would replace it, so the restore is refused without the "
                        "explicit confirmation (-e redis_restore_confirm=true)")
                out.update(masters=listed, live=live)
            else:
                if p["pods"]:
                    pods = sorted(
                        ((str(pod["metadata"]["name"]), str((pod.get("status") or {}).get(
                            "podIP") or "")) for pod in p["pods"]),
                        key=lambda item: int(item[0].rsplit("-", 1)[-1]))
                    if len(pods) < len(set_members):
                        raise RedisError(f"{len(pods)} Redis pods cannot hold the "
                                         f"{len(set_members)} masters of the set")
                    missing = [name for name, ip in pods if not ip]
                    if missing:
                        raise RedisError(f"pods {', '.join(missing)} have no IP yet")
                    slots = [{"node": f"pod/{name}", "announce": f"{ip}:{p['redis_port']}"}
                             for name, ip in pods]
                    p["masters"] = [{**slot, "object": m.obj.name}
                                    for slot, m in zip(slots, set_members, strict=False)]
                    p["replicas"] = slots[len(set_members):]
                by_object = {m.obj.name: m for m in set_members}
                if sorted(str(m.get("object")) for m in p["masters"]) != sorted(by_object):
                    raise RedisError("the masters to re-form do not match the set's RDBs one "
                                     "for one")
                masters = [(reach(stack, str(m["node"])), str(m["announce"]),
                            by_object[str(m["object"])]) for m in p["masters"]]
                replicas = [(reach(stack, str(r["node"])), str(r["announce"]))
                            for r in p["replicas"]]
                expected: dict[str, ExpectedKeys] = {}
                for m in p["prepared"]:
                    name = str(m["object"])
                    # Keys with an expiry: their expire times, read again from the checked file.
                    if m.get("expires") == 0:
                        expected[name] = ExpectedKeys(int(m["keys"]), 0, ())
                        continue
                    expected[name] = expected_from_file(Path(str(m["file"])), name)
                    if expected[name].keys != int(m["keys"]):
                        raise RedisError(f"the RDB file {m['file']} of {name} changed since it "
                                         "was checked; run the restore again")
                if not module.check_mode:
                    result = reform(masters, replicas, timeout=p["timeout"], access=access,
                                    expected_keys=expected)
                    out["cluster"] = result
                    changed = True
    except (StoreError, RedisError, VaultError) as exc:
        module.fail_json(msg=str(exc))
    except Exception as exc:
        module.fail_json(msg=f"unexpected {type(exc).__name__} in redis_snapshot_restore: {exc}")
    module.exit_json(changed=changed, **out)


if __name__ == "__main__":
    main()
