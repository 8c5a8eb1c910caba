"""The real sandbox REST app (engine.sim.app) on a free 127.0.0.1 port, for adapter tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web

from engine.sim.app import build_app
from engine.sim.seed import RATE_LIMIT_TYPES, RateLimit, SandboxConfig, default_users
from engine.sim.state import SandboxState
from engine.tradelocker.venue import AccountSpec, LoginSpec, TradeLockerVenue

EMAIL = "demo@sandbox.local"
PASSWORD = "demo-password"
SERVER = "SANDBOX"
ACCOUNT_IDS = ("700001", "700002")


@dataclass
class Sandbox:
    state: SandboxState
    base_url: str  # http://127.0.0.1:<port>/backend-api

    def login(self, name: str = "demo", **overrides: Any) -> LoginSpec:
        spec = LoginSpec(name, self.base_url, email=EMAIL, password=PASSWORD, server=SERVER)
        return replace(spec, **overrides)

    def venue(
        self, accounts: Sequence[AccountSpec] | None = None, **kwargs: Any
    ) -> TradeLockerVenue:
        accounts = accounts or [AccountSpec("acct", "demo", account_id=ACCOUNT_IDS[0])]
        return TradeLockerVenue([self.login()], accounts, **kwargs)

    def orders_tagged(self, account_id: str, tag: str) -> list[Any]:
        """Every order the sandbox holds with this strategyId, working or final (its own view)."""
        account = self.state.accounts[account_id]
        every = [*account.orders.values(), *account.history]
        return [o for o in every if o.strategy_id == tag]


@asynccontextmanager
async def running_sandbox(**config: Any) -> AsyncIterator[Sandbox]:
    """Start the sandbox; ``config`` overrides SandboxConfig fields (token lifetimes, ...).

    Rate limits are set far above what the tests send unless a test overrides them: these tests
    are about the adapter's behaviour, not the limiter's.
    """
    base = SandboxConfig(
        users=default_users(),
        price_interval_ms=0.0,
        rate_limits={name: RateLimit(100_000) for name in RATE_LIMIT_TYPES},
    )
    state = SandboxState(replace(base, **config))
    runner = web.AppRunner(build_app(state), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Sandbox(state, f"http://127.0.0.1:{port}/backend-api")
    finally:
        await runner.cleanup()
