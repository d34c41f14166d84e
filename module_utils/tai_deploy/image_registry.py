"""Where the platform's images come from, as Artifact Registry repositories.

The GKE nodes pull every image with the node service account, so it needs
``roles/artifactregistry.reader`` on each Google registry the images name. The narrowest grant
the APIs allow is on the repository itself (``projects.locations.repositories.setIamPolicy`` of
artifactregistry v1), not on the project that holds it.

Container Registry hosts are served by Artifact Registry "gcr.io" repositories, one per host,
named after the host, in the multi-region of the host
(https://cloud.google.com/artifact-registry/docs/transition/gcr-repositories, "gcr.io domain
support": gcr.io -> us, us.gcr.io -> us, eu.gcr.io -> europe, asia.gcr.io -> asia). Since
Container Registry's shutdown (March 18, 2025) a gcr.io image is always read from that
repository. Artifact Registry's own hosts are ``<location>-docker.pkg.dev/<project>/<repository>``
(https://cloud.google.com/artifact-registry/docs/docker/names).

Images of other registries (docker.io, quay.io, ...) need no Google grant and are left out.
Nothing here talks to an API.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

READER_ROLE = "roles/artifactregistry.reader"
# Container Registry host -> location of its Artifact Registry gcr.io repository.
GCR_LOCATIONS = {"gcr.io": "us", "us.gcr.io": "us", "eu.gcr.io": "europe",
                 "asia.gcr.io": "asia"}
_PKG_DEV = re.compile(r"^(?P<loc>[a-z0-9-]+)-docker\.pkg\.dev$")
# A project id: 6 to 30 lower-case letters, digits and hyphens, starting with a letter; a
# domain-scoped project (example.com:project) keeps its domain.
_PROJECT = re.compile(r"^(?:[a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_REPOSITORY = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


class RegistryError(ValueError):
    """An image reference that names a Google registry wrongly; one sentence."""


@dataclass(frozen=True, order=True)
class Repository:
    """An Artifact Registry repository the images are read from."""

    project: str
    location: str
    name: str

    @property
    def resource(self) -> str:
        """Its REST path (artifactregistry v1 ``resource`` of get/setIamPolicy)."""
        return f"/v1/projects/{self.project}/locations/{self.location}/repositories/{self.name}"

    @property
    def title(self) -> str:
        return f"Artifact Registry repository {self.name} ({self.location}) of project " \
               f"{self.project}"


def repository_of(image: str) -> Repository | None:
    """The repository an image reference (``host/path[:tag][@digest]``) is read from, or None
    when its host is not a Google registry."""
    ref = str(image).strip().split("@", 1)[0]
    host, _, path = ref.partition("/")
    if not path or ("." not in host and ":" not in host and host != "localhost"):
        return None  # Docker Hub shorthand (python, library/redis)
    parts = path.split("/")
    if host in GCR_LOCATIONS:
        project = parts[0]
        if len(parts) < 2 or not _PROJECT.match(project):
            raise RegistryError(f"The image {image} names no valid project after {host}/ "
                                f"(expected {host}/<project>/<image>)")
        return Repository(project, GCR_LOCATIONS[host], host)
    m = _PKG_DEV.match(host)
    if m:
        if len(parts) < 3 or not _PROJECT.match(parts[0]) or not _REPOSITORY.match(parts[1]):
            raise RegistryError(f"The image {image} is not {host}/<project>/<repository>/<image>")
        return Repository(parts[0], m.group("loc"), parts[1])
    return None


def repositories(images: Iterable[str]) -> list[Repository]:
    """The distinct repositories of the images, sorted."""
    found = {repository_of(i) for i in images}
    return sorted(r for r in found if r is not None)
