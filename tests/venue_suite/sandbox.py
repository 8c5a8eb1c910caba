"""The TradeLocker adapter against the real sandbox server, as a venue-suite implementation."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.tradelocker.sandbox import running_sandbox
from tests.venue_suite.conftest import Harness


async def sandbox_venue(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    async with running_sandbox() as sandbox:
        venue = sandbox.venue()
        await venue.start()
        try:
            yield Harness(venue, "acct", "EURUSD")
        finally:
            await venue.close()
