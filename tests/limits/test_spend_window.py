"""A newly owned account's budget starts spent (docs/kafka.md, "Handover"): after
``AccountLimiter.spend_window()`` no route grants a request for one full window, a request
queued then is granted once the window has passed, and only then. Driven by a manual clock."""

from __future__ import annotations

import asyncio

from engine.execution.limits import AccountLimiter
from engine.model.domain import Priority, RateLimit
from engine.tradelocker.rate_limits import RouteType
from tests.limits.manual_time import ManualTime

MS = 1_000_000
PLACE, READ = RouteType.PLACE_ORDER, RouteType.GET_ORDERS


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_spend_window_holds_every_route_for_one_window_then_grants() -> None:
    t = ManualTime()
    limits = [RateLimit(PLACE, 5, 1.0), RateLimit(READ, 2, 1.0)]
    lim = AccountLimiter("acct", limits, share=1.0, clock=t.clock, call_later=t.call_later)
    assert lim.utilisation(PLACE) == 0.0 and lim.utilisation(READ) == 0.0  # full buckets

    lim.spend_window()
    assert not lim.try_acquire(PLACE)
    assert not lim.try_acquire(READ)
    waiting = asyncio.ensure_future(lim.acquire(READ, Priority.PENDING))
    await settle()
    assert not waiting.done()

    t.advance(999 * MS)
    await settle()
    assert not waiting.done(), "granted inside the window the old owner may still fill"
    t.advance(1 * MS)
    await settle()
    assert waiting.done()
    assert lim.try_acquire(PLACE)
