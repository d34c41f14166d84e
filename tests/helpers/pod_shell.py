"""An exec handler for the Kubernetes API double that runs a pod's command with the LOCAL shell.

There is no container here: a "pod" is a folder (``root``) holding one symbolic link per
volume mount (``/data`` -> a Redis node's folder, ``/scripts`` -> the chart's scripts, ...).
Before the command runs, every absolute path under a mount point in its arguments (also inside
``sh -c`` strings and ``NAME=/path`` assignments) and in the container's environment (``env``),
and the ``-C /`` of tar, are rewritten into
that folder, so that what kubernetes.core's k8s_exec and k8s_cp send (``cat /vault/...``,
``test -e /data/x``, ``sh -c 'head -c N | tar -xmf - -C /'``) reads and writes the folders the
test gave. stdin is streamed to the process as it arrives; the process's own exit code is the
exit code the double reports. ``after`` runs once the command has ended (e.g. the restart the
kubelet does when the container's main process stopped).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from helpers.k8s_double.pod_exec import ExecCall, ExecResult


@dataclass
class PodShell:
    root: Path
    mounts: Mapping[str, Path]
    env: Mapping[str, str] = field(default_factory=dict)
    after: Callable[[ExecCall, int], None] | None = None
    timeout: float = 120.0

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for mount, target in self.mounts.items():
            link = self.root / mount.strip("/")
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                link.symlink_to(target)
        names = "|".join(re.escape(m.rstrip("/")) for m in sorted(self.mounts, key=len,
                                                                   reverse=True))
        self._paths = re.compile(rf"(?<![\w.\-/])({names})(?=/|$|[\s'\";|&)])")
        self._tar_root = re.compile(r"(-C\s+)/(?=$|[\s'\";|&)])")

    def local(self, arg: str) -> str:
        """One argument with the pod's paths made paths under ``root``."""
        arg = self._paths.sub(lambda m: f"{self.root}{m.group(1)}", arg)
        return self._tar_root.sub(lambda m: f"{m.group(1)}{self.root}/", arg)

    def __call__(self, call: ExecCall) -> ExecResult:
        argv = [self.local(a) for a in call.command]
        for i in range(1, len(argv)):  # tar ... -C / as separate arguments
            if argv[i - 1] == "-C" and argv[i] == "/":
                argv[i] = str(self.root)
        env = {**os.environ, **{k: self.local(v) for k, v in self.env.items()}}
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=env, cwd=self.root)
        except FileNotFoundError as exc:
            # what a runtime reports for a missing executable: exit code 126/127 territory
            return ExecResult(stderr=f"exec: {exc.filename}: not found\n".encode(), exit_code=127)
        pump = threading.Thread(target=self._pump, args=(call, proc), daemon=True)
        pump.start()
        out, err = self._collect(proc)
        code = proc.returncode
        if self.after is not None:
            self.after(call, code)
        return ExecResult(out, err, code)

    def _collect(self, proc: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
        chunks: dict[str, bytes] = {"out": b"", "err": b""}

        def read(name: str, stream: object) -> None:
            chunks[name] = stream.read()  # type: ignore[attr-defined]

        readers = [threading.Thread(target=read, args=(n, s), daemon=True)
                   for n, s in (("out", proc.stdout), ("err", proc.stderr))]
        for reader in readers:
            reader.start()
        proc.wait(timeout=self.timeout)
        for reader in readers:
            reader.join(timeout=self.timeout)
        return chunks["out"], chunks["err"]

    @staticmethod
    def _pump(call: ExecCall, proc: subprocess.Popen[bytes]) -> None:
        """Feed the call's stdin to the process until EOF or until the process ends."""
        assert proc.stdin is not None
        try:
            while proc.poll() is None:
                chunk = call.stdin.read1(timeout=0.05)
                if chunk is None:
                    continue
                if not chunk:
                    break
                proc.stdin.write(chunk)
                proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass
        finally:
            with contextlib.suppress(OSError):
                proc.stdin.close()
