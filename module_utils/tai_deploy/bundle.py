"""Write a role's rendered artifacts to build/<region>/<role>/ in one call.

A bundle is a set of files (path relative to the bundle folder -> text). Planning compares it
with what is on disk; writing applies exactly that plan, each file atomically. Files in the
folder that the bundle no longer contains are removed (``prune``), so build/ always shows the
current desired state and nothing stale. Serialisation is deterministic (sorted keys, fixed
indentation), so an unchanged desired state rewrites nothing and a second run reports no change.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from .files import atomic_write
from .manifests import ValidationReport, load_documents, manifest_path, validate_objects
from .staging import PROJECT_PLAN

CREATED, UPDATED, UNCHANGED, REMOVED = "created", "updated", "unchanged", "removed"


class BundleError(ValueError):
    """Bad input to a bundle; the message is meant for the person running the play."""


class _Dumper(yaml.SafeDumper):
    """YAML that a reviewer can read: block style, multi-line strings as literals."""


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str_presenter)


def to_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=True, default_flow_style=False,
                     allow_unicode=True, width=120)


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def serialise(path: str, data: Any) -> str:
    """Text for a file from structured data, chosen by the file's extension."""
    if isinstance(data, str):
        return data if data.endswith("\n") or not data else data + "\n"
    suffix = PurePosixPath(path).suffix
    if suffix == ".json":
        return to_json(data)
    if suffix in {".yaml", ".yml"}:
        if isinstance(data, list):
            return "".join("---\n" + to_yaml(d) for d in data)
        return "---\n" + to_yaml(data)
    raise BundleError(f"{path}: structured content needs a .json, .yaml or .yml name")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class FileChange:
    path: str
    state: str
    sha256: str
    before: str | None = None
    after: str | None = None


@dataclass
class BundlePlan:
    dest: Path
    changes: list[FileChange] = field(default_factory=list)
    validation: ValidationReport = field(default_factory=ValidationReport)

    @property
    def changed(self) -> bool:
        return any(c.state != UNCHANGED for c in self.changes)

    def summary(self) -> dict[str, int]:
        out = {CREATED: 0, UPDATED: 0, UNCHANGED: 0, REMOVED: 0}
        for c in self.changes:
            out[c.state] += 1
        return out


def _safe_relpath(path: str) -> str:
    p = PurePosixPath(path)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise BundleError(f"artifact path {path!r} must be relative and stay inside the bundle")
    return str(p)


_SEMVER = re.compile(r"^v?[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
_RELEASE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,51}[a-z0-9])?$")
RELEASE_KEYS = ("name", "namespace", "chart", "repository", "version")


