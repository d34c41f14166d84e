"""Initialise, unseal and configure a Vault cluster: the flows behind the vault_* modules.

A node is addressed either by URL (``https://vault.example:8200``, used by tests and by an
internal load balancer) or by a Kubernetes target (``pod/vault-0``, ``svc/vault-active``), which
is reached through a ``kubectl port-forward`` opened for the duration of one call and closed
afterwards.

Order of operations, chosen so that nothing is lost or left half-done:

* init: the shards and root token are encrypted and written to disk (atomically) BEFORE
  anything else is done with them; a run that dies right after ``sys/init`` loses nothing.
* unseal: the stored shards are checked by the server itself; a refused shard resets the
  node's unseal progress and stops the run before any configuration is touched.
* configure: the root token (the initial one, or one generated from the shards) is exchanged at
  once for an orphan token that expires after ``token_ttl`` and the root token is revoked; the
  short-lived token is revoked at the end. A run that dies half-way leaves at most a token that
  expires by itself.
"""

from __future__ import annotations

import contextlib
import queue
import re
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .vault_api import (
    Change,
    Configuration,
    VaultClient,
    VaultError,
    apply_configuration,
    create_orphan_token,
    generate_root,
    initialize,
    revoke_self,
    seal_status,
    submit_unseal_keys,
    token_is_valid,
    wait_for,
    wait_serving,
    wait_unsealed,
)
from .vault_secrets import (
    Cipher,
    InitMaterial,
    MaterialError,
    ensure_writable,
    load_material,
    save_material,
)

SecretSink = Callable[[Sequence[str]], None]


def _ignore(_: Sequence[str]) -> None:
    return None


@dataclass(frozen=True)
class PortForward:
    """How to reach in-cluster nodes: ``kubectl port-forward`` to a random local port."""

    kubectl: str
    namespace: str
    context: str | None = None
    remote_port: int = 8200
    scheme: str = "https"
    timeout: float = 30.0


_FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+) ->")


@contextlib.contextmanager
def port_forward(spec: PortForward, target: str) -> Iterator[int]:
    """Run ``kubectl port-forward <target> :<remote_port>``; yield the local port; stop it."""
    cmd = [spec.kubectl]
    if spec.context:
        cmd += ["--context", spec.context]
    cmd += ["--namespace", spec.namespace, "port-forward", target, f":{spec.remote_port}",
            "--address", "127.0.0.1"]
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
    except OSError as exc:
        raise VaultError(f"cannot run {spec.kubectl}: {exc.strerror}") from None
    lines: queue.Queue[str | None] = queue.Queue()
    errors: list[str] = []

    def pump_stdout() -> None:  # kubectl logs every connection; keep the pipe drained
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    def pump_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.strip():
                errors.append(line.strip())

    threading.Thread(target=pump_stdout, daemon=True).start()
    threading.Thread(target=pump_stderr, daemon=True).start()
    try:
        port = _await_port(lines, spec.timeout)
        if port is None:
            proc.poll()
            why = errors[-1] if errors else (
                f"exit status {proc.returncode}" if proc.returncode is not None
                else f"no forwarding within {spec.timeout:g} s")
            raise VaultError(f"kubectl port-forward to {target} in namespace {spec.namespace} "
                             f"failed: {why}")
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _await_port(lines: queue.Queue[str | None], timeout: float) -> int | None:
    found: list[int] = []

    def got_port() -> bool:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            return False
        if line is None:
            raise _Ended
        match = _FORWARDING.search(line)
        if match:
            found.append(int(match.group(1)))
        return bool(found)

    try:
        wait_for(got_port, timeout, interval=0)
    except _Ended:
        return None
    return found[0] if found else None


class _Ended(Exception):
    pass


@dataclass(frozen=True)
class Connector:
    """Turns node names into clients: URLs directly, Kubernetes targets through port-forward."""

    ca_cert: str | None = None
    timeout: float = 10.0
    forward: PortForward | None = None

    @contextlib.contextmanager
    def connect(self, node: str) -> Iterator[VaultClient]:
        if node.startswith(("http://", "https://")):
            yield VaultClient(node, ca_cert=self.ca_cert, timeout=self.timeout)
            return
        if not re.match(r"^(pod|svc|service|statefulset|deployment)/[a-z0-9]([-a-z0-9.]*)$",
                        node):
            raise VaultError(f"node {node!r} is neither an http(s):// URL nor a Kubernetes "
                             "target such as pod/vault-0")
        if self.forward is None:
            raise VaultError(f"node {node} is a Kubernetes target but no port_forward settings "
                             "were given")
        with port_forward(self.forward, node) as port:
            yield VaultClient(f"{self.forward.scheme}://127.0.0.1:{port}", ca_cert=self.ca_cert,
                              timeout=self.timeout)


