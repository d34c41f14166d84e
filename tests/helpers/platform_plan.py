"""Render the platform roles' plans (namespaces, istio, monitoring, logging, autoscaling).

`render()` runs a small playbook that applies only these roles, for the inventory's regions,
exactly as the project's phase playbooks do: it sits in a `playbooks/` folder of its own next to
a `group_vars` link to the repository's group_vars/all (so pins and paths load the same way),
and writes its plans under that folder's `build/`. Optional host_vars/group_vars go into a copy
of the production inventory. Results are cached per input, so that every test module shares one
render of the default plan.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from helpers.ansible_run import REPO, PlaybookRun, run_playbook

ROLES = ("namespaces", "istio", "monitoring", "logging", "autoscaling")
INVENTORY = REPO / "inventories" / "production"
REGIONS = tuple(sorted(p.stem for p in (INVENTORY / "host_vars").glob("*.yml")))
CONTRACT = REPO / "roles" / "monitoring" / "files" / "metrics-contract.yml"

_PLAYBOOK = """\
---
- name: Plan the platform roles of each region
  hosts: tai_regions
  gather_facts: false
  roles: {roles}
"""


@dataclass(frozen=True)
class Plan:
    """A finished run and the build folder it wrote."""

    run: PlaybookRun
    root: Path
    playbook: Path
    inventory: Path

    def rerun(self, *args: str) -> PlaybookRun:
        """The same playbook on the same project again."""
        return run(self.root, self.playbook, self.inventory, *args)

    def region(self, region: str) -> Path:
        return self.root / "build" / region

    def yaml(self, region: str, rel: str) -> Any:
        docs = list(yaml.safe_load_all((self.region(region) / rel).read_text()))
        return docs[0] if len(docs) == 1 else docs

    def values(self, region: str, role: str, release: str) -> dict[str, Any]:
        data = self.yaml(region, f"{role}/values/{release}.yaml")
        assert isinstance(data, dict)
        return data

    def release(self, region: str, role: str, release: str) -> dict[str, Any]:
        data = self.yaml(region, f"{role}/releases/{release}.yaml")
        assert isinstance(data, dict)
        return data

    def manifests(self, region: str, role: str) -> list[dict[str, Any]]:
        folder = self.region(region) / role / "manifests"
        out: list[dict[str, Any]] = []
        for path in sorted(folder.rglob("*.yaml")):
            out.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
        return out

    def files(self, region: str, role: str) -> list[str]:
        folder = self.region(region) / role
        return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _workdir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="tai-platform-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def make_project(roles: tuple[str, ...] = ROLES,
                 host_vars: dict[str, dict[str, Any]] | None = None,
                 group_vars: dict[str, Any] | None = None) -> tuple[Path, Path, Path]:
    """(root, playbook, inventory) of a throw-away project that plans `roles`."""
    root = _workdir()
    playbooks = root / "playbooks"
    playbooks.mkdir()
    (playbooks / "group_vars").symlink_to(REPO / "group_vars")
    playbook = playbooks / "platform-plan.yml"
    playbook.write_text(_PLAYBOOK.format(roles=json.dumps(list(roles))))
    inventory = root / "inventory"
    shutil.copytree(INVENTORY, inventory)
    for region, data in (host_vars or {}).items():
        (inventory / "host_vars" / f"{region}.yml").write_text(
            (INVENTORY / "host_vars" / f"{region}.yml").read_text()
            + yaml.safe_dump(data, sort_keys=True))
    if group_vars:
        (inventory / "group_vars" / "all" / "zz-test.yml").write_text(
            "---\n" + yaml.safe_dump(group_vars, sort_keys=True))
    return root, playbook, inventory


def run(root: Path, playbook: Path, inventory: Path, *args: str) -> PlaybookRun:
    return run_playbook("-i", str(inventory), str(playbook), *args)


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


@functools.cache
def _render(roles: tuple[str, ...], host_vars: str, group_vars: str, args: tuple[str, ...]) -> Plan:
    root, playbook, inventory = make_project(roles, json.loads(host_vars), json.loads(group_vars))
    return Plan(run(root, playbook, inventory, *args), root, playbook, inventory)


def render(roles: tuple[str, ...] = ROLES, *, host_vars: dict[str, dict[str, Any]] | None = None,
           group_vars: dict[str, Any] | None = None, args: tuple[str, ...] = ()) -> Plan:
    """Plan `roles` for every region (cached: the same input renders once per session)."""
    return _render(roles, _key(host_vars or {}), _key(group_vars or {}), args)


def contract() -> dict[str, Any]:
    data = yaml.safe_load(CONTRACT.read_text())
    assert isinstance(data, dict)
    return data


def host_failure(run_: PlaybookRun, host: str) -> str:
    """The `msg` of the failed task of `host` (the YAML result block parsed, lines joined)."""
    lines = run_.stdout.splitlines()
    marker = f"fatal: [{host}]: FAILED! =>"
    for i, line in enumerate(lines):
        if line.startswith(marker):
            inline = line[len(marker):].strip()
            if inline:
                result = yaml.safe_load(inline)
            else:
                block: list[str] = []
                for nxt in lines[i + 1:]:
                    if nxt and not nxt.startswith(" "):
                        break
                    block.append(nxt)
                result = yaml.safe_load(textwrap.dedent("\n".join(block)))
            assert isinstance(result, dict), result
            return " ".join(str(result.get("msg", "")).split())
    raise AssertionError(f"{host} did not fail:\n{run_.output[-3000:]}")


# One positive run with the inventory's knobs turned, shared by the role tests: per-region
# Alertmanager routes (asia-southeast1), Elasticsearch + Kibana and both blue-green slots
# (europe-west1), an extra namespace and per-region HPA bounds (us-central1), a Redis trigger.
VARIANT_HOST_VARS: dict[str, dict[str, Any]] = {
    "asia-southeast1": {
        "monitoring_alertmanager_receivers": {
            "tai-oncall-apac": {"pagerduty_configs": [{
                "routing_key_file": "/etc/alertmanager/secrets/alertmanager-receivers/apac-key",
            }]},
        },
        "monitoring_alertmanager_routes": [
            {"receiver": "tai-oncall-apac", "matchers": ['severity = "critical"']},
        ],
    },
    "europe-west1": {
        "logging_elasticsearch_enabled": True,
        "logging_kibana_enabled": True,
        "autoscaling_slots": ["blue", "green"],
    },
    "us-central1": {
        "namespaces_definitions": {
            "batch": {"enforce": "baseline",
                      "exception": "batch jobs of a vendor image that runs as root."},
            "keda": {"state": "absent"},
        },
    },
}
VARIANT_GROUP_VARS: dict[str, Any] = {
    "autoscaling_hpa": {"governor": {"regions": {"us-central1": {"min_replicas": 5,
                                                                  "max_replicas": 20}}}},
    "autoscaling_keda": {"scheduler": {"redis_list_name": "scheduler:queue",
                                       "redis_list_length": 20}},
}


def variant() -> Plan:
    return render(host_vars=VARIANT_HOST_VARS, group_vars=VARIANT_GROUP_VARS)
