"""Run ansible-playbook / ansible-doc of this repository the way an SRE does."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@dataclass
class PlaybookRun:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def recap(self, host: str) -> dict[str, int]:
        """Counters of one host from the PLAY RECAP line."""
        for line in self.stdout.splitlines():
            if line.startswith(host + " ") and "ok=" in line:
                return {k: int(v) for k, v in (p.split("=") for p in line.split()[2:])}
        raise AssertionError(f"no recap line for {host} in:\n{self.output[-3000:]}")


def ansible_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env["ANSIBLE_NOCOLOR"] = "1"
    env.pop("ANSIBLE_STDOUT_CALLBACK", None)
    if extra:
        env.update(extra)
    return env


def run_playbook(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None,
                 timeout: float = 600) -> PlaybookRun:
    """ansible-playbook with the repository's ansible.cfg; args as on the command line."""
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), *args], cwd=cwd, env=ansible_env(env),
        capture_output=True, text=True, timeout=timeout, check=False,
    )
    return PlaybookRun(proc.returncode, proc.stdout, proc.stderr)


def tree_digest(root: Path) -> str:
    """One hash over every path and byte under root (empty string for a missing root)."""
    if not root.exists():
        return ""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()
