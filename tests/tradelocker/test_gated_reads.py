"""The adapter's own requests go through the engine's gate (``TradeLockerVenue.use_gate``): its
reads pace themselves by the limits the venue publishes and meet no 429 from the sandbox's own
limiter, and its keep-warm pings wait there at background priority."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from engine.execution.limits import AccountLimiter
from engine.model.domain import Priority, RouteKey
from engine.tradelocker.rate_limits import CONFIG_ROUTE, RouteType
from engine.tradelocker.settings import ConnectionSettings, RetryPolicy
from sandbox.seed import RateLimit
from tests.fixtures.sim import count_limiter
from tests.fixtures.tradelocker import started
from tests.tradelocker.sandbox import running_sandbox

READS = ("GET_ORDERS", "GET_ORDERS_HISTORY", "GET_POSITIONS")


async def test_tag_lookups_through_the_gate_meet_no_429_and_without_it_they_do() -> None:
    async with running_sandbox() as sb:
        for name in READS:
            sb.state.rate_limiter.set_limit(name, RateLimit(2))  # 2 reads per second
        limiter = count_limiter(sb)
        async with started(sb.venue(retry=RetryPolicy(attempts=1))) as venue:
            gate = AccountLimiter("acct", venue.rate_limits("acct"), routes=venue.route_for)
            venue.use_gate("acct", gate)
            found = await asyncio.gather(*(venue.find_by_tag("acct", f"t{i}") for i in range(8)))
            assert not any(m.found for m in found)
            assert not limiter.refused, limiter.refused
            stats = {s.route: s for s in gate.stats()}
            for name in READS:
                assert stats[name].at_limit_events > 0  # they queued: the gate paced them
                assert stats[name].in_flight == 0  # and gave every token back
            # The same lookups from a venue with no gate: the sandbox refuses some.
            async with started(sb.venue(retry=RetryPolicy(attempts=1))) as ungated:
                await asyncio.gather(
                    *(ungated.find_by_tag("acct", f"u{i}") for i in range(8)),
                    return_exceptions=True,
                )
            assert limiter.refused


class RecordingGate:
    """A gate that grants everything and records what asks it (the subject is who asks)."""

    def __init__(self) -> None:
        self.asked: list[tuple[RouteKey, Priority]] = []
        self.released: list[RouteKey] = []
        self.pinged = asyncio.Event()

    def acquire(self, route: RouteKey, priority: Priority, deadline_ns: int = 0) -> Awaitable[None]:
        self.asked.append((route, priority))
        if route == CONFIG_ROUTE and priority is Priority.BACKGROUND:
            self.pinged.set()
        return asyncio.sleep(0)

    def release(self, route: RouteKey) -> None:
        self.released.append(route)

    def on_rate_limited(self, route: RouteKey, retry_after_s: float | None = None) -> None:
        pass


async def test_keep_warm_pings_and_snapshots_ask_the_gate() -> None:
    async with running_sandbox() as sb:
        venue = sb.venue(connection=ConnectionSettings(keep_warm_every_s=0.05))
        async with started(venue):
            gate = RecordingGate()
            venue.use_gate("acct", gate)
            await venue.positions("acct")
            await venue.account_state("acct")
            await asyncio.wait_for(gate.pinged.wait(), 30)  # a hang guard, not a speed check
        assert (RouteType.GET_POSITIONS, Priority.QUERY) in gate.asked
        assert (RouteType.GET_ACCOUNTS_STATE, Priority.QUERY) in gate.asked
        assert (CONFIG_ROUTE, Priority.BACKGROUND) in gate.asked
        # Each read gave its grant back once its reply came.
        assert gate.released.count(RouteType.GET_POSITIONS) == 1
        assert gate.released.count(RouteType.GET_ACCOUNTS_STATE) == 1
