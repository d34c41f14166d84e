"""The repository keeps its own rules: pins agree, roles are documented, modules render."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import ansible
import pytest
import yaml
from helpers.ansible_run import REPO, ansible_env
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

BIN = Path(sys.executable).parent
ROLES = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "tasks").is_dir())
MODULES = sorted(p.stem for p in (REPO / "library").glob("*.py"))
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _lock(name: str) -> dict[str, str]:
    pins = {}
    for line in (REPO / "locks" / f"{name}.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            pkg, _, version = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", pkg).lower()] = version
    return pins


def test_every_declared_dependency_is_locked_at_a_version_its_range_allows() -> None:
    lock = _lock("main")
    declared = list(PYPROJECT["project"]["dependencies"])
    for group in PYPROJECT["dependency-groups"].values():
        declared += group
    for spec in declared:
        req = Requirement(spec)
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        assert name in lock, f"{req.name} is declared in pyproject.toml but not in locks/main.txt"
        assert req.specifier.contains(lock[name], prereleases=True), \
            f"locks/main.txt pins {req.name}=={lock[name]}, outside {req.specifier}"


def test_ansible_is_the_14_series_with_core_2_21() -> None:
    lock = _lock("main")
    assert lock["ansible"].startswith("14.")
    assert lock["ansible-core"].startswith("2.21.")


def test_isolated_tools_are_locked() -> None:
    for name, spec in PYPROJECT["tool"]["tai-deploy"]["isolated-tools"].items():
        req = Requirement(spec)
        assert req.specifier.contains(_lock(name)[req.name.lower()])


def test_requirements_yml_is_satisfied_by_the_bundled_collections() -> None:
    collections_root = Path(ansible.__file__).parent.parent / "ansible_collections"
    wanted = yaml.safe_load((REPO / "requirements.yml").read_text())["collections"]
    assert {c["name"] for c in wanted} >= {"kubernetes.core", "google.cloud",
                                           "community.hashi_vault", "community.general"}
    for item in wanted:
        namespace, name = item["name"].split(".")
        manifest = json.loads((collections_root / namespace / name / "MANIFEST.json").read_text())
        version = manifest["collection_info"]["version"]
        assert SpecifierSet(item["version"]).contains(version), \
            f"bundled {item['name']} {version} does not satisfy {item['version']}"


def _commented_keys(path: Path) -> tuple[set[str], set[str]]:
    """Top-level keys of a YAML file, and those documented by a comment.

    A key is documented when a comment opens the paragraph it belongs to (a run of lines with
    no blank line), so related defaults may share one comment.
    """
    keys, documented = set(), set()
    commented_paragraph = False
    for line in path.read_text().splitlines():
        if not line.strip():
            commented_paragraph = False
        elif line.startswith("#"):
            commented_paragraph = True
        elif match := re.match(r"^([a-z][a-z0-9_]*):", line):
            keys.add(match.group(1))
            if commented_paragraph:
                documented.add(match.group(1))
    return keys, documented


@pytest.mark.parametrize("role", ROLES)
def test_role_has_documented_prefixed_and_validated_defaults(role: str) -> None:
    base = REPO / "roles" / role
    assert (base / "README.md").is_file(), f"roles/{role}/README.md is missing"
    specs = yaml.safe_load((base / "meta" / "argument_specs.yml").read_text())
    options: dict[str, Any] = specs["argument_specs"]["main"].get("options", {})
    for name, option in options.items():
        assert option.get("description"), f"{role}: option {name} has no description"
    defaults = base / "defaults" / "main.yml"
    if not defaults.exists():
        return
    keys, documented = _commented_keys(defaults)
    assert keys, f"roles/{role}/defaults/main.yml defines nothing"
    for key in sorted(keys):
        assert key.startswith(role + "_"), f"{role}: default {key} lacks the {role}_ prefix"
        assert key in documented, f"{role}: default {key} has no comment above it"
        assert key in options, f"{role}: default {key} is not in meta/argument_specs.yml"


@pytest.mark.parametrize("role", ROLES)
def test_no_role_copies_the_list_of_services(role: str) -> None:
    """The services are listed once (group_vars/all/services.yml); a role derives its own list
    from tai_service_names instead of writing the names again."""
    names = yaml.safe_load((REPO / "group_vars" / "all" / "services.yml").read_text())[
        "tai_service_names"]
    defaults = REPO / "roles" / role / "defaults" / "main.yml"
    values = (yaml.safe_load(defaults.read_text()) or {}) if defaults.exists() else {}
    copies = [key for key, value in values.items()
              if isinstance(value, list) and sorted(map(str, value)) == sorted(names)]
    assert copies == [], f"{role}: {', '.join(copies)} lists the services again; derive it " \
        "from tai_service_names"


def test_the_roles_that_name_the_services_derive_them_from_the_one_list() -> None:
    wanted = {"vault": "vault_services", "monitoring": "monitoring_tai_services",
              "bluegreen": "bluegreen_known_services"}
    for role, key in wanted.items():
        values = yaml.safe_load((REPO / "roles" / role / "defaults" / "main.yml").read_text())
        assert values[key] == "{{ tai_service_names }}", f"{role}: {key} is {values[key]!r}"


def _module_doc(name: str) -> dict[str, Any]:
    proc = subprocess.run([str(BIN / "ansible-doc"), "-M", str(REPO / "library"), "--json", name],
                          capture_output=True, text=True, env=ansible_env(), check=False)
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)[name]
    return doc


@pytest.mark.parametrize("module", MODULES)
def test_module_documentation_renders_and_examples_use_real_options(module: str) -> None:
    doc = _module_doc(module)
    assert doc["doc"]["short_description"]
    assert doc["return"] is not None
    options = doc["doc"]["options"]
    examples = yaml.safe_load(doc["examples"])
    used = [t for t in examples if isinstance(t, dict) and module in t]
    assert used, f"{module}: EXAMPLES never call the module"
    for task in used:
        unknown = set(task[module]) - set(options)
        assert not unknown, f"{module}: EXAMPLES use options that do not exist: {unknown}"


@pytest.mark.parametrize("module", MODULES)
def test_module_argument_spec_matches_its_documentation(module: str) -> None:
    source = (REPO / "library" / f"{module}.py").read_text()
    documented = set(_module_doc(module)["doc"]["options"])
    tree = ast.parse(source)
    declared: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "argument_spec" \
                and isinstance(node.value, ast.Dict):
            declared |= {str(k.value) for k in node.value.keys if isinstance(k, ast.Constant)}
    if declared:  # modules that build their spec in a function are checked by ansible-doc only
        assert declared == documented, f"{module}: spec {declared} != docs {documented}"


def test_setup_rerun_is_quick_and_changes_nothing() -> None:
    stamp = REPO / ".venv" / ".tai-setup.json"
    before = stamp.stat().st_mtime_ns
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "setup.py")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "up to date" in proc.stdout
    assert stamp.stat().st_mtime_ns == before
