"""How the pods of the Kubernetes API TEST DOUBLE behave: the image-tag conventions.

Part of the Kubernetes API TEST DOUBLE (NOT Kubernetes). The pods it plays answer the standard
gRPC health service; a ``Behaviour``, chosen from the image tag by ``behaviour_for_tag`` (tests
may pass their own function), says whether they become available, how fast, and what they
answer. The tag conventions are listed in the package docstring.
"""

from __future__ import annotations

from dataclasses import dataclass

SERVING, NOT_SERVING = "SERVING", "NOT_SERVING"


@dataclass(frozen=True)
class Behaviour:
    """How the pods of one image behave."""

    available: bool = True
    ready_delay: float | None = None  # None: the double's default
    health: str = SERVING
    fail_after: float | None = None  # seconds live (selected by a non-preview Service)
    flap_period: float | None = None


def behaviour_for_tag(tag: str) -> Behaviour:
    """The tag conventions described in the package docstring."""
    if tag.endswith("-never"):
        return Behaviour(available=False)
    if tag.endswith("-sick"):
        return Behaviour(health=NOT_SERVING)
    if tag.endswith("-fail-after-swap"):
        return Behaviour(fail_after=0.3)
    if tag.endswith("-flap"):
        return Behaviour(flap_period=0.15)
    if tag.endswith("-slow"):
        return Behaviour(ready_delay=2.0)
    return Behaviour()


def image_tag(image: str) -> str:
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"
