"""tai_bundle through its action plugin (plugins/action): the module's checks, check mode, diff.

The plan's modules run their cores in Ansible's worker when the host is the controller
(plugins/plugin_utils/in_process.py); these runs go through that path (`ansible localhost` has
a local connection) and hold it to what library/tai_bundle.py documents.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from pathlib import Path

from helpers.ansible_run import BIN, REPO, ansible_env


def adhoc(args: Mapping[str, object], *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "ansible"), "localhost", "-m", "tai_bundle", "-a", json.dumps(args), *flags],
        cwd=REPO, env=ansible_env({"ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
                                   "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json"}),
        capture_output=True, text=True, timeout=120, check=False)


def result(proc: subprocess.CompletedProcess[str]) -> dict[str, object]:
    out = json.loads(proc.stdout)
    task = out["plays"][0]["tasks"][0]["hosts"]["localhost"]
    assert isinstance(task, dict)
    return task


def test_arguments_are_checked_by_the_modules_own_spec(tmp_path: Path) -> None:
    unknown = result(adhoc({"dest": str(tmp_path), "bogus": 1}))
    assert unknown["failed"] is True
    assert "Unsupported parameters for (tai_bundle) module: bogus" in str(unknown["msg"])
    lacking = result(adhoc({"dest": str(tmp_path), "manifests": []}))
    assert lacking["failed"] is True
    assert "missing parameter(s) required by 'manifests': kubernetes_version" \
        in str(lacking["msg"])
    assert not any(tmp_path.iterdir())


def test_check_mode_and_diff_then_a_write_then_no_change(tmp_path: Path) -> None:
    args = {"dest": str(tmp_path / "b"), "files": [{"path": "a.json", "data": {"x": 1}}]}
    checked = result(adhoc(args, "--check", "--diff"))
    assert checked["changed"] is True
    assert checked["diff"] == [{"before_header": "/dev/null",
                                "after_header": f"{tmp_path}/b/a.json",
                                "before": "", "after": '{\n  "x": 1\n}\n'}]
    assert not (tmp_path / "b").exists(), "check mode must not write"
    written = result(adhoc(args))
    assert written["changed"] is True and written["summary"] == {
        "created": 1, "updated": 0, "unchanged": 0, "removed": 0}
    assert (tmp_path / "b" / "a.json").read_text() == '{\n  "x": 1\n}\n'
    assert result(adhoc(args))["changed"] is False


def small_chart(folder: Path) -> Path:
    """A chart of one ConfigMap whose values.schema.json requires an integer `replicas`."""
    chart = folder / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: small\nversion: 0.1.0\n")
    (chart / "values.schema.json").write_text(json.dumps({
        "$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
        "required": ["replicas"], "properties": {"replicas": {"type": "integer"}}}))
    (chart / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: small\n"
        "  namespace: {{ .Release.Namespace }}\n"
        "data:\n  replicas: {{ .Values.replicas | quote }}\n")
    return chart


def chart_args(tmp_path: Path, values: Mapping[str, object]) -> dict[str, object]:
    return {"dest": str(tmp_path / "b"), "kubernetes_version": "1.34",
            "chart": {"path": str(small_chart(tmp_path)), "release": "small",
                      "namespace": "tai-system", "helm": str(BIN / "helm"),
                      "values": dict(values), "values_path": "values.yaml",
                      "refusal": "the small chart refused the values of europe-west1"}}


def test_a_chart_is_rendered_with_its_values_then_validated_and_written(tmp_path: Path) -> None:
    args = chart_args(tmp_path, {"replicas": 3})
    written = result(adhoc(args))
    assert written["changed"] is True and written["schema_validated"] == 1
    manifest = tmp_path / "b" / "manifests" / "tai-system" / "configmap-small.yaml"
    assert "replicas: '3'" in manifest.read_text()
    assert (tmp_path / "b" / "values.yaml").read_text() == "---\nreplicas: 3\n"
    assert result(adhoc(args))["changed"] is False


def test_a_refusal_of_the_chart_is_one_sentence_and_writes_nothing(tmp_path: Path) -> None:
    refused = result(adhoc(chart_args(tmp_path, {"replicas": "three"})))
    assert refused["failed"] is True
    msg = str(refused["msg"])
    # helm's own words: the schema path and the type it wanted, without "Error: " or the
    # "Use --debug" hint.
    assert msg.startswith("the small chart refused the values of europe-west1: "), msg
    assert "replicas" in msg and "integer" in msg, msg
    assert "Error:" not in msg and "--debug" not in msg and "\n" not in msg, msg
    assert not (tmp_path / "b").exists()


def test_a_chart_and_manifests_are_not_given_together(tmp_path: Path) -> None:
    both = result(adhoc({**chart_args(tmp_path, {"replicas": 1}), "manifests": []}))
    assert both["failed"] is True
    assert "parameters are mutually exclusive: manifests|chart" in str(both["msg"])
    assert not (tmp_path / "b").exists()
