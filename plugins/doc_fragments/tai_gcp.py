# Copyright: tai-deploy contributors
"""Options shared by the modules that call Google Cloud REST APIs: credentials and retries."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  auth_kind:
    description:
      - C(application) uses Application Default Credentials (C(google.auth.default())).
      - C(serviceaccount) uses the key file O(service_account_file).
      - C(none) sends anonymous requests and is refused unless O(api_endpoint) is a loopback
        address; it exists for test doubles of the API.
    type: str
    choices: [application, serviceaccount, none]
    default: application
  service_account_file:
    description: Service account key (JSON) for O(auth_kind=serviceaccount).
    type: path
  retries:
    description: Attempts per request when the API answers 429 or 5xx or cannot be reached.
    type: int
    default: 5
  retry_base_delay:
    description: First back-off in seconds; it doubles with each retry, up to 32 s.
    type: float
    default: 1.0
"""
