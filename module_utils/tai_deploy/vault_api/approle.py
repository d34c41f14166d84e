"""The controller's AppRole identity: login, secret-id issue and retirement."""

from __future__ import annotations

from .client import VaultClient, VaultError, refusal, response_data


def approle_login(client: VaultClient, auth_path: str, role_id: str, secret_id: str) -> str:
    """A token from auth/<auth_path>/login; one sentence (no credential) when refused."""
    code, data = client.call("POST", f"auth/{auth_path}/login",
                             {"role_id": role_id, "secret_id": secret_id})
    token = ((data.get("auth") or {}).get("client_token")) if code == 200 else None
    if not token:
        raise VaultError(refusal(client.addr, "POST", f"auth/{auth_path}/login", code, data)
                         + "; the controller identity of the init material file was refused "
                         "(revoked or of another cluster): re-issue it with the break-glass "
                         "procedure of docs/runbooks/vault.md")
    return str(token)


def issue_secret_id(client: VaultClient, auth_path: str, role_name: str
                    ) -> tuple[str, str, str]:
    """(role id, new secret id, its accessor) of an AppRole role."""
    role = response_data(client.request("GET", f"auth/{auth_path}/role/{role_name}/role-id"))
    issued = response_data(client.request("POST",
                                          f"auth/{auth_path}/role/{role_name}/secret-id", {}))
    role_id, secret_id = str(role.get("role_id") or ""), str(issued.get("secret_id") or "")
    if not role_id or not secret_id:
        raise VaultError(f"Vault at {client.addr} issued no role id or secret id for "
                         f"auth/{auth_path}/role/{role_name}")
    return role_id, secret_id, str(issued.get("secret_id_accessor") or "")


def destroy_other_secret_ids(client: VaultClient, auth_path: str, role_name: str,
                             keep_accessor: str) -> int:
    """Destroy every secret id of the role but keep_accessor (a re-issue retires the old ones)."""
    code, data = client.call("LIST", f"auth/{auth_path}/role/{role_name}/secret-id")
    if code == 404:
        return 0
    if code != 200:
        raise VaultError(refusal(client.addr, "LIST",
                                 f"auth/{auth_path}/role/{role_name}/secret-id", code, data))
    destroyed = 0
    for accessor in response_data(data).get("keys") or []:
        if accessor != keep_accessor:
            client.request("POST", f"auth/{auth_path}/role/{role_name}/secret-id-accessor/"
                           "destroy", {"secret_id_accessor": accessor})
            destroyed += 1
    return destroyed