def release_files(releases: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """releases/<name>.yaml (what to install, pinned) and values/<name>.yaml for each release.

    A version that is not an exact release (a range, ``latest``, empty) is refused: plan and
    apply must install the same chart, whenever they run.
    """
    out: dict[str, str] = {}
    for rel in releases:
        missing = [k for k in RELEASE_KEYS if not rel.get(k)]
        name = str(rel.get("name", "<unnamed>"))
        if missing:
            raise BundleError(f"release {name} lacks {', '.join(missing)}")
        if not _RELEASE_NAME.match(name):
            raise BundleError(f"release name {name!r} is not a valid Helm release name")
        version = str(rel["version"])
        if not _SEMVER.match(version):
            raise BundleError(f"release {name}: chart version {version!r} is not pinned to an "
                              "exact version such as 1.28.0")
        values = rel.get("values") or {}
        if not isinstance(values, Mapping):
            raise BundleError(f"release {name}: values must be a mapping")
        spec = {k: str(rel[k]) for k in RELEASE_KEYS}
        spec["values_file"] = f"values/{name}.yaml"
        for path, data in ((f"releases/{name}.yaml", spec), (f"values/{name}.yaml", values)):
            if path in out:
                raise BundleError(f"release {name} is listed twice")
            out[path] = serialise(path, dict(data))
    return out


def collect(
    files: Iterable[Mapping[str, Any]] = (),
    manifests: Iterable[Mapping[str, Any]] | str | None = None,
    manifests_dir: str = "manifests",
    releases: Iterable[Mapping[str, Any]] = (),
) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Turn the module's inputs into {relative path: text} plus the Kubernetes objects."""
    out: dict[str, str] = release_files(releases)
    for item in files:
        if "path" not in item:
            raise BundleError("every entry of files needs a path")
        path = _safe_relpath(str(item["path"]))
        if "content" in item and "data" in item:
            raise BundleError(f"{path}: give content or data, not both")
        data = item.get("content", item.get("data"))
        if data is None:
            raise BundleError(f"{path}: content or data is required")
        if path in out:
            raise BundleError(f"{path} is listed twice (or clashes with a release file)")
        if item.get("gcp_schema"):
            _check_gcp(path, item["gcp_schema"], data)
        out[path] = serialise(path, data)
    objects: list[dict[str, Any]] = []
    if isinstance(manifests, str):
        try:
            objects = load_documents(manifests)
        except (yaml.YAMLError, ValueError) as exc:
            raise BundleError(f"manifests are not valid YAML: {exc}") from exc
    elif manifests is not None:
        objects = [dict(m) for m in manifests if m]
    for obj in objects:
        path = _safe_relpath(f"{manifests_dir}/{manifest_path(obj)}")
        if path in out:
            raise BundleError(f"two manifests would both be written to {path}")
        out[path] = serialise(path, obj)
    return out, objects


def _check_gcp(path: str, declaration: Any, data: Any) -> None:
    """A GCP request body checked against Google's discovery schema before it is written."""
    from .gcp_schema import SchemaError, declared_problems

    try:
        found = declared_problems(declaration, data)
    except SchemaError as exc:
        raise BundleError(f"{path}: {exc}") from exc
    if found:
        shown = "; ".join(found[:10]) + (f"; and {len(found) - 10} more" if len(found) > 10
                                          else "")
        raise BundleError(f"{path} would be refused by the Google API ({len(found)} "
                          f"problem(s)); nothing was written: {shown}")


def _existing_files(dest: Path) -> set[str]:
    if not dest.is_dir():
        return set()
    return {str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()}


def plan(
    dest: str | Path,
    wanted: Mapping[str, str],
    *,
    objects: Iterable[Mapping[str, Any]] = (),
    kubernetes_version: str | None = None,
    prune: bool = True,
    keep: Iterable[str] = (),
) -> BundlePlan:
    """Compare the wanted files with the folder; validate manifests. Touches nothing."""
    dest_path = Path(dest)
    result = BundlePlan(dest=dest_path)
    objs = list(objects)
    if objs and kubernetes_version:
        result.validation = validate_objects(objs, kubernetes_version)
    existing = _existing_files(dest_path)
    for rel in sorted(wanted):
        text = wanted[rel]
        before = (dest_path / rel).read_text() if rel in existing else None
        if before is None:
            state = CREATED
        elif before == text:
            state = UNCHANGED
        else:
            state = UPDATED
        result.changes.append(FileChange(rel, state, sha256(text), before, text))
    if prune:
        keep_set = set(keep)
        for rel in sorted(existing - set(wanted) - keep_set):
            before = (dest_path / rel).read_text(errors="replace")
            result.changes.append(FileChange(rel, REMOVED, sha256(before), before, None))
    return result


def write(bundle: BundlePlan) -> None:
    """Apply a plan. Callers refuse to write when validation found problems."""
    for change in bundle.changes:
        target = bundle.dest / change.path
        if change.state in (CREATED, UPDATED) and change.after is not None:
            atomic_write(target, change.after)
        elif change.state == REMOVED:
            target.unlink(missing_ok=True)
    # Remove folders that pruning emptied, deepest first.
    if bundle.dest.is_dir():
        for folder in sorted((p for p in bundle.dest.rglob("*") if p.is_dir()),
                             key=lambda p: len(p.parts), reverse=True):
            if not any(folder.iterdir()):
                folder.rmdir()


def diff_entries(bundle: BundlePlan) -> list[dict[str, str]]:
    """Ansible's before/after diff format, one entry per file that changes."""
    out: list[dict[str, str]] = []
    for c in bundle.changes:
        if c.state == UNCHANGED:
            continue
        out.append({
            "before_header": f"{bundle.dest}/{c.path}" if c.before is not None else "/dev/null",
            "after_header": f"{bundle.dest}/{c.path}" if c.after is not None else "/dev/null",
            "before": c.before or "",
            "after": c.after or "",
        })
    return out


SUMMARY_FILES = ("SUMMARY.md", "summary.json")


def summarise(root: str | Path, region: str, mode: str) -> dict[str, str]:
    """SUMMARY.md and summary.json listing every artifact of a region's bundle.

    Deterministic (no timestamps) so that an unchanged plan leaves them unchanged.
    """
    root_path = Path(root)
    artifacts: dict[str, list[dict[str, str]]] = {}
    for rel in sorted(_existing_files(root_path) - set(SUMMARY_FILES)):
        if PurePosixPath(rel).name.startswith("."):
            continue
        role = PurePosixPath(rel).parts[0] if len(PurePosixPath(rel).parts) > 1 else "."
        text = (root_path / rel).read_bytes()
        artifacts.setdefault(role, []).append(
            {"path": rel, "sha256": hashlib.sha256(text).hexdigest(), "bytes": str(len(text))})
    total = sum(len(v) for v in artifacts.values())
    lines = [
        "# Project-wide plan (every region)" if region == PROJECT_PLAN
        else f"# Plan of region {region}",
        "",
        f"Mode: **{mode}**. {total} artifacts in {len(artifacts)} roles. Every Kubernetes manifest",
        "below was validated before it was written; apply mode sends exactly these files.",
        "",
    ]
    for role, items in artifacts.items():
        lines += [f"## {role} ({len(items)})", "", "| artifact | sha256 |", "|---|---|"]
        lines += [f"| `{i['path']}` | `{i['sha256'][:16]}` |" for i in items]
        lines.append("")
    doc = {"region": region, "mode": mode, "artifact_count": total, "roles": artifacts}
    return {"SUMMARY.md": "\n".join(lines), "summary.json": to_json(doc)}