# --- init and unseal ------------------------------------------------------------------------

@dataclass
class NodeResult:
    node: str
    before: str
    action: str

    def as_dict(self) -> dict[str, str]:
        return {"node": self.node, "before": self.before, "action": self.action}


@dataclass
class InitUnsealResult:
    initialized_now: bool = False
    key_type: str = ""
    seal_type: str = ""
    nodes: list[NodeResult] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.initialized_now or any(n.action != "none" for n in self.nodes)


def _state(initialized: bool, sealed: bool) -> str:
    if not initialized:
        return "uninitialised"
    return "sealed" if sealed else "unsealed"


def init_and_unseal(nodes: Sequence[str], *, init_file: str | Path, cipher: Cipher,
                    connector: Connector, shares: int = 5, threshold: int = 3,
                    check: bool = False, join_timeout: float = 120.0,
                    unseal_timeout: float = 60.0, on_secret: SecretSink = _ignore
                    ) -> InitUnsealResult:
    """Initialise the first node once, then unseal every sealed node, in order.

    Refuses (one sentence, nothing changed) when the first node is initialised but the material
    file is missing, or when the node is NOT initialised but a material file exists (the storage
    was wiped, or the file belongs to another cluster: a human decides).
    """
    if not nodes:
        raise VaultError("no Vault nodes were given")
    result = InitUnsealResult()
    material = load_material(init_file, cipher)
    if material is not None:
        on_secret(material.secrets())
    first = nodes[0]
    with connector.connect(first) as client:
        status = seal_status(client)
        result.seal_type = status.seal_type
        if not status.initialized:
            if material is not None:
                raise MaterialError(
                    f"Vault at {first} is not initialised but {init_file} already holds init "
                    "material; refusing to initialise again (restore the Vault storage, or move "
                    "the file away deliberately if the old cluster is gone for good)")
            if check:
                result.key_type = status.key_type
                result.nodes.append(NodeResult(first, "uninitialised", "initialise"))
                result.initialized_now = True
                for node in nodes[1:]:
                    result.nodes.append(NodeResult(node, "unknown", "unseal"))
                return result
            # The shards exist only in memory between sys/init and the write: prove the write
            # can succeed first, or a full disk or a read-only folder would lose them for good.
            ensure_writable(init_file)
            keys, root = initialize(client, shares, threshold, recovery=status.recovery_seal)
            on_secret([*keys, root])
            material = InitMaterial.new(status.key_type, shares, threshold, keys, root)
            on_secret(material.secrets())
            save_material(init_file, material, cipher)
            result.initialized_now = True
        elif material is None:
            raise MaterialError(
                f"Vault at {first} is initialised but the init material file {init_file} does "
                "not exist; restore it from its backup (the role never initialises twice)")
        if material.key_type != status.key_type:
            raise MaterialError(
                f"{init_file} holds {material.key_type} shards but Vault at {first} uses a "
                f"{status.seal_type} seal that needs {status.key_type} shards; wrong file?")
    result.key_type = material.key_type
    for node in nodes:
        result.nodes.append(_unseal_node(node, material, connector, check=check,
                                         first=node == first and result.initialized_now,
                                         join_timeout=join_timeout,
                                         unseal_timeout=unseal_timeout))
    return result


