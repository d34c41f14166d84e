# Copyright: tai-deploy contributors
"""Options shared by the vault_* modules: the init material file and how Vault is reached."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  init_file:
    description:
      - Encrypted (ansible-vault format) file holding the init material (unseal or recovery
        shards, the initial root token until it is revoked), written by M(vault_init_unseal).
    type: path
    required: true
  password_file:
    description: ansible-vault password file that encrypts O(init_file).
    type: path
    required: true
  ca_cert:
    description: CA certificate (PEM file) that signed the Vault listener's certificate.
    type: path
  port_forward:
    description:
      - How to reach Vault pods through C(kubectl port-forward). Required when a node is not
        a URL.
    type: dict
    suboptions:
      kubectl:
        description: Path of kubectl.
        type: path
        required: true
      namespace:
        description: Namespace of the Vault pods.
        type: str
        default: vault
      context:
        description: kubeconfig context of the cluster.
        type: str
      remote_port:
        description: Port of the Vault API in the pods.
        type: int
        default: 8200
      scheme:
        description: Scheme of the Vault listener.
        type: str
        choices: [http, https]
        default: https
      timeout:
        description: Seconds to wait for kubectl to start forwarding.
        type: float
        default: 30
  timeout:
    description: Timeout of one HTTP request, in seconds.
    type: float
    default: 10
"""
