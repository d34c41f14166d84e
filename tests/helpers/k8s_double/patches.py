"""The patch formats the Kubernetes API TEST DOUBLE accepts on PATCH.

Part of the Kubernetes API TEST DOUBLE (NOT Kubernetes): JSON merge patch (RFC 7386), JSON
patch (RFC 6902), a simplified strategic merge patch and a simplified server-side apply, applied
to the stored object before the result is validated like any write.
"""

from __future__ import annotations

import copy
from typing import Any

from .common import _HttpError


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """A simplified strategic merge patch: lists of objects with a ``name`` merge by name.

    Enough for kubectl's scale/patch of the fields used here; ``$patch`` directives are
    refused rather than misapplied.
    """
    if isinstance(patch, dict):
        if any(str(k).startswith("$") for k in patch):
            raise _HttpError(415, "UnsupportedMediaType",
                             "the test double does not implement strategic merge directives")
        result = copy.deepcopy(target) if isinstance(target, dict) else {}
        for key, value in patch.items():
            if value is None:
                result.pop(key, None)
            else:
                result[key] = strategic_merge_patch(result.get(key), value)
        return result
    if (isinstance(patch, list) and isinstance(target, list) and patch
            and all(isinstance(p, dict) and "name" in p for p in patch)
            and all(isinstance(t, dict) and "name" in t for t in target)):
        merged = [copy.deepcopy(t) for t in target]
        for item in patch:
            for i, existing in enumerate(merged):
                if existing["name"] == item["name"]:
                    merged[i] = strategic_merge_patch(existing, item)
                    break
            else:
                merged.append(copy.deepcopy(item))
        return merged
    return copy.deepcopy(patch)


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise _HttpError(422, "Invalid", f"JSON patch path {path!r} must start with /")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(target: Any, ops: Any) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, test, copy, move)."""
    if not isinstance(ops, list):
        raise _HttpError(400, "BadRequest", "a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)

    def parent(parts: list[str]) -> tuple[Any, str]:
        node = doc
        for p in parts[:-1]:
            node = node[int(p)] if isinstance(node, list) else node[p]
        return node, parts[-1]

    def get(path: str) -> Any:
        node = doc
        for p in _pointer(path):
            node = node[int(p)] if isinstance(node, list) else node[p]
        return node

    for op in ops:
        try:
            kind, path = op["op"], op["path"]
            parts = _pointer(path)
            if kind == "test":
                if get(path) != op["value"]:
                    raise _HttpError(422, "Invalid",
                                     f"the server rejected our request due to an error in our "
                                     f"request: testing value {path} failed")
                continue
            if kind in ("copy", "move"):
                value = copy.deepcopy(get(op["from"]))
                if kind == "move":
                    node, key = parent(_pointer(op["from"]))
                    del node[int(key) if isinstance(node, list) else key]
                kind = "add"
            else:
                value = op.get("value")
            node, key = parent(parts)
            if kind == "add":
                if isinstance(node, list):
                    node.insert(len(node) if key == "-" else int(key), value)
                else:
                    node[key] = value
            elif kind == "replace":
                if isinstance(node, list):
                    node[int(key)] = value
                else:
                    if key not in node:
                        raise KeyError(key)
                    node[key] = value
            elif kind == "remove":
                del node[int(key) if isinstance(node, list) else key]
            else:
                raise _HttpError(422, "Invalid", f"unknown JSON patch operation {kind!r}")
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise _HttpError(422, "Invalid",
                             f"the server rejected our request due to an error in our request: "
                             f"{exc!r} in {op!r}") from exc
    return doc


APPLY_PATCH = "application/apply-patch+yaml"


def apply_patch(target: Any, patch: Any) -> Any:
    """Server-side apply of one field manager's configuration, simplified: the applied fields
    are merged into the live object like a strategic merge patch (lists of objects by name).
    Fields the manager stopped applying are not removed: the double keeps no managedFields
    (API reference: Server-Side Apply, "Merge strategy")."""
    if isinstance(patch, dict):
        patch = {k: v for k, v in patch.items() if k not in ("status",)}
    return strategic_merge_patch(target, patch)
