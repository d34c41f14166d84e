"""Request bodies in Kubernetes' protobuf encoding, as the Kubernetes API TEST DOUBLE reads them.

Part of the Kubernetes API TEST DOUBLE (NOT Kubernetes): client-go's typed clients (Helm's
release storage) send Secrets and ConfigMaps as protobuf; the double decodes the fields they
set into the JSON form it stores.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any

PROTOBUF = "application/vnd.kubernetes.protobuf"


def _fields(data: bytes) -> Iterator[tuple[int, Any]]:
    """(field number, value) of a protobuf message: varints as int, length-delimited as
    bytes (https://protobuf.dev/programming-guides/encoding/)."""
    i = 0

    def varint() -> int:
        nonlocal i
        shift = result = 0
        while True:
            byte = data[i]
            i += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return result

    while i < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            yield number, varint()
        elif wire == 2:
            size = varint()
            yield number, data[i:i + size]
            i += size
        elif wire == 1:
            yield number, data[i:i + 8]
            i += 8
        elif wire == 5:
            yield number, data[i:i + 4]
            i += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def _proto_map(entries: list[bytes], decode: Callable[[bytes], Any]) -> dict[str, Any]:
    out = {}
    for entry in entries:
        kv = dict(_fields(entry))
        out[kv.get(1, b"").decode()] = decode(kv.get(2, b""))
    return out


def _proto_object_meta(data: bytes) -> dict[str, Any]:
    """ObjectMeta from k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto (the fields a
    client sets: name 1, generateName 2, namespace 3, resourceVersion 6, labels 11,
    annotations 12, finalizers 14)."""
    meta: dict[str, Any] = {}
    labels: list[bytes] = []
    annotations: list[bytes] = []
    for number, value in _fields(data):
        names = {1: "name", 2: "generateName", 3: "namespace", 6: "resourceVersion",
                 5: "uid"}
        if number in names and value:
            meta[names[number]] = value.decode()
        elif number == 11:
            labels.append(value)
        elif number == 12:
            annotations.append(value)
        elif number == 14:
            meta.setdefault("finalizers", []).append(value.decode())
    if labels:
        meta["labels"] = _proto_map(labels, bytes.decode)
    if annotations:
        meta["annotations"] = _proto_map(annotations, bytes.decode)
    return meta


def decode_protobuf(raw: bytes) -> dict[str, Any]:
    """A request body in Kubernetes' protobuf encoding: the ``k8s\\x00`` magic, then a
    runtime.Unknown (typeMeta 1, raw 2) wrapping the object (API reference: "Alternate
    representations of resources"; k8s.io/apimachinery/pkg/runtime/serializer/protobuf).
    Only the kinds clients send this way here are understood: Secrets (Helm's release
    storage, through client-go's typed clientset) and ConfigMaps."""
    if not raw.startswith(b"k8s\x00"):
        raise ValueError("the protobuf body lacks the k8s magic prefix")
    unknown = dict(_fields(raw[4:]))
    type_meta = {n: v.decode() for n, v in _fields(unknown.get(1, b""))}
    api_version, kind = type_meta.get(1, ""), type_meta.get(2, "")
    if (api_version, kind) not in (("v1", "Secret"), ("v1", "ConfigMap")):
        raise ValueError(f"the test double cannot decode {api_version} {kind} from protobuf")
    obj: dict[str, Any] = {"apiVersion": api_version, "kind": kind}
    data: list[bytes] = []
    string_data: list[bytes] = []
    binary: list[bytes] = []
    for number, value in _fields(unknown.get(2, b"")):
        if number == 1:
            obj["metadata"] = _proto_object_meta(value)
        elif number == 2:
            data.append(value)
        elif kind == "Secret" and number == 3:
            obj["type"] = value.decode()
        elif kind == "Secret" and number == 4:
            string_data.append(value)
        elif kind == "Secret" and number == 5:
            obj["immutable"] = bool(value)
        elif kind == "ConfigMap" and number == 3:
            binary.append(value)
        elif kind == "ConfigMap" and number == 4:
            obj["immutable"] = bool(value)
    if data:
        obj["data"] = _proto_map(data, (lambda b: base64.b64encode(b).decode())
                                 if kind == "Secret" else bytes.decode)
    if string_data:
        obj["stringData"] = _proto_map(string_data, bytes.decode)
    if binary:
        obj["binaryData"] = _proto_map(binary, lambda b: base64.b64encode(b).decode())
    return obj
