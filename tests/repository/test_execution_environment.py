"""execution-environment.yml: ansible-builder v3 structure, and the project's own pins."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml
from helpers.ansible_run import REPO
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

EE: dict[str, Any] = yaml.safe_load((REPO / "execution-environment.yml").read_text())


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _lock() -> dict[str, str]:
    out = {}
    for line in (REPO / "locks" / "main.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            out[_norm(name)] = version
    return out


def test_structure_is_ansible_builder_v3() -> None:
    assert EE["version"] == 3
    assert set(EE) <= {"version", "images", "dependencies", "additional_build_files",
                       "additional_build_steps", "build_arg_defaults", "options"}
    base = EE["images"]["base_image"]["name"]
    assert re.match(r"^[\w.\-/]+:[\w.\-]+$", base) and not base.endswith(":latest"), base
    deps = EE["dependencies"]
    assert set(deps) <= {"python", "system", "galaxy", "python_interpreter", "ansible_core",
                         "ansible_runner", "exclude"}
    assert deps["python_interpreter"]["python_path"].startswith("/")
    for key in ("ansible_core", "ansible_runner"):
        assert "==" in deps[key]["package_pip"], f"{key} must be pinned"
    for step in EE["additional_build_steps"]["append_final"]:
        assert re.match(r"^(RUN|COPY|ENV|LABEL|USER|WORKDIR) ", step), step
    for item in EE["additional_build_files"]:
        assert (REPO / item["src"]).is_file(), f"{item['src']} does not exist"
    for entry in deps["system"]:
        assert re.match(r"^[\w.+-]+ \[platform:(rpm|dpkg)\]$", entry), entry


def test_python_packages_are_the_locked_runtime_dependencies() -> None:
    lock = _lock()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    runtime = {_norm(Requirement(d).name) for d in project["project"]["dependencies"]}
    listed = {}
    for entry in EE["dependencies"]["python"]:
        name, _, version = entry.partition("==")
        assert version, f"{entry} is not pinned"
        listed[_norm(name)] = version
    assert set(listed) == runtime
    for name, version in listed.items():
        assert lock[name] == version, f"{name}: EE pins {version}, locks/main.txt {lock[name]}"
    core = EE["dependencies"]["ansible_core"]["package_pip"].partition("==")[2]
    assert core == lock["ansible-core"]


def test_interpreter_is_one_ansible_core_supports() -> None:
    path = EE["dependencies"]["python_interpreter"]["python_path"]
    minor = int(re.search(r"python3\.(\d+)$", path).group(1))  # type: ignore[union-attr]
    assert minor >= 12, "ansible-core 2.21 needs Python 3.12 or newer"


def test_interpreter_is_the_python_pyproject_requires() -> None:
    path = EE["dependencies"]["python_interpreter"]["python_path"]
    minor = int(re.search(r"python3\.(\d+)$", path).group(1))  # type: ignore[union-attr]
    spec = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert SpecifierSet(spec).contains(f"3.{minor}.0"), f"the EE runs 3.{minor}; pyproject: {spec}"
    assert EE["dependencies"]["python_interpreter"]["package_system"] == f"python3.{minor}"
    # Every build step runs that interpreter, none an older one.
    steps = " ".join(EE["additional_build_steps"]["append_final"])
    assert set(re.findall(r"/usr/bin/python3\.\d+", steps)) == {path}


def test_the_binaries_step_extracts_working_helm_and_kubectl(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "setup.py"), "--binaries-only",
                           str(tmp_path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    helm = subprocess.run([str(tmp_path / "helm"), "version", "--short"], capture_output=True,
                          text=True, check=True).stdout
    kubectl = subprocess.run([str(tmp_path / "kubectl"), "version", "--client"],
                             capture_output=True, text=True, check=True).stdout
    assert helm.startswith("v4.")
    assert "Client Version: v1.35" in kubectl


def test_the_ee_ships_tai_gke_token_run_by_its_python(tmp_path: Path) -> None:
    """The build step that installs the GKE credential plugin, run here with this Python."""
    files = {(i["src"], i["dest"]) for i in EE["additional_build_files"]}
    assert ("scripts/tai-gke-token", "tai/scripts") in files
    steps = EE["additional_build_steps"]["append_final"]
    assert not any("gke-gcloud-auth-plugin" in step for step in steps)
    install = next(s for s in steps if "tai-gke-token /usr/local/bin" in s)
    interpreter = EE["dependencies"]["python_interpreter"]["python_path"]
    assert f"#!{interpreter}" in install  # the interpreter that has google-auth
    assert any("tai-gke-token --help" in step for step in steps)
    # The same commands, with the build folders and the EE's Python replaced by this machine's.
    (tmp_path / "tai" / "scripts").mkdir(parents=True)
    (tmp_path / "tai" / "scripts" / "tai-gke-token").write_bytes(
        (REPO / "scripts" / "tai-gke-token").read_bytes())
    (tmp_path / "bin").mkdir()
    command = (install.removeprefix("RUN ").replace("/tmp/tai", str(tmp_path / "tai"))
               .replace("/usr/local/bin", str(tmp_path / "bin"))
               .replace(interpreter, sys.executable))
    subprocess.run(["bash", "-euc", command], check=True)
    installed = tmp_path / "bin" / "tai-gke-token"
    assert installed.read_text().splitlines()[0] == f"#!{sys.executable}"
    proc = subprocess.run([str(installed), "--help"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "ExecCredential" in proc.stdout
