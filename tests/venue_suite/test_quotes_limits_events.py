"""The rest of the contract: capabilities the engine relies on, rate limits and the route of every
action, quotes, typed stream events, order history and the account snapshot."""

from __future__ import annotations

import asyncio
import time

import pytest

from engine.execution.limits import AccountLimiter
from engine.model.domain import (
    Action,
    Instrument,
    OrderRequest,
    OrderType,
    Priority,
    Quote,
    Side,
    Validity,
)
from engine.model.errors import ValidationError
from engine.venue.events import (
    StreamAccountStatus,
    StreamConnectionStatus,
    StreamOrder,
    StreamPosition,
    StreamPositionClosed,
    StreamSyncEnd,
    event_kind,
)
from engine.venue.protocol import QuoteSource
from tests.venue_suite.conftest import Harness

PAYLOADS = (
    StreamAccountStatus,
    StreamPosition,
    StreamPositionClosed,
    StreamOrder,
    StreamSyncEnd,
    StreamConnectionStatus,
)
ORDER_ENTRY = (Action.PLACE, Action.MODIFY, Action.CANCEL, Action.CLOSE, Action.REVERSE)


def _request(h: Harness, instrument: Instrument, order_type: OrderType, tag: str) -> OrderRequest:
    return OrderRequest(
        h.account,
        instrument,
        Side.BUY,
        order_type,
        instrument.min_lot,
        Validity.required_for(order_type),
        tag,
    )


async def test_what_the_venue_does_not_do_natively_it_refuses_before_sending(
    harness: Harness,
) -> None:
    """The engine emulates stop-limits for a venue without them, and tags orders within the
    venue's tag length: the venue must refuse the rest locally, never half-send it."""
    instrument = await harness.instrument()
    caps = harness.venue.capabilities
    bid, _ = await harness.touch(instrument)
    if not caps.native_stop_limit:
        tag = harness.tag("stlm")
        req = _request(harness, instrument, OrderType.STOP_LIMIT, tag)
        req.price = harness.on_tick(instrument, bid)
        req.stop_price = harness.on_tick(instrument, bid * 1.1)
        with pytest.raises(ValidationError):
            await harness.venue.place_order(req)
        assert not (await harness.venue.find_by_tag(harness.account, tag)).found
    too_long = "t" * (caps.max_tag_length + 1)
    with pytest.raises(ValidationError):
        await harness.venue.place_order(_request(harness, instrument, OrderType.MARKET, too_long))
    assert not (await harness.venue.find_by_tag(harness.account, too_long)).found


async def test_every_action_spends_named_routes_and_order_entry_spends_a_published_one(
    harness: Harness,
) -> None:
    venue = harness.venue
    published = venue.rate_limits(harness.account)
    assert published, "the suite's venues publish limits (paper is given some)"
    assert all(lim.limit >= 1 and lim.interval_s > 0 for lim in published)
    keys = {lim.route for lim in published}
    for action in Action:
        routes = venue.route_for(action)
        assert isinstance(routes, tuple) and all(isinstance(r, str) and r for r in routes)
    for action in ORDER_ENTRY:
        # An order-entry action on no published route would never be gated.
        assert set(venue.route_for(action)) & keys, f"{action.name} spends no published route"
    # A reverse is a close then a placement: it spends both, in that order.
    reverse = venue.route_for(Action.REVERSE)
    assert reverse[0] in venue.route_for(Action.CLOSE)
    assert reverse[-1] in venue.route_for(Action.PLACE)


async def test_the_engines_gate_runs_on_the_venues_limits_and_table(harness: Harness) -> None:
    venue = harness.venue
    gate = AccountLimiter(
        harness.account, venue.rate_limits(harness.account), routes=venue.route_for
    )
    assert gate.routes_for(Action.PLACE) == venue.route_for(Action.PLACE)
    for route in gate.routes_for(Action.PLACE):
        await gate.acquire(route, Priority.MARKET)
    assert 0.0 < gate.action_utilisation(Action.PLACE) <= 1.0
    assert {s.route for s in gate.stats()} >= set(venue.route_for(Action.PLACE))


