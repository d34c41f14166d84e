"""The kinds the Kubernetes API TEST DOUBLE serves built in: names, scope, verbs, subresources.

Part of the Kubernetes API TEST DOUBLE (NOT Kubernetes). ``_Resource`` describes one kind as
discovery lists it; ``_BUILTINS`` are the kinds the plan, the TAI chart and the platform charts
create, ``_kind`` finds one by its kind name or plural. The kinds CustomResourceDefinitions add
are served by kinds.py.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class _Resource:
    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...]
    verbs: tuple[str, ...]
    subresources: tuple[str, ...]

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def kind_qualified(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind


_RW = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
DEPLOYMENTS = _Resource("apps", "v1", "deployments", "deployment", "Deployment", True,
                        ("deploy",), _RW, ("status", "scale"))
SERVICES = _Resource("", "v1", "services", "service", "Service", True, ("svc",), _RW,
                     ("status",))
NAMESPACES = _Resource("", "v1", "namespaces", "namespace", "Namespace", False, ("ns",),
                       _RW, ("status",))
LEASES = _Resource("coordination.k8s.io", "v1", "leases", "lease", "Lease", True, (), _RW, ())
SCALEDOBJECTS = _Resource("keda.sh", "v1alpha1", "scaledobjects", "scaledobject",
                          "ScaledObject", True, ("so",), _RW, ())
CRDS = _Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions",
                 "customresourcedefinition", "CustomResourceDefinition", False, ("crd",), _RW,
                 ("status",))
PODS = _Resource("", "v1", "pods", "pod", "Pod", True, ("po",), _RW, ("status",))
SECRETS = _Resource("", "v1", "secrets", "secret", "Secret", True, (), _RW, ())


def _builtin(api_version: str, kind: str, plural: str, namespaced: bool = True,
             subresources: tuple[str, ...] = ()) -> _Resource:
    group, _, version = api_version.rpartition("/")
    return _Resource(group, version, plural, kind.lower(), kind, namespaced, (), _RW,
                     subresources)


# The built-in kinds the plan, the TAI chart and the platform charts create, with their plural
# and scope as the Kubernetes API reference lists them
# (https://kubernetes.io/docs/reference/kubernetes-api/). Their bodies are validated with
# kubernetes-validate's schemas of the same Kubernetes minor.
_BUILTINS = (
    DEPLOYMENTS, SERVICES, NAMESPACES, LEASES, SCALEDOBJECTS, CRDS, PODS, SECRETS,
    _builtin("v1", "ConfigMap", "configmaps"),
    _builtin("v1", "ServiceAccount", "serviceaccounts"),
    _builtin("v1", "PersistentVolumeClaim", "persistentvolumeclaims", True, ("status",)),
    _builtin("v1", "ResourceQuota", "resourcequotas", True, ("status",)),
    _builtin("v1", "LimitRange", "limitranges"),
    _builtin("v1", "Endpoints", "endpoints"),
    _builtin("v1", "Event", "events"),
    _builtin("apps/v1", "StatefulSet", "statefulsets", True, ("status", "scale")),
    _builtin("apps/v1", "DaemonSet", "daemonsets", True, ("status",)),
    _builtin("apps/v1", "ReplicaSet", "replicasets", True, ("status", "scale")),
    _builtin("apps/v1", "ControllerRevision", "controllerrevisions"),
    _builtin("batch/v1", "Job", "jobs", True, ("status",)),
    _builtin("batch/v1", "CronJob", "cronjobs", True, ("status",)),
    _builtin("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", True,
             ("status",)),
    _builtin("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets", True, ("status",)),
    _builtin("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies"),
    _builtin("networking.k8s.io/v1", "Ingress", "ingresses", True, ("status",)),
    _builtin("rbac.authorization.k8s.io/v1", "Role", "roles"),
    _builtin("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings"),
    _builtin("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", False),
    _builtin("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "clusterrolebindings", False),
    _builtin("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration",
             "mutatingwebhookconfigurations", False),
    _builtin("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration",
             "validatingwebhookconfigurations", False),
    _builtin("scheduling.k8s.io/v1", "PriorityClass", "priorityclasses", False),
    _builtin("storage.k8s.io/v1", "StorageClass", "storageclasses", False),
    _builtin("apiregistration.k8s.io/v1", "APIService", "apiservices", False, ("status",)),
)
_BY_PLURAL = {r.plural: r for r in _BUILTINS}
_BY_KIND = {r.kind.lower(): r for r in _BUILTINS}
# Kinds whose objects carry metadata.generation (bumped when the spec changes) and a status.
_NO_GENERATION = {"", "configmaps", "secrets", "serviceaccounts", "endpoints", "events",
                  "leases", "roles", "rolebindings", "clusterroles", "clusterrolebindings",
                  "limitranges", "controllerrevisions", "namespaces", "pods", "services",
                  "mutatingwebhookconfigurations", "validatingwebhookconfigurations",
                  "priorityclasses", "storageclasses"}
_NO_STATUS = {"configmaps", "secrets", "serviceaccounts", "endpoints", "events", "leases",
              "roles", "rolebindings", "clusterroles", "clusterrolebindings", "limitranges",
              "controllerrevisions", "mutatingwebhookconfigurations",
              "validatingwebhookconfigurations", "priorityclasses", "storageclasses",
              "networkpolicies"}


def _kind(kind: str) -> _Resource:
    """The stored kind of a kind name ("Deployment", "deployments", "ScaledObject", ...)."""
    key = kind.lower()
    res = _BY_KIND.get(key) or _BY_PLURAL.get(key)
    if res is None:
        raise LookupError(f"the test double stores no {kind}")
    return res
