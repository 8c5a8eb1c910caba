"""Deadlines on queued requests (issue 4): a placement that waits for PLACE_ORDER budget past its
signal's max age leaves the queue unsent; cancels carry no deadline and still go out late. Driven
by a manual clock (no sleeps, no timing assertions)."""

from __future__ import annotations

import asyncio

import pytest

from engine.execution.limits import AccountLimiter
from engine.model.domain import Priority, RateLimit
from engine.model.errors import QueuedTooLong, Shed
from engine.tradelocker.rate_limits import RouteType
from tests.limits.manual_time import ManualTime

MS = 1_000_000
S = 1000 * MS
PLACE, MODIFY = RouteType.PLACE_ORDER, RouteType.MODIFY_ORDER


def limiter(t: ManualTime) -> AccountLimiter:
    # 2 per second on each route, all of it used: easy to empty by hand.
    limits = [RateLimit(PLACE, 2, 1.0), RateLimit(MODIFY, 2, 1.0)]
    return AccountLimiter("ftmo-1", limits, share=1.0, clock=t.clock, call_later=t.call_later)


def drain(lim: AccountLimiter, route: RouteType) -> None:
    while lim.try_acquire(route):
        pass


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_placement_queued_past_its_deadline_leaves_the_queue_unsent_with_the_wait() -> None:
    t = ManualTime()
    lim = limiter(t)
    drain(lim, PLACE)
    stale = asyncio.ensure_future(lim.acquire(PLACE, Priority.MARKET, t.now_ns + 150 * MS))
    later = asyncio.ensure_future(lim.acquire(PLACE, Priority.PENDING))
    await settle()
    assert lim.queued(PLACE) == 2

    t.advance(150 * MS)
    await settle()
    with pytest.raises(QueuedTooLong) as info:
        stale.result()
    assert isinstance(info.value, Shed)  # the pipeline's EXPIRED mapping applies to it
    assert info.value.waited_ms == 150
    assert info.value.reason == (
        "account ftmo-1: waited 150 ms for PLACE_ORDER budget, over max_signal_age_ms: not sent"
    )
    assert lim.queued(PLACE) == 1 and lim.queued() == 1
    stats = {s.route: s for s in lim.stats()}["PLACE_ORDER"]
    assert stats.expired == 1

    # The expired request spent no budget: the next refill goes to the one still waiting.
    t.advance(1 * S)
    await settle()
    assert later.done() and later.result() is None
    assert lim.queued() == 0


async def test_a_placement_granted_before_its_deadline_goes_out_and_its_timer_is_dropped() -> None:
    t = ManualTime()
    lim = limiter(t)
    drain(lim, PLACE)
    waiter = asyncio.ensure_future(lim.acquire(PLACE, Priority.MARKET, t.now_ns + 5 * S))
    await settle()
    t.advance(1 * S)  # the bucket refills long before the deadline
    await settle()
    assert waiter.result() is None
    assert t.next_due() is None  # no deadline timer left behind to fire later
    assert {s.route: s for s in lim.stats()}["PLACE_ORDER"].expired == 0


async def test_a_cancel_without_a_deadline_still_goes_out_however_late() -> None:
    t = ManualTime()
    lim = limiter(t)
    drain(lim, MODIFY)
    stale_modify = asyncio.ensure_future(lim.acquire(MODIFY, Priority.MODIFY, t.now_ns + 10 * MS))
    cancel = asyncio.ensure_future(lim.acquire(MODIFY, Priority.CANCEL))
    await settle()
    t.advance(10 * MS)
    await settle()
    assert isinstance(stale_modify.exception(), QueuedTooLong)
    assert not cancel.done()  # still waiting: no deadline of its own
    t.advance(1 * S)
    await settle()
    assert cancel.result() is None


async def test_a_request_that_must_queue_with_its_deadline_already_past_fails_at_the_call() -> None:
    t = ManualTime()
    lim = limiter(t)
    drain(lim, PLACE)
    with pytest.raises(QueuedTooLong, match="waited 0 ms for PLACE_ORDER budget"):
        lim.acquire(PLACE, Priority.MARKET, t.now_ns)
    assert lim.queued() == 0


async def test_a_cancelled_waiter_with_a_deadline_is_forgotten_cleanly() -> None:
    t = ManualTime()
    lim = limiter(t)
    drain(lim, PLACE)
    waiter = asyncio.ensure_future(lim.acquire(PLACE, Priority.MARKET, t.now_ns + 100 * MS))
    await settle()
    waiter.cancel()
    await settle()
    t.advance(100 * MS)  # the deadline passes after the cancel: nothing to expire
    await settle()
    assert {s.route: s for s in lim.stats()}["PLACE_ORDER"].expired == 0
    t.advance(1 * S)
    await settle()
    assert lim.queued() == 0
