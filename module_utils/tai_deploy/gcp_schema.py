"""Check GCP request bodies against Google's own discovery documents, offline.

google-api-python-client ships the discovery document of every Google REST API
(``googleapiclient/discovery_cache/documents/<api>.<version>.json``). Each document's
``schemas`` describe the JSON of every message: ``type`` (string, integer, number, boolean,
object, array, any), ``format`` (int64/uint64 travel as decimal strings, int32/uint32 as
numbers), ``enum``, ``items``, ``additionalProperties`` (maps) and ``$ref``. Its ``resources``
name each method and the schema of its request body (``request.$ref``).

:func:`problems` returns one sentence per bad field of a body with the field path
(``cluster.nodePools[0].config.spot``): unknown field, wrong JSON type, an integer that is not
an integer, a bad enum value. :func:`method_problems` does the same for the request body of a
method (``container.v1``, ``projects.locations.clusters.create``). Cross-field rules are not a
schema matter and are not checked here.

Parsed documents are cached per process; the package is located without importing it.
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
import json
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

_INT_RE = re.compile(r"-?[0-9]+")
_UINT_RE = re.compile(r"[0-9]+")
# proto3 JSON accepts these strings for float/double fields.
_FLOAT_WORDS = frozenset({"NaN", "Infinity", "-Infinity"})
_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "uint32": (0, 2**32 - 1),
               "int64": (-(2**63), 2**63 - 1), "uint64": (0, 2**64 - 1)}


class SchemaError(LookupError):
    """An API, schema or method that the shipped discovery documents do not hold."""


def documents_dir() -> Path:
    """The folder of discovery documents inside the installed google-api-python-client."""
    spec = importlib.util.find_spec("googleapiclient")
    if spec is None or not spec.submodule_search_locations:
        raise SchemaError("The Python package google-api-python-client (Google's discovery "
                          "documents) is not installed; install the project's locked "
                          "dependencies.")
    return Path(next(iter(spec.submodule_search_locations))) / "discovery_cache" / "documents"


@cache
def document(api: str) -> dict[str, Any]:
    """The parsed discovery document of ``api`` such as ``container.v1`` (cached)."""
    if not re.fullmatch(r"[a-z0-9]+\.[a-z0-9]+", api):
        raise SchemaError(f"API {api!r} is not of the form <name>.<version>, e.g. container.v1.")
    path = documents_dir() / f"{api}.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SchemaError(f"No discovery document for API {api} in {path.parent}.") from exc
    return data


def schema(api: str, name: str) -> dict[str, Any]:
    schemas: dict[str, Any] = document(api).get("schemas", {})
    if name not in schemas:
        raise SchemaError(f"The discovery document of {api} has no schema {name!r}.")
    found: dict[str, Any] = schemas[name]
    return found


def method(api: str, method_id: str) -> dict[str, Any]:
    """A method by its dotted id, with or without the API name (``projects.zones.get``)."""
    doc = document(api)
    prefix = doc.get("name", api.split(".", maxsplit=1)[0]) + "."
    parts = (method_id[len(prefix):] if method_id.startswith(prefix) else method_id).split(".")
    node: Mapping[str, Any] = doc
    for part in parts[:-1]:
        node = node.get("resources", {}).get(part) or {}
    found = (node.get("methods") or {}).get(parts[-1])
    if not isinstance(found, dict):
        raise SchemaError(f"The discovery document of {api} has no method {method_id!r}.")
    return found


def request_schema(api: str, method_id: str) -> str | None:
    """Name of the request-body schema of a method (None: the method takes no body)."""
    ref = (method(api, method_id).get("request") or {}).get("$ref")
    return str(ref) if ref else None


def problems(api: str, schema_name: str, body: Any, path: str = "") -> list[str]:
    """One sentence per bad field of ``body`` checked against ``schema_name`` of ``api``."""
    out: list[str] = []
    _check(api, {"$ref": schema_name}, body, path, out)
    return out


def method_problems(api: str, method_id: str, body: Any) -> list[str]:
    """:func:`problems` for the request body of a method, e.g. ``projects.zones.get``."""
    name = request_schema(api, method_id)
    if name is None:
        return [] if body in (None, {}) else [f"{method_id} of {api} takes no request body."]
    return problems(api, name, body)


def _where(path: str) -> str:
    return path or "the body"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _check(api: str, prop: Mapping[str, Any], value: Any, path: str, out: list[str]) -> None:
    ref = prop.get("$ref")
    if ref:
        target = schema(api, str(ref))
        _check_object(api, str(ref), target, value, path, out=out)
        return
    kind = prop.get("type")
    if value is None:
        # JSON null means "not set" for every proto3 field.
        return
    if kind == "any" or kind is None:
        return
    if kind == "object":
        _check_object(api, "", prop, value, path, out=out)
    elif kind == "array":
        if not isinstance(value, list):
            out.append(f"{_where(path)} must be a list, got {_json_type(value)}.")
            return
        items = prop.get("items") or {}
        for i, item in enumerate(value):
            _check(api, items, item, f"{path}[{i}]", out)
    elif kind == "boolean":
        if not isinstance(value, bool):
            out.append(f"{_where(path)} must be a boolean (true or false), got "
                       f"{_json_type(value)} {json.dumps(value)}.")
    elif kind == "integer":
        _check_integer(prop.get("format") or "int32", value, path, out)
    elif kind == "number":
        ok = (isinstance(value, int | float) and not isinstance(value, bool)) or (
            isinstance(value, str) and (value in _FLOAT_WORDS or _is_float(value)))
        if not ok:
            out.append(f"{_where(path)} must be a number, got {_json_type(value)} "
                       f"{json.dumps(value)}.")
    elif kind == "string":
        _check_string(prop, value, path, out)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_integer(fmt: str, value: Any, path: str, out: list[str]) -> None:
    # proto3 JSON accepts an integer as a number or as a decimal string.
    if isinstance(value, bool) or not isinstance(value, int | str | float):
        number: int | None = None
    elif isinstance(value, float):
        number = int(value) if value.is_integer() else None
    elif isinstance(value, str):
        number = int(value) if _INT_RE.fullmatch(value) else None
    else:
        number = value
    low, high = _INT_RANGES.get(fmt, _INT_RANGES["int64"])
    if number is None or not low <= number <= high:
        out.append(f"{_where(path)} must be an integer ({fmt}, {low}..{high}), got "
                   f"{_json_type(value)} {json.dumps(value)}.")


def _check_string(prop: Mapping[str, Any], value: Any, path: str, out: list[str]) -> None:
    fmt = prop.get("format")
    if fmt in ("int64", "uint64"):
        # 64-bit integers travel as decimal strings; a JSON number is accepted too.
        pattern = _INT_RE if fmt == "int64" else _UINT_RE
        if isinstance(value, int) and not isinstance(value, bool):
            text = str(value)
        elif isinstance(value, str):
            text = value
        else:
            text = ""
        low, high = _INT_RANGES[fmt]
        if not pattern.fullmatch(text) or not low <= int(text) <= high:
            out.append(f"{_where(path)} must be a {fmt} integer (sent as a decimal string such "
                       f"as \"10\"), got {_json_type(value)} {json.dumps(value)}.")
        return
    if not isinstance(value, str):
        out.append(f"{_where(path)} must be a string, got {_json_type(value)} "
                   f"{json.dumps(value)}.")
        return
    enum = prop.get("enum")
    if enum and value not in enum:
        shown = ", ".join(str(e) for e in enum
                          if not (str(e) == "UNSPECIFIED" or str(e).endswith("_UNSPECIFIED")))
        out.append(f"{_where(path)} has the value {json.dumps(value)}, which is not one of "
                   f"{shown}.")
        return
    if fmt == "byte":
        try:
            base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_"
                             if ("-" in value or "_" in value) else None, validate=True)
        except (binascii.Error, ValueError):
            out.append(f"{_where(path)} must be base64-encoded bytes, got {json.dumps(value)}.")
    elif fmt == "google-duration" and not re.fullmatch(r"-?[0-9]+(\.[0-9]{1,9})?s", value):
        out.append(f"{_where(path)} must be a duration in seconds such as \"3.5s\", got "
                   f"{json.dumps(value)}.")


def _check_object(api: str, name: str, prop: Mapping[str, Any], value: Any, path: str, *,
                  out: list[str]) -> None:
    if value is None:
        return
    if prop.get("type") not in (None, "object"):
        # A $ref to a non-object schema (rare: enums and arrays declared at top level).
        _check(api, prop, value, path, out)
        return
    if not isinstance(value, dict):
        what = f"a {name} object" if name else "an object"
        out.append(f"{_where(path)} must be {what}, got {_json_type(value)} "
                   f"{json.dumps(value)}.")
        return
    if prop.get("format") == "google.protobuf.Any":
        return
    properties: Mapping[str, Any] = prop.get("properties") or {}
    extra = prop.get("additionalProperties")
    for key, item in value.items():
        sub = f"{path}.{key}" if path else str(key)
        if key in properties:
            _check(api, properties[key], item, sub, out)
        elif isinstance(extra, Mapping):
            _check(api, extra, item, f"{path}[{json.dumps(key)}]" if path else str(key), out)
        elif extra is True:
            continue
        else:
            owner = f"the {name} schema" if name else "this object"
            known = ", ".join(sorted(properties)) or "none"
            hint = _nearest(str(key), properties)
            out.append(f"{sub} is not a field of {owner} ({api}){hint}; known fields: "
                       f"{known}." if len(properties) <= 12 else
                       f"{sub} is not a field of {owner} ({api}){hint}.")


def _nearest(key: str, properties: Mapping[str, Any]) -> str:
    import difflib

    close = difflib.get_close_matches(key, list(properties), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def declared_problems(declaration: Mapping[str, Any] | str, data: Any) -> list[str]:
    """Problems of a rendered file by its declaration (what the tai_bundle files entry says).

    ``{"api": "container.v1", "schema": "Cluster"}`` checks the file as one object of that
    schema; ``{"api": ..., "method": "projects.locations.clusters.create"}`` as the request body
    of the method; ``"items"`` as a list of gcp_resource items, whose ``create`` and ``update``
    bodies each name their ``method`` and whose ``api`` names the document.
    """
    if declaration == "items":
        out: list[str] = []
        for i, item in enumerate(data if isinstance(data, list) else []):
            api = item.get("api") if isinstance(item, Mapping) else None
            if not api:
                continue
            label = item.get("id", i)
            if item.get("kind") == "iam_policy" and item.get("method_id"):
                # the setIamPolicy request that apply sends: the bindings inside a Policy
                out += [f"item {label} ({item['method_id']}): {p}"
                        for p in method_problems(str(api), str(item["method_id"]),
                                                 {"policy": {"bindings": item.get("bindings")}})]
            for step in ("create", "update"):
                call = item.get(step)
                if isinstance(call, Mapping) and call.get("method_id") and "body" in call:
                    out += [f"item {label} ({step}, {call['method_id']}): {p}"
                            for p in method_problems(str(api), str(call["method_id"]),
                                                     call["body"])]
        return out
    if not isinstance(declaration, Mapping) or "api" not in declaration:
        raise SchemaError("gcp_schema must be {api, schema}, {api, method} or 'items'.")
    api = str(declaration["api"])
    if declaration.get("method"):
        return method_problems(api, str(declaration["method"]), data)
    return problems(api, str(declaration["schema"]), data)
