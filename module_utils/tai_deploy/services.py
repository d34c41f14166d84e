"""The TAI services and their blue-green slots, as the Python code of the project knows them.

The playbooks and roles read the same list from ``group_vars/all/services.yml``
(``tai_service_names``, ``tai_service_slots``); both follow the chart
(``charts/tai-chart/values.yaml``: ``services``; the templates' ``<service>-<slot>``
Deployments). tests/test_bluegreen_inputs.py holds the three together.
"""

from __future__ import annotations

import re

SERVICES = ("governor", "coordinator", "scheduler")
SLOTS = ("blue", "green")

# An image tag as the OCI distribution spec allows it (a tag reference:
# [A-Za-z0-9_][A-Za-z0-9._-]{0,127}), and a digest as the chart takes it (values.schema.json:
# sha256:<64 lowercase hex>).
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"sha256:[a-f0-9]{64}"
IMAGE_TAG = re.compile(f"^{_TAG}$")
# A version of the rolling upgrade: a tag, optionally with the digest it pins
# (tag@sha256:<64 hex>, the form production requires); the swap and the upgrade's input
# check share it.
IMAGE_VERSION = re.compile(f"^(?P<tag>{_TAG})(?:@(?P<digest>{_DIGEST}))?$")


def other_slot(slot: str) -> str:
    """The slot that is not ``slot``."""
    return SLOTS[1] if slot == SLOTS[0] else SLOTS[0]
