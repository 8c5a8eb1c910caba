"""The contract every Venue implementation must meet, run against each of them (see conftest)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable

import pytest

from engine.execution.limits import AccountLimiter
from engine.model.domain import (
    Instrument,
    OrderModification,
    OrderRequest,
    OrderType,
    Priority,
    ProtectionType,
    RateLimit,
    RouteKey,
    Side,
    Validity,
)
from engine.model.errors import OrderRejected
from engine.venue.protocol import Venue
from tests.venue_suite.conftest import Harness


def _request(
    h: Harness, instrument: Instrument, side: Side, order_type: OrderType, tag: str, **kw: object
) -> OrderRequest:
    return OrderRequest(
        account=h.account,
        instrument=instrument,
        side=side,
        type=order_type,
        qty=float(kw.pop("qty", instrument.min_lot)),  # type: ignore[arg-type]
        validity=Validity.required_for(order_type),
        strategy_tag=tag,
        **kw,  # type: ignore[arg-type]
    )


async def _open_buy(h: Harness, tag: str, qty: float | None = None) -> tuple[Instrument, str]:
    instrument = await h.instrument()
    req = _request(h, instrument, Side.BUY, OrderType.MARKET, tag, qty=qty or instrument.min_lot)
    await h.venue.place_order(req)
    positions = [p for p in await h.venue.positions(h.account) if p.strategy_id == tag]
    assert len(positions) == 1, f"one position carries the tag, got {positions}"
    return instrument, positions[0].position_id


async def test_implementation_satisfies_the_venue_protocol(harness: Harness) -> None:
    assert isinstance(harness.venue, Venue)
    assert harness.venue.capabilities.native_stop_limit is False
    assert harness.venue.capabilities.hedging is True


async def test_market_order_fills_into_a_tagged_position_and_a_filled_history_row(
    harness: Harness,
) -> None:
    tag = harness.tag("mkt")
    instrument = await harness.instrument()
    placed = await harness.venue.place_order(
        _request(harness, instrument, Side.BUY, OrderType.MARKET, tag, qty=2 * instrument.min_lot)
    )
    history = [
        o for o in await harness.venue.orders_history(harness.account) if o.strategy_id == tag
    ]
    assert [o.order_id for o in history] == [placed.order_id]
    assert history[0].status == "Filled"
    assert history[0].position_id
    positions = [p for p in await harness.venue.positions(harness.account) if p.strategy_id == tag]
    assert [p.position_id for p in positions] == [history[0].position_id]
    assert positions[0].side is Side.BUY
    assert positions[0].qty == pytest.approx(2 * instrument.min_lot)


async def test_limit_order_rests_can_be_modified_and_cancelled(harness: Harness) -> None:
    tag = harness.tag("lmt")
    instrument = await harness.instrument()
    bid, _ = await harness.touch(instrument)
    price = harness.on_tick(instrument, bid * 0.8)
    placed = await harness.venue.place_order(
        _request(harness, instrument, Side.BUY, OrderType.LIMIT, tag, price=price)
    )
    working = {o.order_id: o for o in await harness.venue.orders(harness.account)}
    assert working[placed.order_id].price == pytest.approx(price)
    assert working[placed.order_id].strategy_id == tag

    lower = harness.on_tick(instrument, bid * 0.7)
    await harness.venue.modify_order(
        harness.account, placed.order_id, OrderModification(price=lower)
    )
    working = {o.order_id: o for o in await harness.venue.orders(harness.account)}
    assert working[placed.order_id].price == pytest.approx(lower)

    await harness.venue.cancel_order(harness.account, placed.order_id)
    assert placed.order_id not in {o.order_id for o in await harness.venue.orders(harness.account)}
    final = [o for o in await harness.venue.orders_history(harness.account) if o.strategy_id == tag]
    assert [(o.order_id, o.status) for o in final] == [(placed.order_id, "Cancelled")]


async def test_stop_order_rests_until_cancel_all_clears_it(harness: Harness) -> None:
    tag = harness.tag("stp")
    instrument = await harness.instrument()
    _, ask = await harness.touch(instrument)
    stop = harness.on_tick(instrument, ask * 1.2)
    placed = await harness.venue.place_order(
        _request(harness, instrument, Side.BUY, OrderType.STOP, tag, stop_price=stop)
    )
    working = {o.order_id: o for o in await harness.venue.orders(harness.account)}
    assert working[placed.order_id].stop_price == pytest.approx(stop)

    await harness.venue.cancel_all_orders(harness.account)
    assert [o for o in await harness.venue.orders(harness.account) if o.strategy_id == tag] == []


async def test_market_order_with_absolute_stop_loss_and_take_profit_creates_both_legs(
    harness: Harness,
) -> None:
    tag = harness.tag("sltp")
    instrument = await harness.instrument()
    bid, ask = await harness.touch(instrument)
    sl, tp = harness.on_tick(instrument, bid * 0.9), harness.on_tick(instrument, ask * 1.1)
    await harness.venue.place_order(
        _request(
            harness,
            instrument,
            Side.BUY,
            OrderType.MARKET,
            tag,
            stop_loss=sl,
            stop_loss_type=ProtectionType.ABSOLUTE,
            take_profit=tp,
            take_profit_type=ProtectionType.ABSOLUTE,
        )
    )
    position = next(
        p for p in await harness.venue.positions(harness.account) if p.strategy_id == tag
    )
    assert position.stop_loss_id and position.take_profit_id
    working = {o.order_id: o for o in await harness.venue.orders(harness.account)}
    assert working[position.stop_loss_id].stop_price == pytest.approx(sl)
    assert working[position.take_profit_id].price == pytest.approx(tp)
    assert working[position.stop_loss_id].side is Side.SELL


async def test_position_protection_is_set_then_removed_with_none(harness: Harness) -> None:
    instrument, position_id = await _open_buy(harness, harness.tag("prot"))
    bid, ask = await harness.touch(instrument)
    sl, tp = harness.on_tick(instrument, bid * 0.9), harness.on_tick(instrument, ask * 1.1)
    await harness.venue.modify_position(harness.account, position_id, sl, tp)
    position = next(
        p for p in await harness.venue.positions(harness.account) if p.position_id == position_id
    )
    working = {o.order_id: o for o in await harness.venue.orders(harness.account)}
    assert position.stop_loss_id in working and position.take_profit_id in working
    assert working[position.stop_loss_id].stop_price == pytest.approx(sl)

    await harness.venue.modify_position(harness.account, position_id, None, None)
    position = next(
        p for p in await harness.venue.positions(harness.account) if p.position_id == position_id
    )
    assert position.stop_loss_id is None and position.take_profit_id is None


async def test_partial_close_reduces_the_position_and_full_close_removes_it(
    harness: Harness,
) -> None:
    instrument = await harness.instrument()
    _, position_id = await _open_buy(harness, harness.tag("part"), qty=3 * instrument.min_lot)
    await harness.venue.close_position(harness.account, position_id, instrument.min_lot)
    remaining = {p.position_id: p for p in await harness.venue.positions(harness.account)}
    assert remaining[position_id].qty == pytest.approx(2 * instrument.min_lot)

    await harness.venue.close_position(harness.account, position_id)
    assert position_id not in {
        p.position_id for p in await harness.venue.positions(harness.account)
    }


async def test_reverse_closes_the_position_and_opens_the_same_qty_on_the_other_side(
    harness: Harness,
) -> None:
    instrument = await harness.instrument()
    _, position_id = await _open_buy(harness, harness.tag("rev"), qty=2 * instrument.min_lot)
    reverse_tag = harness.tag("revnew")
    result = await harness.venue.reverse_position(harness.account, position_id, reverse_tag)
    assert result.closed_position_id == position_id
    positions = await harness.venue.positions(harness.account)
    assert position_id not in {p.position_id for p in positions}
    opened = [p for p in positions if p.strategy_id == reverse_tag]
    assert len(opened) == 1
    assert opened[0].side is Side.SELL
    assert opened[0].qty == pytest.approx(2 * instrument.min_lot)


async def test_close_all_positions_leaves_none_open(harness: Harness) -> None:
    await _open_buy(harness, harness.tag("all1"))
    await _open_buy(harness, harness.tag("all2"))
    await harness.venue.close_all_positions(harness.account)
    assert await harness.venue.positions(harness.account) == []


async def test_hedging_account_holds_both_sides_of_one_instrument(harness: Harness) -> None:
    instrument = await harness.instrument()
    buy_tag, sell_tag = harness.tag("hbuy"), harness.tag("hsell")
    await harness.venue.place_order(
        _request(harness, instrument, Side.BUY, OrderType.MARKET, buy_tag)
    )
    await harness.venue.place_order(
        _request(harness, instrument, Side.SELL, OrderType.MARKET, sell_tag)
    )
    sides = {p.strategy_id: p.side for p in await harness.venue.positions(harness.account)}
    assert sides[buy_tag] is Side.BUY and sides[sell_tag] is Side.SELL


async def test_snapshots_agree_with_account_state_counts(harness: Harness) -> None:
    await _open_buy(harness, harness.tag("snap"))
    positions = await harness.venue.positions(harness.account)
    state = await harness.venue.account_state(harness.account)
    assert state.positions_count == len(positions)
    assert state.account == harness.account
    assert state.balance > 0


async def test_find_by_tag_returns_exactly_the_tagged_order_and_its_position(
    harness: Harness,
) -> None:
    tag = harness.tag("find")
    instrument = await harness.instrument()
    await harness.venue.place_order(
        _request(harness, instrument, Side.BUY, OrderType.MARKET, harness.tag("other"))
    )
    placed = await harness.venue.place_order(
        _request(harness, instrument, Side.SELL, OrderType.MARKET, tag)
    )
    matches = await harness.venue.find_by_tag(harness.account, tag)
    assert matches.order_ids == {placed.order_id}
    assert len(matches.positions) == 1


async def test_find_by_tags_answers_for_many_tags_in_one_round(harness: Harness) -> None:
    """The batch lookup: one call answers for a filled order, a working one and a tag the venue
    never saw (absent from the answer); with no tags it names every tag the account holds."""
    instrument = await harness.instrument()
    filled, working, never = harness.tag("bfill"), harness.tag("bwork"), harness.tag("bnever")
    market = await harness.venue.place_order(
        _request(harness, instrument, Side.BUY, OrderType.MARKET, filled)
    )
    bid, _ask = await harness.touch(instrument)
    far = harness.on_tick(instrument, bid * 0.8)
    limit = await harness.venue.place_order(
        _request(harness, instrument, Side.BUY, OrderType.LIMIT, working, price=far)
    )
    found = await harness.venue.find_by_tags(harness.account, (filled, working, never))
    assert set(found) == {filled, working}
    assert market.order_id in found[filled].order_ids
    assert len(found[filled].positions) == 1
    assert found[working].order_ids == {limit.order_id}
    assert [o.order_id for o in found[working].orders] == [limit.order_id]  # still working
    every = await harness.venue.find_by_tags(harness.account)
    assert {filled, working} <= set(every)
    assert never not in every
    assert every[working].order_ids == {limit.order_id}
    await harness.venue.cancel_order(harness.account, limit.order_id)


async def test_quantity_above_the_maximum_is_rejected_with_the_venue_text(
    harness: Harness,
) -> None:
    instrument = await harness.instrument()
    too_big = instrument.max_lot + 10 * instrument.lot_step
    bad = _request(harness, instrument, Side.BUY, OrderType.MARKET, harness.tag("big"), qty=too_big)
    with pytest.raises(OrderRejected) as caught:
        await harness.venue.place_order(bad)
    assert caught.value.errmsg
    assert caught.value.account == harness.account


async def test_find_by_tag_through_the_engines_gate_from_the_send_time(harness: Harness) -> None:
    """Handed the account's gate, the venue's reads wait there and give every token back; a
    history window from the send time still finds the order, one after it does not."""
    venue = harness.venue
    gate = AccountLimiter(
        harness.account, venue.rate_limits(harness.account), routes=venue.route_for
    )
    venue.use_gate(harness.account, gate)
    tag = harness.tag("gated")
    instrument = await harness.instrument()
    before_ms = int(time.time() * 1000) - 60_000
    placed = await venue.place_order(_request(harness, instrument, Side.BUY, OrderType.MARKET, tag))
    matches = await venue.find_by_tag(harness.account, tag, since_ms=before_ms)
    assert placed.order_id in matches.order_ids
    assert all(s.in_flight == 0 for s in gate.stats())  # every read gave its token back
    later = await venue.find_by_tag(harness.account, tag, since_ms=int(time.time() * 1000) + 60_000)
    assert not later.history  # the history window starts after the order was made


class _RecordingGate(AccountLimiter):
    """The engine's gate, noting each read's route and priority as the venue asks for it."""

    asked: list[tuple[str, Priority]]

    def acquire(self, route: RouteKey, priority: Priority, deadline_ns: int = 0) -> Awaitable[None]:
        self.asked.append((str(route), priority))
        return super().acquire(route, priority, deadline_ns)


async def test_reads_take_a_priority_and_a_background_read_waits_behind_a_query(
    harness: Harness,
) -> None:
    """``priority=`` on the snapshot reads reaches the account's gate: with one positions read
    per second, a BACKGROUND read queued first is still served after a QUERY read queued after
    it. A venue whose reads spend no budget (paper) gates none and answers the same."""
    venue = harness.venue
    account = harness.account
    one_per_s = [RateLimit(r, 1, 1.0) for r in ("GET_POSITIONS", "positions")]
    gate = _RecordingGate(account, one_per_s, routes=venue.route_for, share=1.0)
    gate.asked = []
    venue.use_gate(account, gate)
    _, position_id = await _open_buy(harness, harness.tag("prio"))
    gate.asked.clear()
    state = await venue.account_state(account, priority=Priority.BACKGROUND)
    orders = await venue.orders(account, priority=Priority.BACKGROUND)
    assert state.orders_count == len([o for o in orders if o.is_open])
    await venue.positions(account)  # takes the route's one token for the next second
    done: list[str] = []

    async def read(name: str, priority: Priority) -> list[str]:
        rows = await venue.positions(account, priority=priority)
        done.append(name)
        return [p.position_id for p in rows]

    background = asyncio.create_task(read("background", Priority.BACKGROUND))
    await asyncio.sleep(0)  # queued first
    query = asyncio.create_task(read("query", Priority.QUERY))
    assert position_id in await background and position_id in await query
    routes = {route for route, _ in gate.asked}
    if not gate.asked:  # paper: in process, no budget spent, nothing queued
        assert done == ["background", "query"]
        return
    assert ("GET_ACCOUNTS_STATE", Priority.BACKGROUND) in gate.asked
    assert ("GET_ORDERS", Priority.BACKGROUND) in gate.asked
    assert ("GET_POSITIONS", Priority.BACKGROUND) in gate.asked and "GET_POSITIONS" in routes
    assert done == ["query", "background"]
