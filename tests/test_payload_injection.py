"""No input can inject into a body or a manifest.

Every string input of every role (the str and path options of its meta/argument_specs.yml that
have no choices) gets a payload with a colon and braces that names the option,
``p: {tai_injected: <option>} ,x``. A newline is refused for every string input by the shape check
(tests/test_input_checks.py); the colon and the braces are what a YAML text template turns into
structure. Each payload is either refused by the validation play, in a sentence that names the
option, or planned: then it may appear in the plan only inside string values, never as the
mapping ``{tai_injected: <option>}``, in every JSON and YAML artifact and in every YAML or JSON
document carried inside a string (ConfigMap data, Helm values).

One validation run and one plan run with every payload at once. A role whose templates were
still YAML text with interpolated values would be listed in TEMPLATE_STILL_TEXT (planned in a
second run, xfail(strict=True), "template still text") until converted to data; on
this branch every role passes (the remaining text templates pass their values through to_json
or the filters of plugins/filter), so the list is empty.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers.ansible_run import REPO, PlaybookRun, run_playbook
from tai_deploy.inventory import load_argument_specs

REGION = "europe-west1"
ROLES_DIR = REPO / "roles"
# helm_release has no inputs of its own in a plan: the other roles include it with theirs.
ROLES = sorted(p.parent.parent.name for p in ROLES_DIR.glob("*/meta/argument_specs.yml")
               if p.parent.parent.name != "helm_release")
TEMPLATE_STILL_TEXT: dict[str, str] = {}


def payload(name: str) -> str:
    return f"p: {{tai_injected: {name}}} ,x"


def string_options(role: str) -> list[str]:
    options = load_argument_specs(ROLES_DIR, role)
    return sorted(n for n, o in options.items()
                  if o.get("type", "str") in ("str", "path") and not o.get("choices"))


@pytest.fixture(scope="module")
def refused() -> set[str]:
    """Names whose payload the validation play refuses (each in a sentence naming it)."""
    names = [n for role in ROLES for n in string_options(role)]
    run = run_playbook("playbooks/validate.yml", "-l", REGION, "-e",
                       json.dumps({n: payload(n) for n in names}))
    assert run.returncode != 0 and "Traceback" not in run.output
    text = " ".join(run.output.split())
    found = {n for n in names if payload(n) in text}
    for name in found:
        assert f"{name} " in text.split(payload(name))[0][-200:], name  # the sentence names it
    return found


def _plan(roles: list[str], refused: set[str], root: Path) -> PlaybookRun:
    given = {n: payload(n) for role in roles for n in string_options(role) if n not in refused}
    return run_playbook("site.yml", "-l", REGION, "-e", json.dumps(given),
                        env={"TAI_BUILD_ROOT": str(root)})


@pytest.fixture(scope="module")
def data_plan(refused: set[str], tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[PlaybookRun, Path]:
    root = tmp_path_factory.mktemp("payload-data") / "build"
    return _plan([r for r in ROLES if r not in TEMPLATE_STILL_TEXT], refused, root), root


@pytest.fixture(scope="module")
def text_plan(refused: set[str], tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[PlaybookRun, Path]:
    root = tmp_path_factory.mktemp("payload-text") / "build"
    return _plan(sorted(TEMPLATE_STILL_TEXT), refused, root), root


def _documents(path: Path) -> Iterator[Any]:
    text = path.read_text()
    if path.suffix == ".json":
        yield json.loads(text)
    elif path.suffix in (".yaml", ".yml"):
        yield from yaml.safe_load_all(text)


def injected(value: Any, where: str) -> Iterator[str]:
    """Paths where a payload became structure: a mapping {tai_injected: <option>}."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "tai_injected":
                yield f"{where}: {{tai_injected: {item}}}"
            yield from injected(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from injected(item, f"{where}[{i}]")
    elif isinstance(value, str) and "tai_injected" in value and "\n" in value:
        try:  # a YAML or JSON document carried in a string (ConfigMap data, values)
            inner = yaml.safe_load(value)
        except yaml.YAMLError:
            return
        if isinstance(inner, dict | list):
            yield from injected(inner, f"{where}(document)")


def marks(role: str) -> list[pytest.MarkDecorator]:
    if role in TEMPLATE_STILL_TEXT:
        return [pytest.mark.xfail(strict=True, reason=(
            f"{role}: template still text (converted to data in "
            f"{TEMPLATE_STILL_TEXT[role]})"))]
    return []


@pytest.mark.playbook
@pytest.mark.parametrize("role", [pytest.param(r, marks=marks(r)) for r in ROLES])
def test_a_payload_is_refused_or_only_a_string_value(
        role: str, refused: set[str], request: pytest.FixtureRequest) -> None:
    run, root = request.getfixturevalue(
        "text_plan" if role in TEMPLATE_STILL_TEXT else "data_plan")
    assert run.returncode == 0, run.output[-3000:]
    names = [n for n in string_options(role) if n not in refused]
    problems: list[str] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        text = path.read_text(errors="replace")
        try:
            docs = list(_documents(path))
        except (yaml.YAMLError, json.JSONDecodeError) as exc:
            if any(n in text for n in names):
                problems.append(f"{path.relative_to(root)} does not parse: {exc}")
            continue
        for doc in docs:
            problems += [p for p in injected(doc, str(path.relative_to(root)))
                         if p.rsplit("tai_injected: ", 1)[1].rstrip("}") in names]
    assert problems == []


# Inputs that the plan writes into bodies and manifests (the others are used in apply mode
# only: endpoints, credentials files, kube contexts): their payloads must be in the plan.
IN_THE_PLAN = ("dns_record_name", "project_firestore_database", "vault_backup_schedule",
               "monitoring_prometheus_retention", "logging_cluster_name",
               "namespaces_pod_security_version", "autoscaling_keda_prometheus_url",
               "istio_ingress_neg_name")


@pytest.mark.playbook
def test_the_payloads_reach_the_plan(data_plan: tuple[PlaybookRun, Path]) -> None:
    run, root = data_plan
    assert run.returncode == 0, run.output[-3000:]
    text = "".join(p.read_text(errors="replace") for p in root.rglob("*") if p.is_file())
    missing = [n for n in IN_THE_PLAN
               if payload(n) not in text and json.dumps(payload(n))[1:-1] not in text]
    assert missing == []


def test_the_detector_finds_a_payload_that_became_structure() -> None:
    # what a text template such as `hosts: [{{ value }}]` makes of the payload
    text = "hosts: [" + payload("istio_hosts") + "]\n"
    assert list(injected(yaml.safe_load(text), "f")) == [
        "f.hosts[0].p: {tai_injected: istio_hosts}"]
    # a YAML document inside a ConfigMap's data is read too
    carried = {"data": {"config.yaml": text}}
    assert list(injected(carried, "cm")) == [
        "cm.data.config.yaml(document).hosts[0].p: {tai_injected: istio_hosts}"]
    # the payload as a string value is fine
    assert list(injected({"name": payload("x"), "doc": "a: 1\nb: " + json.dumps(payload("x"))},
                         "f")) == []
