# Copyright: tai-deploy contributors
"""How the project's Kubernetes modules reach the API server: kubernetes.core's auth options.

The names, types and aliases are those of kubernetes.core's k8s modules (its
plugins/module_utils/args_common.py AUTH_ARG_SPEC), so a task can move its connection options
between M(kubernetes.core.k8s) and these modules unchanged. Left out: username/password (basic
authentication, removed from Kubernetes), impersonation, no_proxy, proxy_headers and
persist_config.
"""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  kubeconfig:
    description:
      - Path of the kubeconfig. Default as kubectl - C(KUBECONFIG), then C(~/.kube/config).
    type: path
  context:
    description: kubeconfig context (default its current context).
    type: str
  host:
    description: URL of the API server, instead of a kubeconfig.
    type: str
    aliases: [api_server]
  api_key:
    description: Bearer token of O(host), or instead of the kubeconfig user's credentials.
    type: str
    aliases: [api_token]
  ca_cert:
    description: CA bundle that signs the API server's certificate (overrides the kubeconfig's).
    type: path
    aliases: [ssl_ca_cert]
  client_cert:
    description: Client certificate (PEM file), with O(client_key).
    type: path
    aliases: [cert_file]
  client_key:
    description: Key of O(client_cert) (PEM file).
    type: path
    aliases: [key_file]
  validate_certs:
    description:
      - Verify the API server's certificate. Default the kubeconfig's
        (C(insecure-skip-tls-verify)), or V(true) with O(host).
    type: bool
    aliases: [verify_ssl]
  proxy:
    description: HTTP proxy URL to reach the API server through (overrides the kubeconfig's).
    type: str
"""
