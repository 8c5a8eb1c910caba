"""The per-account rate limiter, driven by a manual clock (no sleeps, no timing assertions)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from engine.execution.limits import AccountLimiter, RouteStats, default_priority
from engine.model.domain import Action, OrderType, Priority, RateLimit
from engine.model.errors import Shed
from engine.tradelocker.rate_limits import RouteType, parse_rate_limits, routes_for
from tests.limits.manual_time import ManualTime

S = 1_000_000_000
PLACE = RouteType.PLACE_ORDER
CONFIG = [
    {"rateLimitType": "PLACE_ORDER", "measure": "SECONDS", "intervalNum": 1, "limit": 10},
    {"rateLimitType": "MODIFY_ORDER", "measure": "SECONDS", "intervalNum": 1, "limit": 5},
    {"rateLimitType": "GET_ORDERS", "measure": "MINUTES", "intervalNum": 1, "limit": 60},
    {"rateLimitType": "SOMETHING_NEW", "measure": "SECONDS", "intervalNum": 1, "limit": 1},
]


def limiter(t: ManualTime, **kw: object) -> AccountLimiter:
    return AccountLimiter(
        "ftmo-1",
        parse_rate_limits(CONFIG),
        routes=routes_for,
        clock=t.clock,
        call_later=t.call_later,
        **kw,  # type: ignore[arg-type]
    )


def route_stats(lim: AccountLimiter, name: str) -> RouteStats:
    return {s.route: s for s in lim.stats()}[name]


async def spend(lim: AccountLimiter, route: str, priority: Priority) -> None:
    """One request through the gate: granted, sent, answered at once (its token is released)."""
    await lim.acquire(route, priority)
    lim.release(route)


async def settle() -> None:
    """Let the tasks whose futures were just resolved run (a yield, not a wait for time)."""
    for _ in range(5):
        await asyncio.sleep(0)


def test_default_priorities_by_action_are_the_engines() -> None:
    assert default_priority(Action.CANCEL) is Priority.CANCEL
    assert default_priority(Action.PLACE, OrderType.MARKET) is Priority.MARKET
    assert default_priority(Action.PLACE, OrderType.LIMIT) is Priority.PENDING
    assert default_priority(Action.MODIFY) is Priority.MODIFY


async def test_the_gate_spends_the_routes_the_venue_names_for_each_action() -> None:
    """Route keys are the venue's own: a venue with one "trading" route for every order call."""
    t = ManualTime()
    table = {Action.PLACE: ("trading",), Action.CANCEL: ("trading",)}
    lim = AccountLimiter(
        "v-1",
        [RateLimit("trading", 2, 1.0)],
        routes=lambda action: table.get(action, ()),
        share=1.0,
        clock=t.clock,
        call_later=t.call_later,
    )
    assert lim.routes_for(Action.PLACE) == ("trading",)
    for route in lim.routes_for(Action.PLACE):
        await spend(lim, route, Priority.MARKET)
    for route in lim.routes_for(Action.CANCEL):
        await spend(lim, route, Priority.CANCEL)
    assert not lim.try_acquire("trading")  # both spent the one published budget
    assert lim.action_utilisation(Action.PLACE) == 1.0
    # An action the venue charges to no route has one of its own: never gated by a budget...
    (close,) = lim.routes_for(Action.CLOSE)
    assert lim.try_acquire(close) and lim.try_acquire(close)
    # ...but paused like any other after a 429 on it.
    lim.on_rate_limited(close, retry_after_s=1.0)
    assert not lim.try_acquire(close)
    t.advance(S)
    assert lim.try_acquire(close) and lim.try_acquire("trading")


async def test_free_token_is_granted_without_suspending() -> None:
    t = ManualTime()
    lim = limiter(t)
    waiter = lim.acquire(PLACE, Priority.MARKET)
    assert not isinstance(waiter, asyncio.Future)  # nothing was queued or scheduled
    await waiter
    assert t.next_due() is None
    assert lim.acquire(PLACE, Priority.MARKET) is waiter  # the same completed awaitable


