"""How the TEST DOUBLE refuses a request body, the way Google's JSON front end does.

The rules come from Google's discovery documents shipped in google-api-python-client
(``googleapiclient/discovery_cache/documents/<api>.<version>.json``): the request ``$ref`` of
the method, each schema's ``properties`` with ``type``/``format``/``enum``/``items``/
``additionalProperties``. The messages follow what Google answers (400 INVALID_ARGUMENT):

    Invalid JSON payload received. Unknown name "spott" at 'cluster.node_pools[0].config':
    Cannot find field.
    Invalid value at 'cluster.node_pools[0].config.spot' (TYPE_BOOL), "yes"
    Invalid value at 'cluster.release_channel.channel'
    (type.googleapis.com/google.container.v1.ReleaseChannel.Channel), "FASTEST"

Field locations use the proto (snake_case) names, as Google's do. This is written separately
from the plan-time check in module_utils (tai_deploy.gcp_schema) on purpose: a double that
shared our code would agree with our mistakes. Both read the same authoritative documents.
"""

from __future__ import annotations

import json
import re
import sysconfig
from functools import cache
from pathlib import Path
from typing import Any


@cache
def _doc(api: str) -> dict[str, Any]:
    path = (Path(sysconfig.get_paths()["purelib"]) / "googleapiclient" / "discovery_cache" /
            "documents" / f"{api}.json")
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def request_ref(api: str, method_id: str) -> str | None:
    """The request ``$ref`` of a method given by its full id (``compute.addresses.insert``)."""
    def walk(node: dict[str, Any]) -> str | None:
        for m in (node.get("methods") or {}).values():
            if m.get("id") == method_id:
                return (m.get("request") or {}).get("$ref")
        for sub in (node.get("resources") or {}).values():
            found = walk(sub)
            if found:
                return found
        return None
    return walk(_doc(api))


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _proto_type(api: str, owner: str, field: str) -> str:
    name, version = api.split(".")
    return f"type.googleapis.com/google.{name}.{version}.{owner}.{field[:1].upper()}{field[1:]}"


class Violations:
    def __init__(self, api: str) -> None:
        self.api = api
        self.items: list[tuple[str, str]] = []  # (field location, description)

    def add(self, where: str, text: str) -> None:
        self.items.append((where, text))

    def message(self) -> str:
        return "\n".join(text for _, text in self.items)

    def error(self) -> dict[str, Any]:
        """Google's error body: status INVALID_ARGUMENT with a BadRequest detail."""
        return {"error": {
            "code": 400, "message": self.message(), "status": "INVALID_ARGUMENT",
            "errors": [{"message": text, "domain": "global", "reason": "invalid"}
                       for _, text in self.items],
            "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest",
                         "fieldViolations": [{"field": where, "description": text}
                                             for where, text in self.items]}]}}


def validate(api: str, ref: str, body: Any) -> Violations:
    out = Violations(api)
    _message(api, ref, body, "", out)
    return out


def _message(api: str, ref: str, value: Any, where: str, out: Violations) -> None:
    spec = _doc(api)["schemas"][ref]
    if not isinstance(value, dict):
        if isinstance(value, list):
            out.add(where, f"Invalid JSON payload received. Unknown name \"{where}\" at '': "
                           "Proto field is not repeating, cannot start list.")
        elif value is not None:
            out.add(where, f"Invalid value at '{where}' ({_proto_type(api, '', ref)[:-1]}"
                           f"{ref}), {json.dumps(value)}")
        return
    props = spec.get("properties") or {}
    for key, item in value.items():
        if key not in props:
            at = f" at '{where}'" if where else ""
            out.add(where, f"Invalid JSON payload received. Unknown name \"{key}\"{at}: "
                           "Cannot find field.")
            continue
        _field(api, ref, key, props[key], item,
               where=f"{where}.{_snake(key)}" if where else _snake(key), out=out)


_SCALARS: dict[tuple[str | None, str | None], str] = {
            ("boolean", None): "TYPE_BOOL", ("integer", "int32"): "TYPE_INT32",
            ("integer", "uint32"): "TYPE_UINT32", ("string", "int64"): "TYPE_INT64",
            ("string", "uint64"): "TYPE_UINT64", ("number", "double"): "TYPE_DOUBLE",
            ("number", "float"): "TYPE_FLOAT"}


def _field(api: str, owner: str, key: str, prop: dict[str, Any], value: Any, *, where: str,
           out: Violations) -> None:
    if value is None:
        return
    if "$ref" in prop:
        _message(api, prop["$ref"], value, where, out)
        return
    kind: str | None = prop.get("type")
    fmt: str | None = prop.get("format")
    if kind == "array":
        if not isinstance(value, list):
            out.add(where, f"Invalid value at '{where}', {json.dumps(value)}: Starting an "
                           "array on a scalar field")
            return
        for i, item in enumerate(value):
            _field(api, owner, key, prop.get("items") or {}, item, where=f"{where}[{i}]", out=out)
        return
    if kind == "object":
        if not isinstance(value, dict):
            out.add(where, f"Invalid value at '{where}', {json.dumps(value)}")
            return
        extra = prop.get("additionalProperties")
        if isinstance(extra, dict):  # a map<string, V>
            for k, v in value.items():
                _field(api, owner, key, extra, v, where=f"{where}[{json.dumps(k)}]", out=out)
        return
    if kind == "any":
        return
    ok = _scalar_ok(kind, fmt, value)
    if not ok:
        out.add(where, f"Invalid value at '{where}' ({_SCALARS.get((kind, fmt), 'TYPE_STRING')}"
                       f"), {json.dumps(value)}")
        return
    if kind == "string" and prop.get("enum") and value not in prop["enum"]:
        out.add(where, f"Invalid value at '{where}' ({_proto_type(api, owner, key)}), "
                       f"{json.dumps(value)}")


def _scalar_ok(kind: str | None, fmt: str | None, value: Any) -> bool:
    if kind == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == "integer" or (kind == "string" and fmt in ("int64", "uint64")):
        text: str = (str(value) if isinstance(value, int)
                     else value if isinstance(value, str) else "")
        if not re.fullmatch(r"-?\d+" if fmt in ("int32", "int64") else r"\d+", text):
            return False
        bits = 64 if fmt in ("int64", "uint64") else 32
        number: int = int(str(text))
        if fmt and fmt.startswith("u"):
            return 0 <= number < (1 << bits)
        return -(1 << (bits - 1)) <= number < (1 << (bits - 1))
    if kind == "number":
        return isinstance(value, int | float) or value in ("NaN", "Infinity", "-Infinity")
    if kind == "string":
        return isinstance(value, str)
    return True
