"""What the plan's controller-side modules do with their parameters, as plain functions.

Each function takes a module's validated parameters and returns the module's result (with
``failed`` and ``msg`` when it refuses). The modules in library/ call them from ``main()``; their
action plugins in plugins/action call them in Ansible's worker, without a module process
(plugins/plugin_utils/in_process.py). One body of code, so both give the same result, check mode
and diff.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _failed(msg: str, **extra: Any) -> dict[str, Any]:
    return {"failed": True, "msg": msg, **extra}


def run_bundle(p: dict[str, Any], *, check_mode: bool, diff: bool) -> dict[str, Any]:
    """tai_bundle: validate a role's rendered artifacts and write the ones that changed."""
    from .bundle import UNCHANGED, BundleError, collect, diff_entries, plan, write

    files, manifests = list(p["files"]), p["manifests"]
    chart = p.get("chart")
    if chart:
        from .helm_template import ChartRefused, ChartRender, render

        try:
            manifests = render(ChartRender(
                path=chart["path"], release=chart["release"], namespace=chart["namespace"],
                kubernetes_version=p["kubernetes_version"], values=chart["values"],
                helm=chart["helm"]))
        except ChartRefused as exc:
            return _failed(f"{chart['refusal']}: {exc}")
        if chart.get("values_path"):
            files.insert(0, {"path": chart["values_path"], "data": chart["values"]})
    try:
        wanted, objects = collect(files, manifests, p["manifests_dir"], p["releases"])
        bundle = plan(p["dest"], wanted, objects=objects,
                      kubernetes_version=p["kubernetes_version"], prune=p["prune"])
    except BundleError as exc:
        return _failed(f"{p['dest']}: {exc}")
    report = bundle.validation
    result: dict[str, Any] = {
        "dest": p["dest"],
        "schema_validated": report.schema_validated,
        "structural_only": report.structural_only,
        "crd_validated": report.crd_validated,
        "summary": bundle.summary(),
        "files": [{"path": c.path, "state": c.state, "sha256": c.sha256}
                  for c in bundle.changes],
    }
    if not report.ok:
        problems = [str(pr) for pr in report.problems]
        return _failed(
            f"{len(problems)} manifest(s) for {p['dest']} would be refused by Kubernetes "
            f"{p['kubernetes_version']}; nothing was written: " + "; ".join(problems[:10]),
            problems=problems, **result)
    if bundle.changed and not check_mode:
        try:
            write(bundle)
        except OSError as exc:
            return _failed(
                f"Cannot write the plan under {p['dest']}: "
                f"{exc.strerror or exc.__class__.__name__}; the folder comes from "
                "tai_build_root (the TAI_BUILD_ROOT environment variable, else the "
                "repository's build/).", **result)
    if diff:
        result["diff"] = diff_entries(bundle)
    result["changed"] = any(c.state != UNCHANGED for c in bundle.changes)
    return result


def run_plan_summary(p: dict[str, Any], *, check_mode: bool, diff: bool) -> dict[str, Any]:
    """tai_plan_summary: index a region's plan and move the staged plan into place."""
    from .bundle import diff_entries, plan, summarise, write
    from .staging import StagingError, promote_staging, staging_dir

    root = Path(p["root"])
    final = Path(p["plan_dir"]) if p["plan_dir"] else root
    if final != root and staging_dir(final.parent, p["region"]) != root:
        return _failed(f"{root} is not the staging folder of {final}; the plan stays where "
                       "it is.")
    try:
        wanted = summarise(root, p["region"], p["mode"])
        bundle = plan(root, wanted, prune=False)
        if not check_mode:
            if bundle.changed:
                write(bundle)
            if final != root:
                promote_staging(final.parent, p["region"])
    except StagingError as exc:
        return _failed(str(exc))
    except OSError as exc:
        return _failed(f"Cannot write the plan summary under {root}: "
                       f"{exc.strerror or exc.__class__.__name__}; the folder comes from "
                       "tai_build_root (the TAI_BUILD_ROOT environment variable).")
    result: dict[str, Any] = {
        "changed": bundle.changed,
        "artifact_count": json.loads(wanted["summary.json"])["artifact_count"],
        "summary_path": str(final / "SUMMARY.md"),
    }
    if diff:
        result["diff"] = diff_entries(bundle)
    return result


def run_inventory_check(p: dict[str, Any], *, check_mode: bool,
                        diff: bool = False) -> dict[str, Any]:
    """tai_inventory_check: every input of a region's plan, then its staging folder."""
    from .inventory import PlanInputs, check_plan, check_run, defined_tags, load_argument_specs
    from .staging import PROJECT_PLAN, StagingError, begin_staging, staging_dir

    region = p["region"]
    root = p["project_root"]
    tags = [*p["run_tags"], *p["skip_tags"]]
    known = defined_tags(root) if root and set(tags) - {"all"} else set()
    errors = check_run(region, limit=p["limit"], run_tags=p["run_tags"],
                       skip_tags=p["skip_tags"], known_tags=known, build_root=p["build_root"],
                       all_regions=sorted(p["regions"]))
    inputs = dict(p["inputs"])
    errors += [str(e) for e in inputs.pop("_problems", [])]
    specs = {role: load_argument_specs(f"{root}/roles", role) for role in inputs} if root else {}
    errors += [e for e in check_plan(PlanInputs(
        region=region, variables=p["variables"], inputs=inputs, specs=specs,
        regions=p["regions"], tier_groups=p["tier_groups"], charts=p["charts"],
        project_root=root or "")) if e not in errors]
    if errors:
        return _failed(" ".join(errors), errors=errors)
    build_dir = f"{p['build_root']}/{region}"
    project_build_dir = f"{p['build_root']}/{PROJECT_PLAN}"
    if p["stage"] and not check_mode:
        try:
            build_dir = str(begin_staging(p["build_root"], region))
            project_build_dir = str(staging_dir(p["build_root"], PROJECT_PLAN))
            if p["stage_project"]:
                begin_staging(p["build_root"], PROJECT_PLAN)
        except StagingError as exc:
            return _failed(str(exc), errors=[str(exc)])
    return {"changed": False, "checked": sorted(p["variables"]), "checked_roles": sorted(inputs),
            "build_dir": build_dir, "project_build_dir": project_build_dir}


def run_project_check(p: dict[str, Any], *, check_mode: bool,
                      diff: bool = False) -> dict[str, Any]:
    """tai_project_check: the project phase's network names and subnet ranges of a region."""
    from .project_checks import check_project

    errors = check_project(p["region"], p["variables"])
    if errors:
        return _failed(" ".join(errors), errors=errors)
    return {"changed": False, "checked": sorted(p["variables"])}
