"""The TradeLocker adapter against the real sandbox server (REST and Streams API), as a
venue-suite implementation, built the way the daemon builds it: by its factory, from the
TradeLocker part of the config and a secret store."""

from __future__ import annotations

from collections.abc import AsyncIterator

from engine.execution.settings import AccountSettings
from engine.secrets.store import EnvFileStore
from engine.tradelocker.factory import TradeLockerFactory
from engine.tradelocker.settings import ConnectionSettings, LoginConfig
from sandbox.seed import RATE_LIMIT_TYPES, RateLimit, SandboxConfig, default_users
from tests.fixtures.sim import DEMO_ACCOUNT_IDS, DEMO_EMAIL, DEMO_PASSWORD, DEMO_SERVER
from tests.stream.sandbox import run_streams_sandbox
from tests.venue_suite.conftest import Harness


async def sandbox_venue(order_transport: str) -> AsyncIterator[Harness]:
    """``order_transport``: "lean" or "aiohttp" (``ConnectionSettings.order_transport``)."""
    # Limits far above what the suite sends: it is about the venue's behaviour, not the limiter's.
    config = SandboxConfig(
        users=default_users(), rate_limits={name: RateLimit(100_000) for name in RATE_LIMIT_TYPES}
    )
    async with run_streams_sandbox(config) as sb:
        secrets = EnvFileStore(
            environ={"SB_EMAIL": DEMO_EMAIL, "SB_PASSWORD": DEMO_PASSWORD, "SB_KEY": sb.api_key}
        )
        await secrets.start()
        login = LoginConfig(
            "demo",
            sb.http_url,
            DEMO_SERVER,
            "env:SB_EMAIL",
            "env:SB_PASSWORD",
            developer_api_key="env:SB_KEY",
            stream_url=sb.url,
        )
        factory = TradeLockerFactory(
            {"demo": login},
            [AccountSettings("acct", "demo", account_id=DEMO_ACCOUNT_IDS[0])],
            secrets,
            connection=ConnectionSettings(order_transport=order_transport),
        )
        venue = await factory.venue()
        await venue.start()
        streams = await factory.streams()
        try:
            for stream in streams:
                await stream.start()
            yield Harness(venue, "acct", "EURUSD", streams)
        finally:
            for stream in streams:
                await stream.close()
            await venue.close()
            await secrets.close()
