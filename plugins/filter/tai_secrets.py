# Copyright: tai-deploy contributors
"""Filter tai_secret_manifest: a Secret built as data, for server-side apply.

Secrets are sent with server-side apply (kubernetes.core.k8s ``apply: true`` with
``server_side_apply``): a client-side apply would copy the whole object, credentials
included, into the ``kubectl.kubernetes.io/last-applied-configuration`` annotation, readable
by anyone who may read the object's metadata. The values are base64-encoded here (``data``,
not ``stringData``, so that what is stored is exactly what is sent and a rerun is a no-op),
and the Secret carries the project's ownership labels (what prune selects on).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError


def tai_secret_manifest(data: Mapping[str, Any], name: str, namespace: str,
                        labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise AnsibleFilterError(f"the data of Secret {namespace}/{name} must be a mapping of "
                                 f"file names to values, not a {type(data).__name__}")
    encoded: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, (Mapping, list)) or value is None:
            # never name the value: it is a credential
            raise AnsibleFilterError(f"key {key} of Secret {namespace}/{name} must be a string")
        raw = value if isinstance(value, bytes) else str(value).encode()
        encoded[str(key)] = base64.b64encode(raw).decode()
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": dict(labels or {})},
            "data": encoded}


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"tai_secret_manifest": tai_secret_manifest}
