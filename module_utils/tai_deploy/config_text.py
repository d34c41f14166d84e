"""Bodies and configuration files built as data and serialised, never text with values pasted in.

Kubernetes objects are plain mappings (serialised by the bundle). Two files are configuration
text formats of their own: Vault's server configuration (HCL) and fluent-bit's classic
configuration. Both are written here from data, every value escaped (HCL) or refused when the
format cannot carry it (fluent-bit's classic format has no quoting: a newline would start a new
key, ``${`` would be expanded from the environment).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class ConfigTextError(ValueError):
    """A value the format cannot carry; the message is one sentence."""


# ---- Kubernetes Namespaces --------------------------------------------------------------------

PSS_EXCEPTION_ANNOTATION = "tai.example.com/pod-security-exception"


def namespace_manifests(definitions: Mapping[str, Mapping[str, Any]],
                        common_labels: Mapping[str, str],
                        pss_version: str) -> list[dict[str, Any]]:
    """One Namespace per definition (sorted by name), Pod Security labels from its level."""
    out: list[dict[str, Any]] = []
    for name, given in sorted(definitions.items()):
        ns = given or {}
        enforce = str(ns.get("enforce"))
        labels = {
            **{str(k): str(v) for k, v in common_labels.items()},
            "pod-security.kubernetes.io/enforce": enforce,
            "pod-security.kubernetes.io/enforce-version": str(pss_version),
            "pod-security.kubernetes.io/audit": "restricted",
            "pod-security.kubernetes.io/audit-version": str(pss_version),
            "pod-security.kubernetes.io/warn": "restricted",
            "pod-security.kubernetes.io/warn-version": str(pss_version),
            **{str(k): v for k, v in (ns.get("labels") or {}).items()},
        }
        metadata: dict[str, Any] = {"name": str(name), "labels": labels}
        annotations = dict(ns.get("annotations") or {})
        if enforce != "restricted":
            annotations[PSS_EXCEPTION_ANNOTATION] = str(ns.get("exception") or "").strip()
        if annotations:
            metadata["annotations"] = annotations
        out.append({"apiVersion": "v1", "kind": "Namespace", "metadata": metadata})
    return out


# ---- HCL (Vault's server configuration) -------------------------------------------------------

@dataclass(frozen=True)
class Block:
    """An HCL block: ``type "label" ... { body }``."""

    type: str
    labels: Sequence[str] = ()
    body: Sequence[Attribute | Block | Comment] = ()


@dataclass(frozen=True)
class Attribute:
    name: str
    value: str | int | bool


@dataclass(frozen=True)
class Comment:
    text: str


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def hcl_string(value: str) -> str:
    """A quoted string literal of HCL 1 (the dialect Vault's configuration is parsed with):
    backslash, quote and control characters escaped as in JSON. HCL 1 does not interpolate
    ``${`` in a configuration file, so it stays as written."""
    return json.dumps(value, ensure_ascii=True)


def _hcl_value(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return hcl_string(value)


def render_hcl(body: Sequence[Attribute | Block | Comment], indent: int = 0) -> str:
    pad = "  " * indent
    lines: list[str] = []
    width = max((len(i.name) for i in body if isinstance(i, Attribute)), default=0)
    for item in body:
        if isinstance(item, Comment):
            lines += [f"{pad}# {line}".rstrip() for line in item.text.splitlines()]
        elif isinstance(item, Attribute):
            if not _IDENT.match(item.name):
                raise ConfigTextError(f"{item.name!r} is not an HCL attribute name.")
            lines.append(f"{pad}{item.name.ljust(width)} = {_hcl_value(item.value)}")
        else:
            if not _IDENT.match(item.type):
                raise ConfigTextError(f"{item.type!r} is not an HCL block type.")
            head = " ".join([item.type, *(hcl_string(label) for label in item.labels)])
            if not item.body:
                lines.append(f"{pad}{head} {{}}")
            else:
                lines += [f"{pad}{head} {{", render_hcl(item.body, indent + 1).rstrip("\n"),
                          f"{pad}}}"]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class VaultServer:
    """What the server configuration depends on."""

    release: str
    replicas: int
    tls_secret: str
    seal_type: str = "shamir"
    gcpckms: Mapping[str, str] = field(default_factory=dict)


def vault_server_hcl(v: VaultServer) -> str:
    """Vault's server configuration (listener, raft with one retry_join per pod, seal)."""
    certs = f"/vault/userconfig/{v.tls_secret}"
    joins: list[Attribute | Block | Comment] = [Attribute("path", "/vault/data")]
    joins += [Block("retry_join", body=[
        Attribute("leader_api_addr", f"https://{v.release}-{i}.{v.release}-internal:8200"),
        Attribute("leader_ca_cert_file", f"{certs}/ca.crt"),
    ]) for i in range(v.replicas)]
    body: list[Attribute | Block | Comment] = [
        Comment("Vault server configuration (rendered by the tai-deploy vault role)."),
        Attribute("ui", True),
        Comment("Integrated storage keeps its data in memory-mapped files; mlock would pin all "
                "of it."),
        Attribute("disable_mlock", True),
        Block("listener", ["tcp"], [
            Attribute("address", "[::]:8200"),
            Attribute("cluster_address", "[::]:8201"),
            Attribute("tls_cert_file", f"{certs}/tls.crt"),
            Attribute("tls_key_file", f"{certs}/tls.key"),
            Attribute("tls_min_version", "tls12"),
            Block("telemetry", body=[
                Comment("Prometheus scrapes /v1/sys/metrics without a token."),
                Attribute("unauthenticated_metrics_access", True),
            ]),
        ]),
        Block("storage", ["raft"], joins),
        Comment("Labels each pod vault-active, vault-sealed and vault-initialized; the "
                "vault-active Service\nselects the active server by that label."),
        Block("service_registration", ["kubernetes"]),
        Block("telemetry", body=[Attribute("prometheus_retention_time", "30s"),
                                 Attribute("disable_hostname", True)]),
    ]
    if v.seal_type == "gcpckms":
        body += [
            Comment("Auto-unseal through Cloud KMS; credentials come from workload identity."),
            Block("seal", ["gcpckms"], [Attribute(k, str(v.gcpckms.get(k, "")))
                                        for k in ("project", "region", "key_ring",
                                                  "crypto_key")]),
        ]
    return render_hcl(body)


# ---- fluent-bit classic configuration ---------------------------------------------------------

_FB_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")


def fluent_bit_value(where: str, value: Any) -> str:
    """A value of fluent-bit's classic format, which has no quoting: refused when it would
    change the file's structure (newline, control character) or be expanded (``${``)."""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if not text.strip() or re.search(r"[\x00-\x1f\x7f]", text) or "${" in text:
        raise ConfigTextError(
            f"{where} is {text!r}, which fluent-bit's configuration cannot hold (it must be one "
            "non-empty line without control characters or ${).")
    return text.strip()


def fluent_bit_section(name: str, entries: Sequence[tuple[str, Any]],
                       literal: Sequence[str] = ()) -> str:
    """``[NAME]`` and one ``Key value`` line per entry; ``literal`` keys keep ``${VAR}``
    (environment references the role writes itself, such as the Elasticsearch password)."""
    lines = [f"[{name}]"]
    for key, value in entries:
        if not _FB_KEY.match(key):
            raise ConfigTextError(f"{key!r} is not a fluent-bit configuration key.")
        text = str(value) if key in literal else fluent_bit_value(f"{name} {key}", value)
        lines.append(f"    {key} {text}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class FluentBit:
    """What the fluent-bit configuration depends on."""

    excluded_namespaces: Sequence[str]
    mem_buf_limit: str
    cluster_name: str
    location: str
    elasticsearch: bool = False
    elasticsearch_host: str = ""
    elasticsearch_index_prefix: str = ""


def fluent_bit_config(f: FluentBit) -> dict[str, str]:
    """The chart's config.service/inputs/filters/outputs keys."""
    service = fluent_bit_section("SERVICE", [
        ("Daemon", "Off"), ("Flush", 5), ("Log_Level", "info"),
        ("Parsers_File", "/fluent-bit/etc/parsers.conf"), ("HTTP_Server", "On"),
        ("HTTP_Listen", "0.0.0.0"), ("HTTP_Port", 2020), ("Health_Check", "On"),
        ("storage.path", "/var/fluent-bit/state/flb-storage/"), ("storage.sync", "normal"),
        ("storage.checksum", "off"), ("storage.backlog.mem_limit", "5M")])
    tail: list[tuple[str, Any]] = [("Name", "tail"), ("Tag", "kube.*"),
                                   ("Path", "/var/log/containers/*.log")]
    if f.excluded_namespaces:
        for ns in f.excluded_namespaces:
            fluent_bit_value("logging_fluent_bit_excluded_namespaces", ns)
        tail.append(("Exclude_Path", ",".join(f"/var/log/containers/*_{ns}_*.log"
                                              for ns in f.excluded_namespaces)))
    tail += [("multiline.parser", "cri, docker"), ("DB", "/var/fluent-bit/state/flb_kube.db"),
             ("Mem_Buf_Limit", f.mem_buf_limit), ("Skip_Long_Lines", "On"),
             ("Refresh_Interval", 10), ("storage.type", "filesystem")]
    filters = fluent_bit_section("FILTER", [
        ("Name", "kubernetes"), ("Match", "kube.*"),
        ("Kube_Tag_Prefix", "kube.var.log.containers."), ("Merge_Log", "On"),
        ("Keep_Log", "Off"), ("K8S-Logging.Parser", "On"), ("K8S-Logging.Exclude", "On"),
        ("Labels", "On"), ("Annotations", "Off")])
    outputs = fluent_bit_section("OUTPUT", [
        ("Name", "stackdriver"), ("Match", "kube.*"), ("resource", "k8s_container"),
        ("k8s_cluster_name", f.cluster_name), ("k8s_cluster_location", f.location),
        ("tag_prefix", "kube.var.log.containers."), ("Retry_Limit", "False"),
        ("storage.total_limit_size", "1G")])
    if f.elasticsearch:
        outputs += fluent_bit_section("OUTPUT", [
            ("Name", "es"), ("Match", "kube.*"), ("Host", f.elasticsearch_host),
            ("Port", 9200), ("HTTP_User", "${ES_USERNAME}"), ("HTTP_Passwd", "${ES_PASSWORD}"),
            ("tls", "On"), ("tls.verify", "On"), ("tls.ca_file", "/fluent-bit/es-certs/ca.crt"),
            ("Logstash_Format", "On"), ("Logstash_Prefix", f.elasticsearch_index_prefix),
            ("Suppress_Type_Name", "On"), ("Replace_Dots", "On"), ("Trace_Error", "On"),
            ("Retry_Limit", "False"), ("storage.total_limit_size", "1G")],
            literal=("HTTP_User", "HTTP_Passwd"))
    return {"service": service, "inputs": fluent_bit_section("INPUT", tail), "filters": filters,
            "outputs": outputs}
