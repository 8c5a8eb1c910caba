"""The real sandbox REST app (sandbox.app) on a free 127.0.0.1 port, for adapter tests: plain
HTTP or TLS, with the rate limits out of the way unless a test sets them."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from engine.tradelocker.venue import AccountSpec, LoginSpec, TradeLockerVenue
from sandbox.app import build_app
from sandbox.seed import RATE_LIMIT_TYPES, RateLimit, SandboxConfig, default_users
from sandbox.state import SandboxState
from tests.fixtures.sim import DEMO_ACCOUNT_IDS as ACCOUNT_IDS
from tests.fixtures.sim import DEMO_EMAIL as EMAIL
from tests.fixtures.sim import DEMO_PASSWORD as PASSWORD
from tests.fixtures.sim import DEMO_SERVER as SERVER
from tests.fixtures.tradelocker import demo_login, demo_venue

__all__ = ["ACCOUNT_IDS", "EMAIL", "PASSWORD", "SERVER", "Sandbox", "running_sandbox"]


@dataclass
class Sandbox:
    state: SandboxState
    base_url: str  # http(s)://127.0.0.1:<port>/backend-api

    def login(self, name: str = "demo", **overrides: Any) -> LoginSpec:
        return demo_login(self.base_url, name, **overrides)

    def venue(
        self, accounts: Sequence[AccountSpec] | None = None, **kwargs: Any
    ) -> TradeLockerVenue:
        return demo_venue(self.base_url, accounts, **kwargs)

    def orders_tagged(self, account_id: str, tag: str) -> list[Any]:
        """Every order the sandbox holds with this strategyId, working or final (its own view)."""
        account = self.state.accounts[account_id]
        every = [*account.orders.values(), *account.history]
        return [o for o in every if o.strategy_id == tag]


@asynccontextmanager
async def running_sandbox(
    *,
    ssl_context: ssl.SSLContext | None = None,
    keepalive_timeout: float = 75.0,
    middlewares: Sequence[Middleware] = (),
    **config: Any,
) -> AsyncIterator[Sandbox]:
    """Start the sandbox; ``config`` overrides SandboxConfig fields (token lifetimes, ...);
    ``ssl_context`` serves it over TLS; ``keepalive_timeout`` is its idle keep-alive limit;
    ``middlewares`` run before the sandbox's own (a test reading what reached the server).

    Rate limits are set far above what the tests send unless a test overrides them: these tests
    are about the adapter's behaviour, not the limiter's.
    """
    base = SandboxConfig(
        users=default_users(),
        price_interval_ms=0.0,
        rate_limits={name: RateLimit(100_000) for name in RATE_LIMIT_TYPES},
    )
    state = SandboxState(replace(base, **config))
    app = build_app(state)
    app.middlewares[:0] = middlewares
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=keepalive_timeout)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    scheme = "https" if ssl_context is not None else "http"
    try:
        yield Sandbox(state, f"{scheme}://127.0.0.1:{port}/backend-api")
    finally:
        await runner.cleanup()
