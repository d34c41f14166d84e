"""The grpc_health_check Ansible module: documentation, examples and ansible-playbook runs."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from helpers.grpc_servers import HealthServer, free_port

REPO = Path(__file__).resolve().parents[2]
MODULE_PATH = REPO / "library" / "grpc_health_check.py"
BIN = Path(sys.executable).parent
MODULE_NAMES = {"grpc_health_check", "tai_deploy.grpc_health_check"}


@pytest.fixture(scope="module")
def module() -> ModuleType:
    """The module file imported as plain Python (for its documentation and argument_spec)."""
    spec = importlib.util.spec_from_file_location("grpc_health_check_module", MODULE_PATH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _doc_options(module: ModuleType) -> dict[str, Any]:
    options: dict[str, Any] = yaml.safe_load(module.DOCUMENTATION)["options"]
    return options


def _compare(doc: Mapping[str, Any], spec: Mapping[str, Any], where: str) -> list[str]:
    problems = [f"{where}{name}: documented but not in argument_spec"
                for name in doc.keys() - spec.keys()]
    problems += [f"{where}{name}: in argument_spec but not documented"
                 for name in spec.keys() - doc.keys()]
    for name in doc.keys() & spec.keys():
        d, s = doc[name], spec[name]
        for key, default in (("type", "str"), ("default", None), ("choices", None),
                             ("required", False), ("elements", None)):
            if d.get(key, default) != s.get(key, default):
                problems.append(f"{where}{name}: {key} is {d.get(key, default)!r} in "
                                f"DOCUMENTATION but {s.get(key, default)!r} in argument_spec")
        if "options" in s or "suboptions" in d:
            problems += _compare(d.get("suboptions", {}), s.get("options", {}), f"{name}.")
    return problems


def test_documentation_matches_the_argument_spec(module: ModuleType) -> None:
    assert _compare(_doc_options(module), module.ARGUMENT_SPEC, "") == []


def test_every_example_uses_only_real_parameters(module: ModuleType) -> None:
    spec: dict[str, Any] = module.ARGUMENT_SPEC
    target_spec: dict[str, Any] = spec["targets"]["options"]
    tasks = yaml.safe_load(module.EXAMPLES)
    uses = [task[name] for task in tasks for name in MODULE_NAMES if name in task]
    assert len(uses) >= 4
    problems: list[str] = []
    for n, args in enumerate(uses):
        problems += [f"example {n}: unknown parameter {k!r}" for k in args if k not in spec]
        problems += [f"example {n}: required parameter {k!r} missing"
                     for k, opts in spec.items() if opts.get("required") and k not in args]
        mode = args.get("mode", "check")
        if mode not in spec["mode"]["choices"]:
            problems.append(f"example {n}: mode {mode!r} is not a choice")
        for target in args.get("targets", []):
            problems += [f"example {n}: unknown target parameter {k!r}"
                         for k in target if k not in target_spec]
            if "address" not in target:
                problems.append(f"example {n}: a target without address")
    assert problems == []


def test_ansible_doc_renders() -> None:
    result = subprocess.run(
        [BIN / "ansible-doc", "-M", REPO / "library", "grpc_health_check"],
        capture_output=True, text=True, check=False, env={**os.environ, "ANSIBLE_NOCOLOR": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert "grpc_health_check" in result.stdout
    assert "EXAMPLES" in result.stdout and "RETURN VALUES" in result.stdout
    assert "ERROR" not in result.stderr and "WARNING" not in result.stderr


# ------------------------------------------------------------------------------------------
# ansible-playbook


SECRET = "Bearer pl4ybook-s3cr3t-t0ken"
PLAIN_SECRET = "session=c00kie-s3cr3t"


@pytest.fixture
def servers() -> Iterator[tuple[HealthServer, HealthServer]]:
    with HealthServer({"": "SERVING", "tai.Governor": "SERVING"}) as up, \
            HealthServer({"": "NOT_SERVING"}) as down:
        yield up, down


def run_playbook(tmp_path: Path, tasks: list[dict[str, Any]], *args: str,
                 extra_env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    play = [{
        "hosts": "localhost", "connection": "local", "gather_facts": False,
        "vars": {"ansible_python_interpreter": sys.executable}, "tasks": tasks,
    }]
    (tmp_path / "playbook.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(tmp_path / "ansible.cfg"),
        "ANSIBLE_LIBRARY": str(REPO / "library"),
        "ANSIBLE_MODULE_UTILS": str(REPO / "module_utils"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCALHOST_WARNING": "False",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
        **(extra_env or {}),
    }
    return subprocess.run(
        [BIN / "ansible-playbook", "playbook.yml", *args], cwd=tmp_path, env=env,
        capture_output=True, text=True, check=False, timeout=120,
    )


@pytest.mark.playbook
def test_module_through_ansible_playbook(
    tmp_path: Path, servers: tuple[HealthServer, HealthServer]
) -> None:
    up, down = servers
    dead = f"127.0.0.1:{free_port()}"
    fast = {"connect_timeout": 0.5, "rpc_timeout": 0.5}
    tasks: list[dict[str, Any]] = [
        {"name": "healthy, with a routing header and secrets", "grpc_health_check": {
            "targets": [{"name": "governor", "address": up.address, "service": "tai.Governor",
                         "metadata": {"cookie": PLAIN_SECRET}},
                        {"address": up.address}],
            "metadata": {"x-tai-slot": "preview"},
            "sensitive_metadata": {"authorization": SECRET}, **fast},
         "register": "ok"},
        {"ansible.builtin.assert": {"that": [
            "ok is not failed", "ok is not changed", "ok.healthy",
            "ok.summary == {'total': 2, 'healthy': 2, 'unhealthy': 0, 'by_error': {}}",
            "ok.targets[0].name == 'governor'", "ok.targets[0].status == 'SERVING'",
            "ok.targets[0].metadata_keys == ['authorization', 'cookie', 'x-tai-slot']",
        ]}},
        {"name": "unhealthy without failing", "grpc_health_check": {
            "targets": [{"name": "coordinator", "address": down.address},
                        {"name": "scheduler", "address": dead}],
            "fail_on_unhealthy": False, **fast},
         "register": "bad"},
        {"ansible.builtin.assert": {"that": [
            "bad is not failed", "not bad.healthy",
            "bad.summary.by_error == {'not_serving': 1, 'connect_failed': 1}",
            "bad.targets | map(attribute='error') | list == ['not_serving', 'connect_failed']",
        ]}},
        {"name": "unhealthy fails by default", "grpc_health_check": {
            "targets": [{"name": "coordinator", "address": down.address},
                        {"name": "governor", "address": up.address}], **fast},
         "register": "failing", "ignore_errors": True},
        {"ansible.builtin.assert": {"that": [
            "failing is failed", "failing is not changed",
            f"failing.msg == '1 of 2 gRPC target(s) unhealthy: coordinator ({down.address}): "
            "not_serving - status NOT_SERVING'",
            "failing.targets[1].healthy",
        ]}},
        {"name": "parameter error", "grpc_health_check": {
            "targets": [{"address": up.address,
                         "metadata": {"Authorization": "Bearer early-s3cr3t"}}],
            "tls": True, "tls_no_verify": True, "tls_ca_cert": "/nonexistent/ca.pem"},
         "register": "invalid", "ignore_errors": True},
        {"ansible.builtin.assert": {"that": [
            "invalid is failed",
            "'tls_no_verify and tls_ca_cert are mutually exclusive' in invalid.msg",
        ]}},
        {"name": "check mode", "grpc_health_check": {"targets": [{"address": up.address}]},
         "check_mode": True, "register": "checked"},
        {"ansible.builtin.assert": {"that": ["checked.healthy", "checked is not changed"]}},
    ]
    # Results carry the module's arguments too, to show that the secrets are masked there.
    result = run_playbook(tmp_path, tasks, "-vvv",
                          extra_env={"ANSIBLE_INJECT_INVOCATION": "True"})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "failed=0" in result.stdout and "ignored=2" in result.stdout
    assert '"module_args"' in output and '"x-tai-slot": "preview"' in output
    # The secrets reached the server, and appear nowhere in the -vvv output.
    sent = [headers for _, headers in up.calls if "authorization" in headers]
    assert sent and all(h["authorization"] == SECRET for h in sent)
    assert {h.get("cookie") for h in sent} == {PLAIN_SECRET, None}
    assert all(h["x-tai-slot"] == "preview" for h in sent)
    assert SECRET not in output and "s3cr3t" not in output


@pytest.mark.playbook
def test_module_result_as_json(tmp_path: Path,
                               servers: tuple[HealthServer, HealthServer]) -> None:
    up, _ = servers
    tasks = [{"grpc_health_check": {"targets": [{"address": up.address, "name": "gov"}],
                                    "wait_timeout": 1, "consecutive_successes": 2,
                                    "interval": 0.1}}]
    result = run_playbook_json(tmp_path, tasks)
    (task,) = result["plays"][0]["tasks"]
    res = task["hosts"]["localhost"]
    assert res["changed"] is False and res["healthy"] is True
    assert res["targets"][0]["consecutive_successes"] == 2
    assert res["targets"][0]["attempts"] == 2
    assert res["msg"] == "all 1 gRPC target(s) SERVING"
    assert set(res) >= {"targets", "summary", "healthy", "elapsed_ms", "msg"}


def run_playbook_json(tmp_path: Path, tasks: list[dict[str, Any]]) -> dict[str, Any]:
    result = run_playbook(tmp_path, tasks,
                          extra_env={"ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json"})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed
