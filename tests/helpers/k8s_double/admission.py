"""Admission webhooks for pods, as the API server of the Kubernetes API TEST DOUBLE plays them.

Part of the Kubernetes API TEST DOUBLE (NOT Kubernetes): a pod the Deployment or StatefulSet
controller would create is refused while a matching Mutating- or
ValidatingWebhookConfiguration with ``failurePolicy: Fail`` has no available endpoint (the API
server's InternalError "failed calling webhook"; the Deployment reports
ReplicaFailure/FailedCreate, the StatefulSet a FailedCreate event) and created once it has one;
no webhook is ever called.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .kube_proxy import KubeProxy


def _rule_matches_pod_create(rule: Mapping[str, Any]) -> bool:
    """A webhook rule (admissionregistration/v1 RuleWithOperations) that covers pod CREATE."""
    def has(key: str, value: str) -> bool:
        return any(v in (value, "*") for v in rule.get(key) or [])
    return (has("operations", "CREATE") and has("apiGroups", "") and has("apiVersions", "v1")
            and any(r in ("pods", "*", "*/*") for r in rule.get("resources") or [])
            and rule.get("scope", "*") in ("*", "Namespaced"))


def _selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A metav1.LabelSelector (matchLabels, matchExpressions with In, NotIn, Exists,
    DoesNotExist) against labels; an absent or empty selector matches everything."""
    if not selector:
        return True
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


class Admission(KubeProxy):
    """The API server's admission of the pods the controllers create."""

    # -- admission webhooks --------------------------------------------------------------

    def _admission_refusal(self, ns: str, pod_meta: Mapping[str, Any]) -> str | None:
        """Why the API server refuses to create a pod in ``ns`` with these labels, or None.

        Admission as the API server plays it for registered webhooks (Kubernetes docs,
        "Dynamic Admission Control": https://kubernetes.io/docs/reference/access-authn-authz/
        extensible-admission-controllers/): a webhook of a Mutating- or
        ValidatingWebhookConfiguration is called for a pod CREATE when one of its ``rules``
        matches (operations, apiGroups, apiVersions, resources, with ``*``), its
        ``namespaceSelector`` matches the namespace's labels and its ``objectSelector`` the
        pod's labels (both label selectors; absent or empty match everything). A webhook whose
        Service has no available endpoint cannot be called; with ``failurePolicy: Fail`` (the
        v1 default) "an error calling the webhook causes the admission to fail and the API
        request to be rejected", with ``Ignore`` the pod is created without it. The message is
        the API server's (an InternalError, "failed calling webhook"). The double calls no
        webhook: a reachable one admits the pod unchanged; ``clientConfig.url`` webhooks are
        taken as reachable.
        """
        namespace = self._objects.get(("namespaces", "", ns)) or {}
        ns_labels = (namespace.get("metadata") or {}).get("labels") or {}
        labels = pod_meta.get("labels") or {}
        for (q, _, _), obj in sorted(self._objects.items()):
            if q not in ("mutatingwebhookconfigurations.admissionregistration.k8s.io",
                         "validatingwebhookconfigurations.admissionregistration.k8s.io"):
                continue
            for hook in obj.get("webhooks") or []:
                if not (any(_rule_matches_pod_create(r) for r in hook.get("rules") or [])
                        and _selector_matches(hook.get("namespaceSelector"), ns_labels)
                        and _selector_matches(hook.get("objectSelector"), labels)):
                    continue
                service = (hook.get("clientConfig") or {}).get("service")
                if not service:
                    continue
                problem = self._webhook_service_problem(service)
                if problem is None or hook.get("failurePolicy", "Fail") == "Ignore":
                    continue
                url = (f"https://{service['name']}.{service['namespace']}.svc:"
                       f"{service.get('port', 443)}{service.get('path', '')}"
                       f"?timeout={hook.get('timeoutSeconds', 10)}s")
                return (f'Internal error occurred: failed calling webhook "{hook.get("name")}": '
                        f'failed to call webhook: Post "{url}": {problem}')
        return None

    def _webhook_service_problem(self, service: Mapping[str, Any]) -> str | None:
        svc_ns, svc_name = str(service.get("namespace")), str(service.get("name"))
        svc = self._objects.get(("services", svc_ns, svc_name))
        if svc is None:
            return f'service "{svc_name}" not found'
        selector = (svc.get("spec") or {}).get("selector") or {}
        if not any(pods.ready + pods.old_ready > 0 for _, pods in self._selected(svc_ns,
                                                                                selector)):
            return f'no endpoints available for service "{svc_name}"'
        return None