def _unseal_node(node: str, material: InitMaterial, connector: Connector, *, check: bool,
                 first: bool, join_timeout: float, unseal_timeout: float) -> NodeResult:
    with connector.connect(node) as client:
        status = seal_status(client)
        before = "uninitialised" if first else _state(status.initialized, status.sealed)
        if not status.initialized and not check:
            # A raft follower reports itself uninitialised until retry_join has reached the
            # leader; once it has, it is initialised and sealed.
            joined: list[bool] = []

            def has_joined() -> bool:
                joined[:] = [seal_status(client).initialized]
                return joined[0]

            if not wait_for(has_joined, join_timeout, interval=0.5):
                raise VaultError(f"Vault node {node} did not join the raft cluster within "
                                 f"{join_timeout:g} s (check its retry_join settings)")
            status = seal_status(client)
        if not status.sealed:
            return NodeResult(node, before, "initialised" if first else "none")
        if material.key_type == "recovery":
            # Auto-unseal: the node unseals itself through the KMS; wait for it.
            if check:
                return NodeResult(node, before, "wait for auto-unseal")
            try:
                wait_unsealed(client, unseal_timeout)
            except VaultError:
                raise VaultError(
                    f"Vault node {node} uses auto-unseal but is still sealed after "
                    f"{unseal_timeout:g} s; check the KMS key and the permissions of the "
                    "server's service account") from None
            return NodeResult(node, before, "initialised" if first else "auto-unsealed")
        if check:
            return NodeResult(node, before, "unseal")
        action = "initialised and unsealed" if first else "unsealed"
        try:
            status = submit_unseal_keys(client, material.keys, material.threshold)
        except VaultError:
            if material.pending is None:
                raise
            # A rotation (vault_rekey) that stopped after Vault verified the new shards but
            # before the file promoted them: the pending shards are the ones that unseal now.
            # Rerunning the rotation promotes them in the file.
            try:
                status = submit_unseal_keys(client, material.pending.keys,
                                            material.pending.threshold)
            except VaultError:
                raise VaultError(
                    f"neither the current nor the pending shards of the init material file "
                    f"unseal Vault at {client.addr}; its unseal progress was reset and nothing "
                    "else was changed") from None
            action = "unsealed with the pending shards of an interrupted rotation"
        if status.sealed:
            wait_unsealed(client, unseal_timeout)
        return NodeResult(node, before, action)


# --- configure ------------------------------------------------------------------------------

@dataclass
class ConfigureResult:
    changes: list[Change] = field(default_factory=list)
    token_source: str = ""
    root_token_revoked: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.root_token_revoked or any(c.changed for c in self.changes)

    def summary(self) -> dict[str, int]:
        out = {"created": 0, "updated": 0, "unchanged": 0}
        for change in self.changes:
            out[change.action] += 1
        return out


DISPLAY_NAME = "tai-deploy-vault-role"


def configure(node: str, config: Configuration, *, init_file: str | Path, cipher: Cipher,
              connector: Connector, token_ttl: str = "15m", check: bool = False,
              serve_timeout: float = 60.0, on_secret: SecretSink = _ignore) -> ConfigureResult:
    """Bring Vault's auth methods, mounts, policies and config objects to the desired state."""
    result = ConfigureResult()
    material = load_material(init_file, cipher)
    if material is None:
        raise MaterialError(f"the init material file {init_file} does not exist; the role "
                            "needs its shards to obtain a token")
    on_secret(material.secrets())
    with connector.connect(node) as client:
        wait_serving(client, serve_timeout)
        token = _session_token(client, material, result, init_file=init_file, cipher=cipher,
                               token_ttl=token_ttl, check=check, on_secret=on_secret)
        session = client.with_token(token)
        try:
            result.changes = apply_configuration(session, config, check=check)
        finally:
            if token != material.root_token:
                try:
                    revoke_self(session)
                except VaultError:
                    result.warnings.append(
                        f"could not revoke the role's short-lived token; it expires by itself "
                        f"after {token_ttl}")
    return result


def _session_token(client: VaultClient, material: InitMaterial, result: ConfigureResult, *,
                   init_file: str | Path, cipher: Cipher, token_ttl: str, check: bool,
                   on_secret: SecretSink) -> str:
    """A token for this run. Check mode needs one too (to compare the configuration): like a
    login, it mints a short-lived token and revokes it, and changes nothing else."""
    root: str | None = None
    if material.root_token:
        if token_is_valid(client.with_token(material.root_token)):
            root = material.root_token
            result.token_source = "initial root token"
        elif not check:
            # Someone revoked it already: forget it.
            save_material(init_file, material.without_root_token(), cipher)
            result.warnings.append("the stored initial root token was already revoked; it was "
                                   "removed from the init material file")
    if root is not None and check:
        # Check mode changes nothing persistent: read with the initial token, revoke nothing,
        # but say that a real run would revoke it.
        result.root_token_revoked = True
        return root
    if root is None:
        root = generate_root(client, material.keys, material.threshold)
        on_secret([root])
        result.token_source = "generate-root"
    root_client = client.with_token(root)
    try:
        token = create_orphan_token(root_client, policies=["root"], ttl=token_ttl,
                                    display_name=DISPLAY_NAME)
        on_secret([token])
    finally:
        revoke_self(root_client)
    if root == material.root_token:
        save_material(init_file, material.without_root_token(), cipher)
        result.root_token_revoked = True
    return token


def material_summary(material: InitMaterial | None) -> dict[str, Any]:
    """Public facts about the material (never the shards or the token)."""
    if material is None:
        return {}
    return {"key_type": material.key_type, "shares": material.shares,
            "threshold": material.threshold, "root_token_stored": bool(material.root_token),
            "initialized_at": material.initialized_at}
