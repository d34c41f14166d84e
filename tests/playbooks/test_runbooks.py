"""Every command of the runbooks exists and runs, so that a runbook cannot rot silently.

`ansible-playbook` commands: the playbook, the limit and every extra variable must exist, the
command passes `--syntax-check`, and where plan mode needs no cluster it is run in plan mode
(with `-e tai_apply=true` removed). kubectl and helm commands must name real subcommands, and
the gRPC health commands must parse.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers.ansible_run import REPO, PlaybookRun, run_playbook
from tai_deploy import grpc_health

RUNBOOKS = sorted((REPO / "docs" / "runbooks").glob("*.md"))
BIN = Path(sys.executable).parent
# Playbooks whose plan mode reads no cluster and no cloud API, so the test can run it.
PLANNABLE = {"site.yml", "playbooks/drain-region.yml", "playbooks/redis-cluster-repair.yml",
             "playbooks/vault-rotate-shards.yml", "playbooks/vault-restore.yml",
             "playbooks/redis-restore.yml"}
TOOLS = {"ansible-playbook", "ansible-vault", "kubectl", "helm", "scripts/grpc-health", "bao",
         "gpg", "base64"}


def commands(path: Path) -> list[str]:
    """Shell commands of the ```bash blocks, continuation lines joined, comments dropped."""
    out: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", path.read_text(), flags=re.S):
        for raw in block.replace("\\\n", " ").splitlines():
            line = raw.strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


ALL = [(p.name, c) for p in RUNBOOKS for c in commands(p)]
PLAYBOOK_COMMANDS = sorted({c for _, c in ALL if c.startswith("ansible-playbook ")})


def _inventory_names() -> set[str]:
    names: set[str] = set()

    def walk(group: dict[str, Any]) -> None:
        for host in group.get("hosts") or {}:
            names.add(str(host))
        for child, body in (group.get("children") or {}).items():
            names.add(str(child))
            walk(body or {})

    walk(yaml.safe_load((REPO / "inventories/production/hosts.yml").read_text())["all"])
    return names


def _repository_text() -> str:
    parts = []
    for pattern in ("playbooks/*.yml", "roles/**/*.yml", "roles/**/*.j2", "group_vars/**/*.yml",
                    "inventories/**/*.yml"):
        parts += [p.read_text() for p in REPO.glob(pattern)]
    return "\n".join(parts)


def _without_vars_files(argv: list[str]) -> list[str]:
    """argv without `-e @file`: a file of secrets (shards, a token) the runbook has the
    operator write, which a test cannot have; the variables it names are checked apart."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        if arg.startswith("@") and i and argv[i - 1] in ("-e", "--extra-vars"):
            out.pop()
            continue
        out.append(arg)
    return out


VARS_FILE_NAMES = {"vault_unseal_keys", "vault_rotate_current_keys", "vault_rotate_new_keys",
                   "vault_break_glass_token"}


def test_variables_the_runbooks_put_in_vars_files_exist() -> None:
    text = _repository_text()
    pages = "\n".join(p.read_text() for p in RUNBOOKS)
    for name in VARS_FILE_NAMES:
        assert name in pages
        assert re.search(rf"\b{name}\b", text), f"no playbook or role uses {name}"


def _extra_vars(argv: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for flag, value in itertools.pairwise(argv):
        if flag not in ("-e", "--extra-vars"):
            continue
        if value.lstrip().startswith("{"):
            out.update(json.loads(value))
        else:
            key, _, val = value.partition("=")
            out[key] = val
    return out


def test_every_runbook_has_the_five_parts() -> None:
    assert len(RUNBOOKS) >= 9
    for path in RUNBOOKS:
        if path.name == "README.md":
            continue
        text = path.read_text()
        for part in ("## Symptoms", "## Checks", "## Actions", "## Verification", "## Backing out"):
            assert part in text, f"{path.name} lacks {part}"
        assert commands(path), f"{path.name} has no command"


@pytest.mark.parametrize(("page", "command"), ALL, ids=[f"{p}:{c[:60]}" for p, c in ALL])
def test_command_names_a_known_tool(page: str, command: str) -> None:
    tool = shlex.split(command)[0]
    assert tool in TOOLS, f"{page}: {tool} is not a tool this project installs"


@pytest.mark.parametrize("command", PLAYBOOK_COMMANDS)
def test_playbook_limit_and_variables_exist(command: str) -> None:
    argv = _without_vars_files(shlex.split(command))
    playbooks = [a for a in argv[1:] if a.endswith(".yml") and not a.startswith("-")]
    assert len(playbooks) == 1, command
    assert (REPO / playbooks[0]).is_file(), f"{playbooks[0]} does not exist"
    if "-l" in argv:
        limit = argv[argv.index("-l") + 1]
        unknown = set(re.split(r"[,:&!]+", limit)) - _inventory_names() - {""}
        assert not unknown, f"-l names what the inventory does not have: {unknown}"
    text = _repository_text()
    for name in _extra_vars(argv):
        assert re.search(rf"\b{re.escape(name)}\b", text), f"no playbook or role uses {name}"


@dataclass
class Planned:
    env: dict[str, str]
    site: PlaybookRun  # `site.yml`, the plan of every region (a runbook command itself)


@pytest.fixture(scope="module")
def build_root(tmp_path_factory: pytest.TempPathFactory) -> Planned:
    root = tmp_path_factory.mktemp("runbooks") / "build"
    env = {"TAI_BUILD_ROOT": str(root)}
    # redis-cluster-repair.yml runs the Job of an existing plan: plan every region first.
    site = run_playbook("site.yml", env=env)
    assert site.returncode == 0, site.output[-3000:]
    return Planned(env, site)


@pytest.mark.playbook
@pytest.mark.parametrize("command", PLAYBOOK_COMMANDS)
def test_playbook_command_passes_syntax_check(command: str) -> None:
    argv = _without_vars_files(shlex.split(command))[1:]
    run = run_playbook(*argv, "--syntax-check")
    assert run.returncode == 0, run.output[-2000:]


def _plan_variant(command: str) -> list[str] | None:
    argv = _without_vars_files(shlex.split(command))[1:]
    playbook = next(a for a in argv if a.endswith(".yml"))
    if playbook not in PLANNABLE:
        return None
    out: list[str] = []
    skip = False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg in ("-e", "--extra-vars") and argv[i + 1] == "tai_apply=true":
            skip = True
            continue
        out.append(arg)
    return out


PLAN_COMMANDS = sorted({" ".join(shlex.quote(a) for a in v)
                        for c in PLAYBOOK_COMMANDS if (v := _plan_variant(c)) is not None})


@pytest.mark.playbook
@pytest.mark.parametrize("command", PLAN_COMMANDS)
def test_playbook_command_runs_in_plan_mode(command: str, build_root: Planned) -> None:
    # `site.yml` is the run that planned every region for the fixture: that run is checked.
    run = (build_root.site if command == "site.yml"
           else run_playbook(*shlex.split(command), env=build_root.env))
    assert run.returncode == 0, run.output[-3000:]
    assert "Traceback" not in run.output


def test_plan_mode_covers_the_plannable_playbooks() -> None:
    planned = {next(a for a in shlex.split(c) if a.endswith(".yml")) for c in PLAN_COMMANDS}
    used = {next(a for a in _without_vars_files(shlex.split(c)) if a.endswith(".yml"))
            for c in PLAYBOOK_COMMANDS}
    assert planned == PLANNABLE & used


@pytest.mark.parametrize("command", sorted({c for _, c in ALL
                                            if c.split()[0] in ("kubectl", "helm")}))
def test_kubectl_and_helm_subcommands_exist(command: str) -> None:
    argv = shlex.split(command)
    proc = subprocess.run([str(BIN / argv[0]), argv[1], "--help"], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, f"{argv[0]} {argv[1]}: {proc.stderr[-500:]}"


@pytest.mark.parametrize("command", sorted({c for _, c in ALL
                                            if c.startswith("scripts/grpc-health")}))
def test_grpc_health_commands_parse(command: str) -> None:
    # Parsed only: the addresses are production load balancers, never contacted from tests.
    args = grpc_health._parser().parse_args(shlex.split(command)[1:])
    assert args.addr


def _flags(command: str) -> list[str]:
    return sorted({a.split("=", 1)[0] for a in shlex.split(command) if a.startswith("-")})


@pytest.mark.parametrize("command", sorted({c for _, c in ALL if c.split()[0] == "bao"}))
def test_bao_subcommands_and_flags_exist(command: str) -> None:
    argv = shlex.split(command)
    words = [a for a in argv[1:] if not a.startswith("-")][:2]
    proc = subprocess.run([str(BIN / "bao"), *words, "-h"], capture_output=True, text=True,
                          check=False)
    text = proc.stdout + proc.stderr
    assert f"Usage: bao {' '.join(words)}" in text, text[:300]
    for flag in _flags(command):
        assert re.search(rf"^\s+{re.escape(flag)}\b", text, re.M), f"bao {words}: no {flag}"


@pytest.mark.parametrize("command", sorted({c for _, c in ALL
                                            if c.split()[0] in ("gpg", "base64",
                                                                "ansible-vault")}))
def test_gpg_base64_and_ansible_vault_options_exist(command: str) -> None:
    argv = shlex.split(command)
    tool = str(BIN / argv[0]) if argv[0] == "ansible-vault" else argv[0]
    if argv[0] == "ansible-vault":
        proc = subprocess.run([tool, argv[1], "--help"], capture_output=True, text=True,
                              check=False)
        assert proc.returncode == 0, proc.stderr[-300:]
        return
    help_args = ["--dump-options"] if argv[0] == "gpg" else ["--help"]
    text = subprocess.run([tool, *help_args], capture_output=True, text=True,
                          check=True).stdout
    for flag in _flags(command):
        assert flag in text, f"{argv[0]} has no option {flag}"
