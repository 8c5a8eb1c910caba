"""The engine (build_engine) with its credentials in the real OpenBao server: KV v2 layout,
an AppRole with the engine's narrow policy, and the config that points the engine at them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hvac

from engine.app.config import Config, parse_config
from tests.fixtures.engine import engine_config_data
from tests.fixtures.sim import DEMO_EMAIL, DEMO_PASSWORD, DEMO_SERVER
from tests.fixtures.vault import VaultServer, enable_approle

SECRET_ID_ENV = "TL_TEST_VAULT_SECRET_ID"
TOKEN_ENV = "TL_TEST_VAULT_TOKEN"


@dataclass(frozen=True, slots=True)
class VaultLayout:
    prefix: str  # secret/<prefix>/logins/sb holds the credentials
    role_id: str
    secret_id: str

    def login_path(self) -> str:
        return f"{self.prefix}/logins/sb"

    def session_path(self) -> str:
        return f"{self.prefix}/sessions/sb"


def provision(
    root: hvac.Client, password: str = DEMO_PASSWORD, developer_api_key: str | None = None
) -> VaultLayout:
    """Credentials under a fresh prefix, and an AppRole that may read them and write sessions."""
    prefix = f"tl-{uuid.uuid4().hex[:8]}"
    fields = {"email": DEMO_EMAIL, "password": password, "server": DEMO_SERVER}
    if developer_api_key is not None:
        fields["developer_api_key"] = developer_api_key
    root.secrets.kv.v2.create_or_update_secret(
        path=f"{prefix}/logins/sb", secret=fields, mount_point="secret"
    )
    enable_approle(root)
    root.sys.create_or_update_policy(
        name=f"engine-{prefix}",
        policy=f'path "secret/data/{prefix}/logins/*" {{ capabilities = ["read"] }}\n'
        f'path "secret/metadata/{prefix}/logins/*" {{ capabilities = ["read"] }}\n'
        f'path "secret/data/{prefix}/sessions/*" '
        '{ capabilities = ["create", "update", "read"] }\n',
    )
    root.auth.approle.create_or_update_approle(
        role_name=prefix, token_policies=[f"engine-{prefix}"], token_ttl="1h"
    )
    role_id = root.auth.approle.read_role_id(prefix)["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id(prefix)["data"]["secret_id"]
    return VaultLayout(prefix, role_id, secret_id)


def vault_engine_config(
    sandbox_url: str,
    tmp_path: Path,
    vault: VaultServer,
    layout: VaultLayout,
    *,
    approle: bool = True,
    with_api_key: bool = False,
    **engine: Any,
) -> Config:
    """Every credential a ``vault:`` reference; the Vault secret id (or token) an ``env:`` one."""
    ref = f"vault:secret/{layout.login_path()}#"
    login: dict[str, Any] = {
        "email": ref + "email",
        "password": ref + "password",
    }
    if with_api_key:
        login["developer_api_key"] = ref + "developer_api_key"
    auth = (
        {"role_id": layout.role_id, "secret_id": f"env:{SECRET_ID_ENV}"}
        if approle
        else {"token": f"env:{TOKEN_ENV}"}
    )
    data = engine_config_data(sandbox_url, tmp_path, login=login, groups=False, **engine)
    data["vault"] = {"address": vault.address, "prefix": layout.prefix, **auth}
    return parse_config(data)