async def test_burst_of_ten_times_the_limit_is_spread_at_the_limit() -> None:
    t = ManualTime()
    lim = limiter(t)  # PLACE_ORDER 10/s, 90 % of it used: 9 tokens per second
    sent: list[int] = []

    async def place() -> None:
        await spend(lim, PLACE, Priority.MARKET)
        sent.append(t.now_ns)

    tasks = [asyncio.create_task(place()) for _ in range(100)]
    await settle()
    for _ in range(400):  # up to 20 s of manual time, in 50 ms steps
        if len(sent) == 100:
            break
        t.advance(S // 20)
        await settle()
    assert len(sent) == 100
    await asyncio.gather(*tasks)
    # Never more than the venue's 10 in any one-second window, and in fact at most 9 (90 % of it).
    for i, start in enumerate(sent):
        assert sum(1 for u in sent[i:] if u < start + S) <= 9
    # And the budget is used: 100 orders at 9/s take a little over 11 s, not much more.
    assert 10 * S <= sent[-1] - sent[0] <= 12 * S


async def test_market_orders_overtake_queued_pending_orders() -> None:
    t = ManualTime()
    lim = limiter(t)
    for _ in range(9):
        await spend(lim, PLACE, Priority.MARKET)  # drain the bucket
    order: list[str] = []

    async def place(name: str, prio: Priority) -> None:
        await spend(lim, PLACE, prio)
        order.append(name)

    tasks = [asyncio.create_task(place(f"pending-{i}", Priority.PENDING)) for i in range(3)]
    await settle()
    tasks += [asyncio.create_task(place(f"market-{i}", Priority.MARKET)) for i in range(2)]
    tasks.append(asyncio.create_task(place("cancel", Priority.CANCEL)))
    await settle()
    assert order == [] and lim.queued() == 6
    t.advance(2 * S)
    await settle()
    await asyncio.gather(*tasks)
    assert order == ["cancel", "market-0", "market-1", "pending-0", "pending-1", "pending-2"]


async def test_routes_have_independent_budgets() -> None:
    t = ManualTime()
    lim = limiter(t)
    for _ in range(9):
        await spend(lim, PLACE, Priority.MARKET)
    assert not lim.try_acquire(PLACE)
    assert lim.try_acquire(RouteType.MODIFY_ORDER)
    assert lim.try_acquire(RouteType.GET_POSITIONS)  # no published limit: not gated


async def test_full_queue_sheds_the_least_urgent_with_a_clear_reason() -> None:
    t = ManualTime()
    lim = limiter(t, max_queue=2)
    for _ in range(9):
        await spend(lim, PLACE, Priority.MARKET)
    for _ in range(5):
        await spend(lim, RouteType.MODIFY_ORDER, Priority.MODIFY)
    pending = lim.acquire(PLACE, Priority.PENDING)
    market = lim.acquire(PLACE, Priority.MARKET)
    cancel = lim.acquire(RouteType.MODIFY_ORDER, Priority.CANCEL)  # room made by shedding pending
    with pytest.raises(Shed, match="pending request on PLACE_ORDER dropped") as shed:
        await pending
    assert shed.value.account == "ftmo-1" and shed.value.route == "PLACE_ORDER"
    # A newcomer no more urgent than everything queued is refused at the call.
    with pytest.raises(Shed, match="queue is full"):
        lim.acquire(PLACE, Priority.PENDING)
    assert lim.shed_total == 2
    t.advance(2 * S)
    await settle()
    await market
    await cancel


async def test_429_without_retry_after_pauses_the_route_for_a_full_interval() -> None:
    t = ManualTime()
    lim = limiter(t)
    await spend(lim, PLACE, Priority.MARKET)
    lim.on_rate_limited(PLACE)
    assert not lim.try_acquire(PLACE)
    assert lim.utilisation(PLACE) == 1.0
    waiter = lim.acquire(PLACE, Priority.MARKET)
    t.advance(S)  # 9 tokens per 1 s: 90 % of 10/s
    await settle()
    await waiter
    assert route_stats(lim, "PLACE_ORDER").rate_limited_events == 1


async def test_429_with_retry_after_pauses_exactly_that_long() -> None:
    t = ManualTime()
    lim = limiter(t)
    lim.on_rate_limited(RouteType.MODIFY_ORDER, retry_after_s=3.0)
    assert not lim.try_acquire(RouteType.MODIFY_ORDER)
    t.advance(3 * S - 1)
    assert not lim.try_acquire(RouteType.MODIFY_ORDER)
    t.advance(1)
    assert lim.try_acquire(RouteType.MODIFY_ORDER)
    assert lim.try_acquire(PLACE)  # other routes were never paused


async def test_near_limit_is_counted_per_excursion_and_logged_without_flooding(
    caplog: pytest.LogCaptureFixture,
) -> None:
    t = ManualTime()
    lim = limiter(t)
    with caplog.at_level(logging.WARNING, logger="engine.execution.limits"):
        for _ in range(9):
            await spend(lim, PLACE, Priority.MARKET)
        assert lim.near_limit_events == 1
        t.advance(2 * S)
        await spend(lim, PLACE, Priority.MARKET)  # back under: the alert re-arms
        for _ in range(8):
            await spend(lim, PLACE, Priority.MARKET)
        assert lim.near_limit_events == 2
        t.advance(10 * S)
        for _ in range(9):
            await spend(lim, PLACE, Priority.MARKET)
    assert lim.near_limit_events == 3
    warnings = [r.getMessage() for r in caplog.records if "near its PLACE_ORDER" in r.getMessage()]
    assert len(warnings) == 2  # the second excursion came within the log's quiet period
    assert "ftmo-1" in warnings[0] and "10 per 1s" in warnings[0]
    assert "2 times since the last warning" in warnings[1]


async def test_cancelled_waiter_gives_up_its_place() -> None:
    t = ManualTime()
    lim = limiter(t)
    for _ in range(9):
        await spend(lim, PLACE, Priority.MARKET)
    first = asyncio.ensure_future(lim.acquire(PLACE, Priority.MARKET))
    second = lim.acquire(PLACE, Priority.MARKET)
    first.cancel()
    await settle()
    t.advance(S)
    await settle()
    await second
    assert lim.queued() == 0


async def test_string_route_names_are_accepted() -> None:
    t = ManualTime()
    lim = limiter(t)
    await spend(lim, "PLACE_ORDER", Priority.MARKET)
    assert route_stats(lim, "PLACE_ORDER").available == 8


async def test_close_refuses_every_waiter() -> None:
    t = ManualTime()
    lim = limiter(t)
    for _ in range(9):
        await spend(lim, PLACE, Priority.MARKET)
    waiter = lim.acquire(PLACE, Priority.PENDING)
    lim.close()
    with pytest.raises(Shed, match="limiter closed"):
        await waiter


async def test_a_granted_request_holds_its_token_until_its_reply() -> None:
    t = ManualTime()
    lim = limiter(t)  # PLACE_ORDER: 9 tokens, each back 1 s after it is released
    for _ in range(9):
        await lim.acquire(PLACE, Priority.MARKET)  # nine requests in flight
    assert lim.in_flight(PLACE) == 9
    assert route_stats(lim, "PLACE_ORDER").in_flight == 9
    waiter = asyncio.ensure_future(lim.acquire(PLACE, Priority.MARKET))
    t.advance(5 * S)  # no reply yet: long past the interval, still no token
    await settle()
    assert not waiter.done() and lim.queued() == 1
    lim.release(PLACE)  # the first reply, at 5 s
    t.advance(S - 1)
    await settle()
    assert not waiter.done()  # the token comes back one interval after the reply...
    t.advance(1)
    await settle()
    assert waiter.done()  # ...and not before
    await waiter
    assert lim.in_flight(PLACE) == 9  # eight still out, and the waiter's own


async def test_releasing_a_route_never_gated_is_harmless() -> None:
    t = ManualTime()
    lim = limiter(t)
    await lim.acquire(RouteType.GET_POSITIONS, Priority.QUERY)  # no published limit
    lim.release(RouteType.GET_POSITIONS)
    lim.release("NEVER_SEEN")
    assert lim.in_flight(RouteType.GET_POSITIONS) == 0


async def test_reads_wait_behind_orders_and_background_behind_reads() -> None:
    t = ManualTime()
    table = {Action.PLACE: ("shared",)}
    lim = AccountLimiter(
        "v-1",
        [RateLimit("shared", 1, 1.0)],
        routes=lambda action: table.get(action, ()),
        share=1.0,
        clock=t.clock,
        call_later=t.call_later,
    )
    await spend(lim, "shared", Priority.MARKET)
    order: list[str] = []

    async def request(name: str, prio: Priority) -> None:
        await lim.acquire("shared", prio)
        order.append(name)
        lim.release("shared")

    tasks = [
        asyncio.create_task(request("ping", Priority.BACKGROUND)),
        asyncio.create_task(request("read", Priority.QUERY)),
        asyncio.create_task(request("pending", Priority.PENDING)),
        asyncio.create_task(request("cancel", Priority.CANCEL)),
    ]
    await settle()
    for _ in range(4):
        t.advance(S)
        await settle()
    await asyncio.gather(*tasks)
    assert order == ["cancel", "pending", "read", "ping"]
