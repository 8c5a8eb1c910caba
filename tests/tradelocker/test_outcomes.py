"""The outcome policy over real HTTP against the sandbox, with its injected faults.

Every test runs on both order transports (``ConnectionSettings.order_transport``): the lean pinned
connections and aiohttp must classify every fault the same way.
"""

from __future__ import annotations

import asyncio

import pytest

from engine.model.domain import Instrument, OrderRequest, OrderType, Side, Validity
from engine.model.errors import (
    OrderRejected,
    OutcomeUnknown,
    RateLimited,
    VenueUnavailable,
)
from engine.tradelocker.settings import ConnectionSettings, RetryPolicy
from engine.tradelocker.venue import TradeLockerVenue
from tests.tradelocker.sandbox import ACCOUNT_IDS, Sandbox, running_sandbox

ACCOUNT_ID = ACCOUNT_IDS[0]
# No waiting between GET retries: the tests are about which calls are retried, not when.
FAST_RETRY = RetryPolicy(attempts=3, base_s=0.0, cap_s=0.0)


@pytest.fixture
async def sandbox():
    async with running_sandbox() as sb:
        yield sb


@pytest.fixture(params=["lean", "aiohttp"])
def transport(request: pytest.FixtureRequest) -> ConnectionSettings:
    return ConnectionSettings(order_transport=request.param)


@pytest.fixture
async def venue(sandbox: Sandbox, transport: ConnectionSettings):
    v = sandbox.venue(retry=FAST_RETRY, connection=transport)
    await v.start()
    yield v
    await v.close()


def _market(instrument: Instrument, tag: str, qty: float | None = None) -> OrderRequest:
    return OrderRequest(
        "acct", instrument, Side.BUY, OrderType.MARKET, qty or instrument.min_lot, Validity.IOC, tag
    )


async def test_dropped_after_accept_is_unknown_not_resent_and_find_by_tag_finds_the_one_order(
    sandbox: Sandbox, venue: TradeLockerVenue
) -> None:
    instrument = await venue.instrument("acct", "EURUSD")
    sandbox.state.faults.update({"dropAfterAccept": {"PLACE_ORDER": 1}})
    with pytest.raises(OutcomeUnknown) as caught:
        await venue.place_order(_market(instrument, "dropped1"))
    assert caught.value.strategy_tag == "dropped1"
    assert caught.value.account == "acct"
    # The venue acted exactly once: the adapter did not resend.
    [held] = sandbox.orders_tagged(ACCOUNT_ID, "dropped1")
    matches = await venue.find_by_tag("acct", "dropped1")
    assert matches.order_ids == {held.id}
    assert len(matches.positions) == 1


async def test_truncated_reply_to_an_order_is_unknown_and_reconcilable(
    sandbox: Sandbox, venue: TradeLockerVenue
) -> None:
    instrument = await venue.instrument("acct", "EURUSD")
    sandbox.state.faults.update({"malformed": {"PLACE_ORDER": 1}})
    with pytest.raises(OutcomeUnknown):
        await venue.place_order(_market(instrument, "trunc1"))
    assert len(sandbox.orders_tagged(ACCOUNT_ID, "trunc1")) == 1
    assert (await venue.find_by_tag("acct", "trunc1")).found


async def test_dropped_partial_close_is_unknown_and_closes_only_once(
    sandbox: Sandbox, venue: TradeLockerVenue
) -> None:
    instrument = await venue.instrument("acct", "EURUSD")
    await venue.place_order(_market(instrument, "pclose", qty=3 * instrument.min_lot))
    [position] = (await venue.find_by_tag("acct", "pclose")).positions
    # Warm the pool so the DELETE rides a reused keep-alive connection (where an HTTP client
    # is tempted to resend it).
    await venue.positions("acct")
    sandbox.state.faults.update({"dropAfterAccept": {"CLOSE_POSITION": 1}})
    with pytest.raises(OutcomeUnknown):
        await venue.close_position("acct", position.position_id, instrument.min_lot)
    [after] = (await venue.find_by_tag("acct", "pclose")).positions
    assert after.qty == pytest.approx(2 * instrument.min_lot)


