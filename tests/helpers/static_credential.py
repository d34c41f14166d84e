#!/usr/bin/env python3
"""TEST DOUBLE of the GKE credential plugin (scripts/tai-gke-token) for the rehearsal: prints a
client.authentication.k8s.io/v1 ExecCredential with the fixed token the Kubernetes API double
accepts (the real plugin, tested in tests/cores/test_gke_token.py, needs Google credentials)."""

import json
import sys

TOKEN = "rehearsal-token"

if __name__ == "__main__":
    json.dump({"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
               "status": {"token": TOKEN}}, sys.stdout)
