"""The Alertmanager receivers' Secret: created before the release mounts it, applied
server-side (no last-applied copy of its data), never printed.

The apply path is read from roles/monitoring/tasks/apply.yml as data (the tasks and their
order), and the Secret body is the filter's output; kubernetes.core.k8s's server-side apply
sends the definition as is, without the last-applied annotation (module_utils/apply.py of the
collection: ``server_side=True`` calls ``resource.server_side_apply(body=definition)``).
"""

from __future__ import annotations

import base64
import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleFilterError

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("tai_secrets",
                                              REPO / "plugins/filter/tai_secrets.py")
assert spec and spec.loader
tai_secrets = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tai_secrets)

APPLY: list[dict[str, Any]] = yaml.safe_load(
    (REPO / "roles/monitoring/tasks/apply.yml").read_text())


def test_the_secret_is_data_with_base64_values_and_the_ownership_labels() -> None:
    body = tai_secrets.tai_secret_manifest(
        {"slack-webhook-url": "https://hooks.example/x: {y}\nz"}, "alertmanager-receivers",
        "monitoring", {"app.kubernetes.io/managed-by": "tai-deploy"})
    assert body == {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "alertmanager-receivers", "namespace": "monitoring",
                     "labels": {"app.kubernetes.io/managed-by": "tai-deploy"}},
        "data": {"slack-webhook-url": base64.b64encode(
            b"https://hooks.example/x: {y}\nz").decode()}}


def test_a_bad_value_is_refused_without_printing_it() -> None:
    with pytest.raises(AnsibleFilterError) as exc:
        tai_secrets.tai_secret_manifest({"pagerduty-routing-key": {"nested": "s3cret"}},
                                        "alertmanager-receivers", "monitoring")
    assert "s3cret" not in str(exc.value)
    assert str(exc.value) == ("key pagerduty-routing-key of Secret monitoring/"
                              "alertmanager-receivers must be a string")


def _k8s_tasks() -> list[dict[str, Any]]:
    return [t for t in APPLY if "kubernetes.core.k8s" in t]


def test_the_secret_exists_before_the_release_on_a_new_cluster() -> None:
    names = [t["name"] for t in APPLY]
    release = next(i for i, t in enumerate(APPLY)
                   if t.get("ansible.builtin.include_role", {}).get("name") == "helm_release")
    secret_tasks = [i for i, t in enumerate(APPLY)
                    if "kubernetes.core.k8s" in t and "Secret" in t["name"]]
    assert secret_tasks and all(i < release for i in secret_tasks), names
    # No task may stop the role because the Secret is missing (a new cluster never has it).
    assert not [t for t in APPLY if "ansible.builtin.assert" in t
                and "receivers_secret" in str(t["ansible.builtin.assert"])], names
    # With no inventory data, an empty Secret is created only when none exists (one that an
    # operator created by hand is left alone).
    empty = next(t for t in _k8s_tasks() if "empty" in t["name"])
    assert "monitoring_receivers_secret.resources | length == 0" in str(empty["when"])


def test_every_secret_is_applied_server_side_and_never_logged() -> None:
    for task in _k8s_tasks():
        if "Secret" not in task["name"]:
            continue
        args = task["kubernetes.core.k8s"]
        assert args["apply"] is True and args["server_side_apply"]["field_manager"] == \
            "tai-deploy", task["name"]
        assert task["no_log"] is True, task["name"]
        assert "tai_secret_manifest" in args["definition"], task["name"]
