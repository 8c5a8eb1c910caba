"""The engine (build_engine, the daemon's wiring) with ``[vault]`` config against the real OpenBao
server and the in-process sandbox: credentials from KV v2 through AppRole (and a token), the
rotated refresh token written back to Vault, a restart that resumes from it without a password
login, and a password rotated in Vault used by the next login without a restart."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hvac
import orjson
import pytest

from engine.app.daemon import Engine, build_engine
from engine.model.delivery import Delivery
from engine.model.events import OutcomeEvent
from sandbox import Sandbox
from tests.fixtures.vault import VaultServer
from tests.vault.engine_vault import (
    SECRET_ID_ENV,
    TOKEN_ENV,
    VaultLayout,
    provision,
    vault_engine_config,
)

pytestmark = pytest.mark.vault


@pytest.fixture
def root(vault: VaultServer) -> hvac.Client:
    return hvac.Client(url=vault.address, token=vault.root_token)


async def place(engine: Engine, sid: str) -> dict[str, Any]:
    outcomes: list[OutcomeEvent] = []
    engine.bus.subscribe(lambda t, e: outcomes.append(e) if isinstance(e, OutcomeEvent) else None)
    signal = {
        "id": sid,
        "account": "a1",
        "action": "place",
        "symbol": "EURUSD",
        "type": "market",
        "side": "buy",
        "qty": 0.01,
    }
    engine.pipeline.submit(Delivery(orjson.dumps(signal), 0))
    await engine.pipeline.drain()
    [outcome] = [o for o in outcomes if o.id == sid]
    return outcome


def saved_refresh_token(root: hvac.Client, layout: VaultLayout) -> str:
    data = root.secrets.kv.v2.read_secret_version(
        path=layout.session_path(), mount_point="secret", raise_on_deleted_version=True
    )
    return str(data["data"]["data"]["refresh_token"])


async def wait_for(cond: Callable[[], bool], what: str, limit_s: float = 30.0) -> None:
    # A hang guard for background work (Vault's change poll runs every 5 s), not a speed check.
    for _ in range(int(limit_s / 0.05)):
        if cond():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


async def test_engine_logs_in_with_approle_credentials_and_resumes_from_the_saved_refresh_token(
    vault: VaultServer,
    root: hvac.Client,
    sandbox: Sandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    layout = provision(root)
    monkeypatch.setenv(SECRET_ID_ENV, layout.secret_id)
    cfg = vault_engine_config(sandbox.base_url, tmp_path, vault, layout, approle=True)

    engine = await build_engine(cfg, with_control=False, sources=[])
    try:
        assert engine.secrets.logins == 1  # the AppRole login
        first = engine.venue.tokens["sb"].health()
        assert first.login_count == 1 and first.refresh_count == 0
        assert (await place(engine, "v1")).status == "accepted"
        written = saved_refresh_token(root, layout)
    finally:
        await engine.stop()

    engine = await build_engine(cfg, with_control=False, sources=[])
    try:
        resumed = engine.venue.tokens["sb"].health()
        # Resumed by refreshing the token the first run wrote back: no password login.
        assert resumed.login_count == 0 and resumed.refresh_count == 1
        assert (await place(engine, "v2")).status == "accepted"
        # Refresh tokens are single-use: the resume rotated it, and the new one is in Vault.
        assert saved_refresh_token(root, layout) != written
    finally:
        await engine.stop()


async def test_password_rotated_in_vault_is_used_by_the_next_login_without_a_restart(
    vault: VaultServer,
    root: hvac.Client,
    sandbox: Sandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="engine.tradelocker.factory")
    layout = provision(root)
    monkeypatch.setenv(TOKEN_ENV, vault.root_token)
    cfg = vault_engine_config(sandbox.base_url, tmp_path, vault, layout, approle=False)
    engine = await build_engine(cfg, with_control=False, sources=[])
    try:
        tokens = engine.venue.tokens["sb"]
        assert tokens.health().login_count == 1
        # The operator rotates the password at the venue, then in Vault.
        user = sandbox.config.users[0]
        user.password = "rotated-password-7f3"
        root.secrets.kv.v2.create_or_update_secret(
            path=layout.login_path(),
            secret={"email": user.email, "password": user.password, "server": user.server},
            mount_point="secret",
        )
        await wait_for(
            lambda: "password changed at the secret store" in caplog.text, "the change to arrive"
        )
        # Force a new login: the venue forgets every session the engine holds.
        sandbox.state.auth.revoke_refresh_tokens()
        sandbox.state.auth.expire_access_tokens()
        await tokens.refresh()
        health = tokens.health()
        assert health.login_count == 2, health
        assert (await place(engine, "v3")).status == "accepted"
    finally:
        await engine.stop()
