"""The implementations the shared venue suite runs against, one fixture parameter each.

Every implementation is real: the in-process ``PaperVenue``, and ``TradeLockerVenue`` talking HTTP
to the sandbox server (``sandbox``) on a free 127.0.0.1 port, once per order transport (the lean
pinned connections of ``engine.tradelocker.wire``, and aiohttp).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from engine.model.domain import Instrument
from engine.venue.paper import PaperVenue

_tags = itertools.count()


@dataclass
class Harness:
    venue: Any  # a Venue that also has quote() and find_by_tag()
    account: str
    symbol: str

    def tag(self, what: str) -> str:
        return f"vs{what[:10]}{next(_tags):06d}"

    async def instrument(self) -> Instrument:
        return await self.venue.instrument(self.account, self.symbol)  # type: ignore[no-any-return]

    async def touch(self, instrument: Instrument) -> tuple[float, float]:
        quote = await self.venue.quote(self.account, instrument)
        assert quote is not None, "the venue has no price for the suite's instrument"
        return quote  # type: ignore[no-any-return]

    @staticmethod
    def on_tick(instrument: Instrument, price: float) -> float:
        tick = instrument.tick_for(price)
        return round(round(price / tick) * tick, 10)


async def _paper() -> AsyncIterator[Harness]:
    venue = PaperVenue(["acct"])
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
