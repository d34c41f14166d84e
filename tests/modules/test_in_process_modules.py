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