async def test_5xx_on_order_entry_is_unknown_and_never_retried(
    sandbox: Sandbox, venue: TradeLockerVenue
) -> None:
    instrument = await venue.instrument("acct", "EURUSD")
    sandbox.state.faults.update({"error5xx": {"PLACE_ORDER": 1}})
    with pytest.raises(OutcomeUnknown):
        await venue.place_order(_market(instrument, "e5xx1"))
    # One 503 was injected; a retry would have gone through and created the order.
    assert sandbox.orders_tagged(ACCOUNT_ID, "e5xx1") == []
    assert not (await venue.find_by_tag("acct", "e5xx1")).found


async def test_5xx_and_drops_on_queries_are_retried_until_they_answer(
    sandbox: Sandbox, venue: TradeLockerVenue
) -> None:
    client = venue.client("acct")
    before = client.retries
    sandbox.state.faults.update({"error5xx": {"POSITIONS": 1}, "dropAfterAccept": {"ORDERS": 1}})
    assert await venue.positions("acct") == []
    assert await venue.orders("acct") == []
    assert client.retries - before == 2


async def test_persistent_5xx_on_a_query_becomes_venue_unavailable(
    sandbox: Sandbox, venue: TradeLockerVenue
) -> None:
    sandbox.state.faults.update({"error5xx": {"POSITIONS": 10}})
    with pytest.raises(VenueUnavailable):
        await venue.positions("acct")


async def test_429_on_order_entry_is_rate_limited_and_nothing_is_placed(
    sandbox: Sandbox, venue: TradeLockerVenue
) -> None:
    instrument = await venue.instrument("acct", "EURUSD")
    sandbox.state.faults.update({"burst429": {"PLACE_ORDER": 1}})
    with pytest.raises(RateLimited):
        await venue.place_order(_market(instrument, "burst1"))
    assert sandbox.orders_tagged(ACCOUNT_ID, "burst1") == []


async def test_429_on_a_query_is_retried(sandbox: Sandbox, venue: TradeLockerVenue) -> None:
    sandbox.state.faults.update({"burst429": {"POSITIONS": 1}})
    assert await venue.positions("acct") == []


async def test_business_rejection_carries_the_venue_errmsg(venue: TradeLockerVenue) -> None:
    instrument = await venue.instrument("acct", "EURUSD")
    with pytest.raises(OrderRejected) as caught:
        await venue.place_order(_market(instrument, "big1", qty=instrument.max_lot + 1))
    assert caught.value.errmsg
    assert caught.value.errmsg in str(caught.value)
    assert caught.value.account == "acct"


async def test_401_on_a_query_refreshes_once_and_retries(
    sandbox: Sandbox, venue: TradeLockerVenue
) -> None:
    tokens = venue.tokens["demo"]
    refreshes = tokens.health().refresh_count
    sandbox.state.auth.expire_access_tokens()
    assert await venue.positions("acct") == []
    assert tokens.health().refresh_count == refreshes + 1


async def test_order_history_is_complete_across_has_more_pages(
    transport: ConnectionSettings,
) -> None:
    async with running_sandbox(max_orders_in_history=3) as sandbox:
        venue = sandbox.venue(retry=FAST_RETRY, connection=transport)
        await venue.start()
        try:
            instrument = await venue.instrument("acct", "EURUSD")
            placed = set()
            for i in range(8):
                placed.add((await venue.place_order(_market(instrument, f"page{i}"))).order_id)
                # Distinct createdDate milliseconds, so every page boundary can be narrowed.
                await asyncio.sleep(0.002)
            history = await venue.orders_history("acct")
            assert placed <= {o.order_id for o in history}
            assert len({o.order_id for o in history}) == len(history)
        finally:
            await venue.close()
