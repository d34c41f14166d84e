"""TEST DOUBLE of a Kubernetes API server, for tai-deploy's blue-green tests only.

It is NOT Kubernetes and must never be mistaken for one. It exists because no kube-apiserver
can run on these machines, and it imitates just enough of one, on loopback, for the
blue-green swap module, kubectl and the Kubernetes Python client (what kubernetes.core uses)
to talk to it through the real REST paths and JSON:

- discovery: ``/version``, ``/api``, ``/api/v1``, ``/apis``, ``/apis/apps``,
  ``/apis/apps/v1`` (legacy discovery documents; aggregated discovery is not offered, so
  clients fall back to the legacy form as they do with older servers);
- ``/apis/apps/v1/namespaces/{ns}/deployments[/{name}[/status|/scale]]`` and
  ``/api/v1/namespaces/{ns}/services[/{name}[/status]]`` (GET, LIST with label/field
  selectors, POST, PUT, PATCH as JSON merge patch, JSON patch or a simplified strategic merge
  patch, DELETE), cluster-wide lists, and read-only namespaces;
- Leases, ``/apis/coordination.k8s.io/v1/namespaces/{ns}/leases[/{name}]`` (what clients
  use as a lock, like client-go's leader election): stored, defaulted (nothing to default)
  and validated with kubernetes-validate like Deployments and Services; no generation and no
  status, as the API server keeps none for them (API reference: Lease v1 coordination.k8s.io);
- KEDA ScaledObjects, ``/apis/keda.sh/v1alpha1/namespaces/{ns}/scaledobjects[/{name}]``,
  stored and served like the other kinds (the same verbs, resourceVersion and 409 rules) but
  checked only structurally, as the CRD has no offline schema here (names, labels, string
  annotations, ``spec.scaleTargetRef.name``, ``spec.triggers`` a list). The double does not
  play KEDA: nothing scales a Deployment because of a ScaledObject;
- every stored object is defaulted like the API server does for the fields that matter here,
  checked for what the server's own validation refuses (selector/template label mismatch,
  immutable selector and clusterIP, label syntax, names) and validated with
  kubernetes-validate in strict mode. Unknown or mistyped fields are answered 400 BadRequest
  ("strict decoding error", what a real server says under ``fieldValidation=Strict``; the
  double is always strict), other schema violations 422 Invalid, both with a Status body;
- resourceVersion is bumped on every real change (not on no-op updates); a write carrying a
  stale ``metadata.resourceVersion`` is refused with 409 Conflict and the real message;
  ``metadata.generation`` of a Deployment is bumped when its spec changes;
- it plays the Deployment controller: a new generation is observed after ``observe_delay``;
  new pods become ready after a delay (or never), the old template's ready pods stay until the
  new ones are all ready, status counts and the Available/Progressing conditions follow,
  ProgressDeadlineExceeded is reported after ``spec.progressDeadlineSeconds``;
- it plays admission webhooks for pods: a pod the Deployment or StatefulSet controller would
  create is refused while a matching Mutating- or ValidatingWebhookConfiguration with
  ``failurePolicy: Fail`` has no available endpoint (the API server's InternalError "failed
  calling webhook"; the Deployment reports ReplicaFailure/FailedCreate, the StatefulSet a
  FailedCreate event) and created once it has one; no webhook is ever called;
- it plays cert-manager's controller minimally: a Certificate whose issuer exists gets its
  kubernetes.io/tls Secret and Ready=True (``certificates_issued = False``: orders that never
  complete); nothing is asked of any ACME server;
- it plays the pods and kube-proxy: each Deployment with pods runs a real grpcio server with
  the standard health service on loopback (status driven by a Behaviour chosen from the image
  tag), and each Service with a port named ``grpc`` gets a loopback TCP proxy that, like
  kube-proxy, picks a backend among the Deployments its selector matches that have available
  pods when a connection is opened. Connections already open stay where they are after a
  selector change, exactly the draining problem of gRPC's long-lived HTTP/2 connections.

Image tag conventions of ``behaviour_for_tag`` (tests may pass their own function): a tag
ending in ``-never`` never becomes available; ``-sick`` becomes available but answers
NOT_SERVING; ``-fail-after-swap`` answers SERVING until a non-preview Service has selected it
for ``fail_after`` seconds, then NOT_SERVING; ``-flap`` alternates; ``-slow`` takes 2 s to
become ready. Anything else is healthy.

Fault injection for tests: ``add_fault(Fault(...))`` makes the Nth matching request(s)
(``skip`` the first ones) answer an error (any status: a 500 InternalError, a 429
TooManyRequests with a ``Retry-After`` header, ...), close the connection before or after
applying the request, reset it (TCP RST, what a client sees as "connection reset by peer"),
answer only after a delay (before or after the request is applied), or (``touch``) have
"somebody else" modify the object first so that the request meets a genuine 409.

The modules, one part each (``KubeApiDouble`` mixes them over one shared state):

- ``double.py``: ``KubeApiDouble``, its lifecycle (``start``/``stop``, the controllers' loop)
  and what tests call to seed, read and wait;
- ``state.py``: the state every part shares (stored objects, counters, pods, proxies, faults,
  records) and the loopback address;
- ``server.py``: the HTTP front end (the loopback server and its handler, TLS, ``handle``,
  watches, the request log);
- ``routing.py``: a request's method and path to discovery, the store or one object's verbs
  (``_route``, ``_dispatch``, ``_item``);
- ``faults.py``: ``Fault`` and the matching of faults against requests;
- ``discovery.py``: ``/version``, ``/api``, ``/apis``, ``/openapi/v3``;
- ``store.py``: create, update, list, resourceVersion, defaults, side effects of a write;
- ``kinds.py`` and ``resources.py``: the kinds served (built-ins, and those CRDs register);
- ``validation.py``: what the API server refuses (kubernetes-validate, CRD schemas, its own
  rules);
- ``patches.py`` and ``protobuf.py``: the patch formats and the protobuf request bodies;
- ``deployments.py``, ``workloads.py``, ``cert_manager.py``, ``admission.py``: the
  controllers played and the admission of their pods;
- ``pods.py``, ``kube_proxy.py``, ``behaviour.py``: the pods' gRPC servers, kube-proxy and the
  image-tag conventions;
- ``pod_exec.py``: the ``pods/{name}/exec`` subresource (a WebSocket upgrade with the
  ``v4``/``v5.channel.k8s.io`` streams); what a command does is a handler each test registers
  per pod (``double.exec.register``), as no container runs here;
- ``common.py``: the error answer (a Status body) and the timestamps.

A new kind is a row of ``_BUILTINS`` (resources.py); a new subresource is named in its kind's
``subresources`` and answered in ``_item`` (routing.py); a streaming or upgraded connection
(like a watch) branches off in ``handle`` (server.py) before ``_dispatch``; a new controller is
a mixin called from ``_controller`` (double.py).
"""

from .behaviour import NOT_SERVING, SERVING, Behaviour, behaviour_for_tag, image_tag
from .double import KubeApiDouble
from .faults import Fault
from .patches import APPLY_PATCH, apply_patch, json_patch, merge_patch, strategic_merge_patch
from .protobuf import PROTOBUF, decode_protobuf
from .resources import (
    CRDS,
    DEPLOYMENTS,
    LEASES,
    NAMESPACES,
    PODS,
    SCALEDOBJECTS,
    SECRETS,
    SERVICES,
)
from .server import RequestRecord

__all__ = [
    "APPLY_PATCH",
    "CRDS",
    "DEPLOYMENTS",
    "LEASES",
    "NAMESPACES",
    "NOT_SERVING",
    "PODS",
    "PROTOBUF",
    "SCALEDOBJECTS",
    "SECRETS",
    "SERVICES",
    "SERVING",
    "Behaviour",
    "Fault",
    "KubeApiDouble",
    "RequestRecord",
    "apply_patch",
    "behaviour_for_tag",
    "decode_protobuf",
    "image_tag",
    "json_patch",
    "merge_patch",
    "strategic_merge_patch",
]
