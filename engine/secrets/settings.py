"""Where ``vault:`` secret references are read (read by ``engine.app.config``; each field's
default here is the only default)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class VaultSettings:
    """Vault / OpenBao, KV v2. The token and the AppRole secret id are themselves references
    (``env:`` or ``file:``), never written in the config."""

    address: str
    token: str | None = None
    role_id: str | None = None
    secret_id: str | None = None
    kv_mount: str = "secret"  # where refresh tokens are kept (references name their own mount)
    prefix: str = "tl-engine"  # refresh tokens live under <kv_mount>/<prefix>/sessions/<login>
    namespace: str | None = None  # Vault Enterprise namespace