async def test_the_quote_source_reports_the_venues_price_to_watchers(harness: Harness) -> None:
    instrument = await harness.instrument()
    source = harness.venue.quotes(harness.account)
    assert isinstance(source, QuoteSource)
    assert harness.venue.quotes(harness.account) is source  # shared, not one per call
    seen: list[Quote] = []
    iid = instrument.tradable_instrument_id
    await source.start()
    try:
        source.subscribe(iid, instrument.info_route_ids, seen.append)
        assert source.subscribed(iid)
        polled = await source.poll_once(iid)
        assert polled is not None and polled.instrument_id == iid
        assert 0 < polled.bid <= polled.ask
        assert (polled.bid, polled.ask) == await harness.touch(instrument)  # prices are still
        assert seen and seen[-1].instrument_id == iid  # the watcher heard of it
        # Judged at the moment it arrived, the quote is fresh; how long it stays so is the
        # source's own rule. Pre-validation gets that quote or None (unknown), never another.
        fresh = source.fresh(iid, polled.received_ns)
        assert fresh is not None and (fresh.bid, fresh.ask) == (polled.bid, polled.ask)
        for_order = source.quote_for_order(iid, instrument.info_route_ids)
        assert for_order is None or (for_order.bid, for_order.ask) == (polled.bid, polled.ask)
        source.remove_callback(iid, seen.append)
    finally:
        await source.close()


async def test_a_fill_is_reported_as_typed_events_under_the_engines_alias(
    harness: Harness,
) -> None:
    assert harness.venue.capabilities.streaming
    await harness.streaming()
    instrument = await harness.instrument()
    tag = harness.tag("evt")
    placed = await harness.venue.place_order(_request(harness, instrument, OrderType.MARKET, tag))
    opened: StreamPosition | None = None
    events = harness.venue.events()
    async with asyncio.timeout(15):  # a hang guard: the loop ends on the event itself
        async for event in events:
            assert isinstance(event.payload, PAYLOADS)
            assert event.kind == event_kind(event.payload)
            payload = event.payload
            if isinstance(payload, StreamPosition) and payload.open_order_id == placed.order_id:
                opened = payload
                assert event.account == harness.account
                break
    assert opened is not None
    assert opened.side is Side.BUY
    assert opened.lots == pytest.approx(instrument.min_lot)
    assert opened.instrument == instrument.name
    positions = {p.position_id for p in await harness.venue.positions(harness.account)}
    assert opened.position_id in positions


async def test_order_history_is_bounded_by_its_time_window(harness: Harness) -> None:
    instrument = await harness.instrument()
    bid, _ = await harness.touch(instrument)
    tag = harness.tag("hist")
    req = _request(harness, instrument, OrderType.LIMIT, tag)
    req.price = harness.on_tick(instrument, bid * 0.8)
    before_ms = int(time.time() * 1000) - 60_000
    placed = await harness.venue.place_order(req)
    await harness.venue.cancel_order(harness.account, placed.order_id)
    after_ms = int(time.time() * 1000) + 60_000
    inside = await harness.venue.orders_history(harness.account, before_ms, after_ms)
    assert placed.order_id in {o.order_id for o in inside}
    (final,) = [o for o in inside if o.order_id == placed.order_id]
    assert final.strategy_id == tag and not final.is_open and final.status == "Cancelled"
    earlier = await harness.venue.orders_history(harness.account, 0, before_ms)
    assert placed.order_id not in {o.order_id for o in earlier}


async def test_the_account_snapshot_counts_what_the_snapshots_list(harness: Harness) -> None:
    instrument = await harness.instrument()
    bid, _ = await harness.touch(instrument)
    req = _request(harness, instrument, OrderType.LIMIT, harness.tag("snapo"))
    req.price = harness.on_tick(instrument, bid * 0.8)
    await harness.venue.place_order(req)
    await harness.venue.place_order(
        _request(harness, instrument, OrderType.MARKET, harness.tag("snapp"))
    )
    orders = await harness.venue.orders(harness.account)
    positions = await harness.venue.positions(harness.account)
    state = await harness.venue.account_state(harness.account)
    assert state.account == harness.account
    assert state.orders_count == len(orders) >= 1
    assert state.positions_count == len(positions) >= 1
    assert state.balance > 0 and state.equity > 0
    instruments = await harness.venue.instruments(harness.account)
    assert instrument.tradable_instrument_id in {i.tradable_instrument_id for i in instruments}
