"""The quote feed against the sandbox's /trade/quotes, its QUOTES limit and its dead INFO route."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web

from engine.model.domain import Quote
from engine.model.errors import ConfigError
from engine.tradelocker.quotes import QuoteFeed, quotes_rate
from engine.tradelocker.settings import AccountSpec
from sandbox import Sandbox
from sandbox.seed import RATE_LIMIT_TYPES, RateLimit, SandboxConfig, default_users
from tests.fixtures.tradelocker import demo_venue
from tests.stream.sandbox import (
    ACCOUNTS,
    eventually,
    rest_venue,
    run_streams_sandbox,
)

EURUSD, GBPUSD, US30 = 278, 279, 301


def tight_quotes_config(limit: int) -> SandboxConfig:
    limits = {name: RateLimit(1000) for name in RATE_LIMIT_TYPES}
    limits["QUOTES"] = RateLimit(limit)  # per 1 SECONDS
    return SandboxConfig(users=default_users(), rate_limits=limits)


async def test_polling_stays_within_the_venues_quotes_limit_across_instruments() -> None:
    async with run_streams_sandbox(tight_quotes_config(5)) as sb:
        venue = rest_venue(sb)
        await venue.start()
        try:
            feed = QuoteFeed.from_config(venue.client("acc1"), venue.config("acc1"))
            assert feed.interval == pytest.approx(1 / 4.5)
            # The instrument cache probes INFO routes with quote requests of its own; look the
            # instruments up on the other account so acc1's QUOTES window is the feed's alone.
            eur = await venue.instrument("acc2", "EURUSD")
            gbp = await venue.instrument("acc2", "GBPUSD")
            feed.subscribe(EURUSD, eur.info_route_ids)
            feed.subscribe(GBPUSD, gbp.info_route_ids)
            started = time.monotonic()
            await feed.start()
            await eventually(lambda: feed.requests_sent >= 12, "a dozen polls")
            elapsed = time.monotonic() - started
            sent = feed.requests_sent
            await feed.close()
            # The sandbox enforces 5 per second with a sliding window: not one 429 came back,
            # and the count is what the paced budget allows for the time it ran.
            assert feed.errors == 0
            assert sent <= 5 * elapsed + 1
            for tid in (EURUSD, GBPUSD):
                # Prices are still: the feed's last quote is exactly the sandbox's.
                last, truth = feed.last(tid), sb.state.prices.quote(tid)
                assert last is not None and (last.bid, last.ask) == (truth.bid, truth.ask)
        finally:
            await venue.close()


async def test_the_dead_info_route_is_probed_past_and_the_live_one_kept() -> None:
    async with run_streams_sandbox() as sb:
        venue = rest_venue(sb)
        await venue.start()
        try:
            # GBPUSD's INFO routes as the venue lists them: the first one is dead.
            feed = QuoteFeed(venue.client("acc1"), requests_per_second=100)
            feed.subscribe(GBPUSD, (9199, 9101))
            assert await feed.poll_once(GBPUSD) is None  # 9199 answers no_data
            quote = await feed.poll_once(GBPUSD)
            assert quote is not None and feed.route_for(GBPUSD) == 9101
            assert quote.ask > quote.bid > 0
        finally:
            await venue.close()


async def test_callbacks_fire_on_change_only_with_a_monotonic_receive_time() -> None:
    async with run_streams_sandbox() as sb:
        venue = rest_venue(sb)
        await venue.start()
        try:
            eur = await venue.instrument("acc1", "EURUSD")
            feed = QuoteFeed(venue.client("acc1"), requests_per_second=100)
            seen: list[Quote] = []
            feed.subscribe(EURUSD, eur.info_route_ids, seen.append)
            before = time.monotonic_ns()
            await feed.poll_once(EURUSD)
            await feed.poll_once(EURUSD)  # same price: no second callback
            sb.state.set_price("EURUSD", bid=1.2, ask=1.2002)
            await feed.poll_once(EURUSD)
            assert [q.bid for q in seen] == [seen[0].bid, pytest.approx(1.2)]
            last = feed.last(EURUSD)
            assert last is not None and last.received_ns >= before
            assert last.mid == pytest.approx(1.2001)
        finally:
            await venue.close()


def test_the_rate_comes_from_the_quotes_entry_with_a_margin() -> None:
    config = {
        "rateLimits": [
            {"rateLimitType": "PLACE_ORDER", "measure": "SECONDS", "intervalNum": 1, "limit": 9},
            {"rateLimitType": "QUOTES", "measure": "MINUTES", "intervalNum": 1, "limit": 120},
        ]
    }
    assert quotes_rate(config, share=1.0) == pytest.approx(2.0)
    with pytest.raises(ConfigError, match="no QUOTES rate limit"):
        quotes_rate({"rateLimits": []})


async def test_an_instrument_without_info_route_is_refused_with_a_reason() -> None:
    feed = QuoteFeed(_NeverCalled(), requests_per_second=1)
    with pytest.raises(ConfigError, match="no INFO route"):
        feed.subscribe(EURUSD, ())
    await asyncio.sleep(0)


class _NeverCalled:
    """Subscribing validates input before any request; this source proves none is made."""

    async def query(self, path: str, params: object = None, *, attempts: int | None = None) -> None:
        raise AssertionError("no request expected")


async def test_an_unwatched_untraded_instrument_is_dropped_and_a_stale_quote_unknown() -> None:
    async with run_streams_sandbox() as sb:
        venue = rest_venue(sb)
        await venue.start()
        try:
            eur = await venue.instrument("acc1", "EURUSD")
            feed = QuoteFeed(venue.client("acc1"), requests_per_second=100, lease_s=0.05)
            seen: list[Quote] = []
            # An order on the instrument leases it; its first lookup knows no price yet.
            assert feed.quote_for_order(EURUSD, eur.info_route_ids) is None
            feed.subscribe(EURUSD, eur.info_route_ids, seen.append)
            quote = await feed.poll_once(EURUSD)
            assert quote is not None and feed.fresh(EURUSD) == quote
            # Older than max_age_s (5 s by default): unknown, however fresh it once was.
            assert feed.fresh(EURUSD, now_ns=quote.received_ns + 6_000_000_000) is None
            await asyncio.sleep(0.06)  # the lease has run out; the callback still holds it
            feed.remove_callback(EURUSD, seen.append)
            assert not feed.subscribed(EURUSD) and feed.last(EURUSD) is None
            # A lease alone keeps it polled until it expires; then the poller drops it unasked.
            feed.quote_for_order(EURUSD, eur.info_route_ids)
            await feed.start()
            await eventually(lambda: not feed.subscribed(EURUSD), "the lapsed lease dropped")
            sent = feed.requests_sent
            await asyncio.sleep(0.05)
            await feed.close()
            assert feed.requests_sent == sent  # nothing left to poll, nothing polled
        finally:
            await venue.close()


async def test_instrument_lookups_and_one_off_quotes_share_the_feeds_quotes_budget() -> None:
    """Issue 3: INFO-route probes and venue.quote() used to go out beside the feed's paced polls.
    Now all of a login's quote requests take turns of one pacer: with the feed polling flat out
    on acc1, repeated GBPUSD lookups on acc1 (a dead first INFO route, so two probes each) and
    one-off quotes never get a 429 from the sandbox's QUOTES window."""
    sandbox = Sandbox(tight_quotes_config(3), price_interval_ms=0)
    answered: list[int] = []

    async def count_quotes(request: web.Request, response: web.StreamResponse) -> None:
        if request.path.endswith("/trade/quotes"):
            answered.append(response.status)

    sandbox.app.on_response_prepare.append(count_quotes)
    async with sandbox:
        venue = demo_venue(
            sandbox.rest_url, [AccountSpec(a, "demo", account_id=i) for a, i in ACCOUNTS.items()]
        )
        await venue.start()
        try:
            # The venue builds one feed per login at start: its quote source for both accounts.
            feed = venue.quotes("acc1")
            assert feed is not None
            assert venue.quotes("acc2") is feed and feed.pacer is venue.quote_pacer("acc2")
            eur = await venue.instrument("acc1", "EURUSD")
            us30 = await venue.instrument("acc1", "US30")
            feed.subscribe(EURUSD, eur.info_route_ids)
            feed.subscribe(US30, us30.info_route_ids)
            await feed.start()
            for _ in range(3):
                # Forget GBPUSD's details, as a venue 404 would: the next lookup probes again,
                # on acc1, whose QUOTES window at the sandbox is the feed's.
                venue._account("acc1").instruments.invalidate()
                gbp = await venue.instrument("acc1", "GBPUSD")
                assert gbp.info_route_ids[0] == 9101
                truth = sandbox.state.prices.quote(gbp.tradable_instrument_id)
                assert await venue.quote("acc1", gbp) == (truth.bid, truth.ask)
            await eventually(lambda: feed.requests_sent >= 6, "the feed kept polling meanwhile")
            await feed.close()
            assert answered.count(429) == 0
            # Each lookup probed the dead route and the live one: the probes really went out.
            assert len(answered) >= 3 * 3 + 6
        finally:
            await venue.close()
