"""The TradeLocker adapter against the real sandbox server, as a venue-suite implementation."""

from __future__ import annotations

from collections.abc import AsyncIterator

from engine.tradelocker.rest import ConnectionSettings
from tests.fixtures.tradelocker import started
from tests.tradelocker.sandbox import running_sandbox
from tests.venue_suite.conftest import Harness


async def sandbox_venue(order_transport: str) -> AsyncIterator[Harness]:
    """``order_transport``: "lean" or "aiohttp" (``ConnectionSettings.order_transport``)."""
    async with running_sandbox() as sandbox:
        venue = sandbox.venue(connection=ConnectionSettings(order_transport=order_transport))
        async with started(venue):
            yield Harness(venue, "acct", "EURUSD")
