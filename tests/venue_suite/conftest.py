"""The implementations the shared venue suite runs against, one fixture parameter each.

Every implementation is real: the in-process ``PaperVenue`` (publishing rate limits, so the gate
has routes to spend), and ``TradeLockerVenue`` built by its factory from TradeLocker settings, as
the daemon builds it, talking HTTP and the Streams API to the sandbox server (``sandbox``) on a
free 127.0.0.1 port, once per order transport (the lean pinned connections of
``engine.tradelocker.wire``, and aiohttp). A new venue joins by adding a parameter here
(docs/architecture.md, "How to add a venue").
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import pytest

from engine.model.domain import Instrument, RateLimit
from engine.venue.events import VenueStream
from engine.venue.paper import PaperVenue
from engine.venue.protocol import Venue

_tags = itertools.count()


@dataclass
class Harness:
    venue: Venue
    account: str
    symbol: str
    # The venue's stream sessions, if it streams over a connection of its own (TradeLocker).
    streams: Sequence[VenueStream] = field(default_factory=list)

    def tag(self, what: str) -> str:
        return f"vs{what[:10]}{next(_tags):06d}"

    async def instrument(self) -> Instrument:
        return await self.venue.instrument(self.account, self.symbol)

    async def touch(self, instrument: Instrument) -> tuple[float, float]:
        quote = await self.venue.quote(self.account, instrument)
        assert quote is not None, "the venue has no price for the suite's instrument"
        return quote

    async def streaming(self) -> None:
        """Until the venue's streams are live: what happens next is reported on events()."""
        async with asyncio.timeout(15):  # a hang guard; the wait ends on the stream's own event
            for stream in self.streams:
                await stream.wait_live()

    @staticmethod
    def on_tick(instrument: Instrument, price: float) -> float:
        tick = instrument.tick_for(price)
        return round(round(price / tick) * tick, 10)


PAPER_LIMITS = [RateLimit("orders", 50, 1.0), RateLimit("positions", 50, 1.0)]


async def _paper() -> AsyncIterator[Harness]:
    venue = PaperVenue(["acct"], rate_limits=PAPER_LIMITS)
    await venue.start()
    yield Harness(venue, "acct", "EURUSD")
    await venue.close()


async def _sandbox(order_transport: str) -> AsyncIterator[Harness]:
    from tests.venue_suite.sandbox import sandbox_venue  # only when the sandbox exists

    async for harness in sandbox_venue(order_transport):
        yield harness


IMPLEMENTATIONS = ["paper", "tradelocker-sandbox-lean", "tradelocker-sandbox-aiohttp"]


@pytest.fixture(params=IMPLEMENTATIONS)
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    name: str = request.param
    maker = _paper() if name == "paper" else _sandbox(name.rsplit("-", 1)[1])
    async for h in maker:
        yield h
