#!/usr/bin/python
# Copyright: tai-deploy contributors
"""Ansible module: keep a private CA and Vault's server certificate, encrypted at rest."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vault_tls
short_description: Keep a private CA and the Vault listener's server certificate, encrypted
description:
  - Creates a private CA (EC P-256, path length 0) once and issues the server certificate of
    the Vault listener. Both private keys and certificates are kept in O(dest), encrypted with
    ansible-vault and written atomically with mode 0600.
  - The server certificate is re-issued when it expires within O(renew_before_days), when its
    names differ from O(dns_names)/O(ip_addresses), or when it was not signed by the stored CA.
    The CA itself is kept, so clients that trust it keep working after a renewal.
  - The CA certificate (public) is also written to O(ca_cert_file) when given, for clients that
    verify Vault (the controller, the agents).
  - Returns only public data; private keys are never returned or printed.
version_added: "0.1.0"
author: tai-deploy contributors
requirements:
  - cryptography
  - PyYAML
options:
  dest:
    description: Encrypted file holding the CA and server keys and certificates.
    type: path
    required: true
  password_file:
    description: ansible-vault password file that encrypts O(dest).
    type: path
    required: true
  ca_cert_file:
    description: Where to write the CA certificate in plain text (it is public).
    type: path
  ca_common_name:
    description: Common name of the CA, created once.
    type: str
    required: true
  ca_validity_days:
    description: Lifetime of a newly created CA.
    type: int
    default: 3650
  common_name:
    description: Common name of the server certificate.
    type: str
    required: true
  dns_names:
    description: DNS names of the server certificate (subject alternative names).
    type: list
    elements: str
    required: true
  ip_addresses:
    description: IP addresses of the server certificate (C(127.0.0.1) for port-forward access).
    type: list
    elements: str
    default: []
  validity_days:
    description: Lifetime of an issued server certificate (capped by the CA's).
    type: int
    default: 365
  renew_before_days:
    description: Re-issue the server certificate when it expires within this many days.
    type: int
    default: 30
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
notes:
  - Runs on the controller.
"""

EXAMPLES = r"""
- name: Keep the CA and the server certificate of this region's Vault
  vault_tls:
    dest: "{{ vault_tls_file }}"
    password_file: "{{ vault_secrets_password_file }}"
    ca_cert_file: "{{ vault_api_ca_cert }}"
    ca_common_name: "TAI Vault CA (production, europe-west1)"
    common_name: vault.vault.svc
    dns_names: [vault, vault.vault.svc, "*.vault-internal"]
    ip_addresses: [127.0.0.1]
"""

RETURN = r"""
actions:
  description: What was done (empty when nothing changed).
  returned: always
  type: list
  elements: str
  sample: ["issue the server certificate (it expires on 2027-01-03)"]
ca_cert:
  description: The CA certificate, PEM (public).
  returned: always
  type: str
server_not_after:
  description: Expiry of the server certificate (ISO 8601, UTC).
  returned: always
  type: str
server_serial:
  description: Serial number of the server certificate, hexadecimal.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "dest": {"type": "path", "required": True},
            "password_file": {"type": "path", "required": True, "no_log": False},
            "ca_cert_file": {"type": "path"},
            "ca_common_name": {"type": "str", "required": True},
            "ca_validity_days": {"type": "int", "default": 3650},
            "common_name": {"type": "str", "required": True},
            "dns_names": {"type": "list", "elements": "str", "required": True},
            "ip_addresses": {"type": "list", "elements": "str", "default": []},
            "validity_days": {"type": "int", "default": 365},
            "renew_before_days": {"type": "int", "default": 30},
        },
        supports_check_mode=True,
    )
    # Imported once the argument spec is declared: ansible-lint's args rule executes this
    # file outside Ansible, where the project's module_utils are not importable.
    from ansible.module_utils.tai_deploy.vault_secrets import AnsibleVaultCipher, MaterialError
    from ansible.module_utils.tai_deploy.vault_tls import ServerSpec, ensure_tls

    p = module.params
    try:
        spec = ServerSpec(common_name=p["common_name"], dns_names=tuple(p["dns_names"]),
                          ip_addresses=tuple(p["ip_addresses"]),
                          validity_days=p["validity_days"],
                          renew_before_days=p["renew_before_days"])
        cipher = AnsibleVaultCipher.from_password_file(p["password_file"])
        result = ensure_tls(p["dest"], cipher, spec, ca_common_name=p["ca_common_name"],
                            ca_validity_days=p["ca_validity_days"],
                            ca_cert_file=p["ca_cert_file"], check=module.check_mode)
    except MaterialError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg=f"cannot write the TLS material: {exc.strerror}")
    except Exception as exc:
        # Anything else still goes through fail_json, which masks every secret registered so
        # far (no_log_values); a raw traceback would not.
        module.fail_json(msg=f"unexpected {type(exc).__name__} in vault_tls: {exc}")
    module.exit_json(changed=result.changed, actions=result.actions, ca_cert=result.ca_cert,
                     server_not_after=result.server_not_after,
                     server_serial=result.server_serial)


if __name__ == "__main__":
    main()
