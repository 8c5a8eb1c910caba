"""Partial fills and slow closes, end to end: the engine (build_engine, the real TradeLocker
adapter) against the sandbox's ``realistic`` profile (50-100 ms replies with a tail, realistic
rate limits and token lifetimes, the depth ladder, closes answered as an IOC then a working GTC
closing order), account 2 netting.

The random execution shares (partial fills, slippage, rejections after acceptance) are set to 0
and the partial fills the tests need are asked for one at a time with the sandbox's
``partialFill`` fault, so each test knows what the venue did. Prices stand still (they move only
when a test sets one): a GTC closing order fills at the next quote a test sets.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from engine.app.config import parse_config
from engine.app.daemon import build_engine
from engine.model.events import Event, OrderUpdate, OutcomeEvent
from sandbox import Sandbox
from tests.fixtures.engine import Live, demo_secrets, engine_config_data
from tests.fixtures.waiting import eventually

EUR = {"symbol": "EURUSD"}
CLOSE_WAIT_S = 1.5  # the bound the engine waits for a close to show (timeouts.close_wait_s)


@pytest.fixture
async def realistic(tmp_path: Path) -> AsyncIterator[Sandbox]:
    seed = tmp_path / "seed.json"
    seed.write_text(
        json.dumps(
            {
                "profile": "realistic",
                "rngSeed": 7,
                "execution": {
                    "partialFillShare": 0,
                    "rejectAfterAcceptShare": 0,
                    "slippageShare": 0,
                },
                "accountRules": {"accounts": {"700002": {"marginHedgingType": "NETTING"}}},
            }
        )
    )
    sb = Sandbox(profile="realistic", seed_file=seed, price_interval_ms=0)
    assert sb.config.venue.execution.close == "iocThenGtc" and sb.config.venue.execution.depth
    await sb.start("127.0.0.1", 0)
    try:
        yield sb
    finally:
        await sb.stop()


async def start(sb: Sandbox, tmp_path: Path, stream: bool = False) -> Live:
    login = {"email": "env:SB_EMAIL", "password": "env:SB_PASSWORD"}
    if stream:
        login |= {
            "stream_url": sb.base_url.replace("http://", "ws://"),
            "developer_api_key": "env:DEV_KEY",
        }
    data = engine_config_data(sb.base_url, tmp_path, login=login)
    data["timeouts"]["close_wait_s"] = CLOSE_WAIT_S
    secrets = await demo_secrets(DEV_KEY=sb.state.config.developer_api_key)
    eng = await build_engine(parse_config(data), secrets=secrets, with_control=False, sources=[])
    lv = Live(sb, eng)

    def keep(topic: Any, ev: Event) -> None:
        lv.events.append(ev)
        if isinstance(ev, OutcomeEvent):
            lv.outcomes.append(ev)

    eng.bus.subscribe(keep)
    return lv


@pytest.fixture(params=["rest", "stream"])
async def live(
    realistic: Sandbox, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Live]:
    """The engine REST-only (a close is seen done by reading the venue's positions), and with
    the Streams API (seen done in the live account state, the venue read before "not done")."""
    lv = await start(realistic, tmp_path, stream=request.param == "stream")
    try:
        for stream in lv.engine.streams:
            await asyncio.wait_for(stream.wait_live(), 30)
        yield lv
    finally:
        await lv.engine.stop()


def fault(sb: Sandbox, **faults: Any) -> None:
    sb.state.faults.update(faults)


def next_quote(sb: Sandbox) -> None:
    """A new quote a tick away: the ladder refills and working closing orders fill at it."""
    quote = sb.state.prices.quote(sb.state.instrument_id("EURUSD"))
    sb.state.set_price("EURUSD", bid=quote.bid + 0.00001, ask=quote.ask + 0.00001)


async def test_a_close_left_working_is_reported_open_then_completes(live: Live) -> None:
    out = await live.run(
        id="m1", account="a1", action="place", type="market", side="buy", qty=1.0, **EUR
    )
    assert out.status == "accepted", out
    [pos] = live.sim_positions()
    fault(live.sandbox, partialFill={"CLOSE_POSITION": 1})  # the IOC closes half
    closed = await live.run(id="c1", account="a1", action="close", ref="m1", **EUR)
    # The venue took the close; half of it is a GTC closing order that has not filled.
    assert closed.status == "accepted", closed
    assert "not complete" in (closed.reason or "") and pos.id in (closed.reason or "")
    assert closed.remaining_qty == pytest.approx(0.5)
    [still] = live.sim_positions()
    assert still.qty == pytest.approx(0.5)
    working = [o for o in live.sim_orders() if o.is_open and o.position_id == pos.id]
    assert len(working) == 1 and working[0].validity == "GTC"
    next_quote(live.sandbox)  # the closing order fills
    assert live.sim_positions() == []


async def test_a_close_that_completes_in_time_is_accepted_without_remainder(live: Live) -> None:
    out = await live.run(
        id="m2", account="a1", action="place", type="market", side="buy", qty=0.4, **EUR
    )
    assert out.status == "accepted", out
    closed = await live.run(id="c2", account="a1", action="close", ref="m2", qty=0.1, **EUR)
    assert closed.status == "accepted" and closed.reason is None, closed
    assert closed.filled_qty == pytest.approx(0.1) and closed.remaining_qty == 0.0
    [pos] = live.sim_positions()
    assert pos.qty == pytest.approx(0.3)


async def test_reverse_waits_for_the_close_and_never_opens_while_it_is_working(
    live: Live,
) -> None:
    out = await live.run(
        id="m3", account="a1", action="place", type="market", side="buy", qty=1.0, **EUR
    )
    assert out.status == "accepted", out
    fault(live.sandbox, partialFill={"CLOSE_POSITION": 1})
    rev = await live.run(id="r3", account="a1", action="reverse", ref="m3", **EUR)
    # Half the position is still open behind a working closing order: no sell was sent.
    assert rev.status == "expired", rev
    assert "opposite side was not opened" in (rev.reason or "")
    assert rev.remaining_qty == pytest.approx(0.5) and rev.filled_qty == pytest.approx(0.5)
    assert not [o for o in live.sim_orders() if o.strategy_id == rev.tag]
    assert [p.side for p in live.sim_positions()] == ["buy"]
    next_quote(live.sandbox)
    assert live.sim_positions() == []
    # A reverse whose close completes opens the other side with the closed lots.
    buy = dict(account="a1", action="place", type="market", side="buy", qty=0.3, **EUR)
    await live.run(id="m4", **buy)
    rev = await live.run(id="r4", account="a1", action="reverse", ref="m4", **EUR)
    assert rev.status == "accepted", rev
    [opposite] = live.sim_positions()
    assert opposite.side == "sell" and opposite.qty == pytest.approx(0.3)
    assert opposite.strategy_id == rev.tag


async def test_reverse_on_a_netting_account_is_one_order_of_the_combined_size(
    live: Live,
) -> None:
    out = await live.run(
        id="n1", account="a2", action="place", type="market", side="buy", qty=0.5, **EUR
    )
    assert out.status == "accepted", out
    rev = await live.run(id="nr1", account="a2", action="reverse", ref="n1", **EUR)
    assert rev.status == "accepted", rev
    tagged = [o for o in live.sim_orders(2) if o.strategy_id == rev.tag]
    assert len(tagged) == 1 and tagged[0].qty == pytest.approx(1.0) and tagged[0].side == "sell"
    # No close was sent: the one order closed the buy and opened the sell.
    assert not [o for o in live.sim_orders(2) if o.role == "close"]
    [pos] = live.sim_positions(2)
    assert pos.side == "sell" and pos.qty == pytest.approx(0.5)


async def test_close_all_waits_for_working_closing_orders(live: Live) -> None:
    for i, qty in enumerate((1.0, 0.6)):
        out = await live.run(
            id=f"a{i}", account="a1", action="place", type="market", side="buy", qty=qty, **EUR
        )
        assert out.status == "accepted", out
    fault(live.sandbox, partialFill={"CLOSE_ALL_POSITIONS": 1})  # the first IOC closes half
    out = await live.run(id="xa", account="a1", action="close_all", **EUR)
    assert out.status == "accepted", out
    [left] = live.sim_positions()
    assert "not complete" in (out.reason or "") and left.id in (out.reason or "")
    assert out.remaining_qty == pytest.approx(left.qty)
    next_quote(live.sandbox)
    assert live.sim_positions() == []
    # With nothing left working, close-all reports done and nothing remaining.
    sell = dict(account="a1", action="place", type="market", side="sell", qty=0.2, **EUR)
    await live.run(id="a9", **sell)
    out = await live.run(id="xb", account="a1", action="close_all", **EUR)
    assert out.status == "accepted" and out.reason is None and out.remaining_qty == 0.0, out
    assert live.sim_positions() == []


async def test_the_stream_follows_a_partly_filled_order_to_its_end(
    realistic: Sandbox, tmp_path: Path
) -> None:
    """With the Streams API on: an IOC filled in part ends cancelled with its filled part; a GTC
    limit filled in part keeps working and its filled qty grows to the whole at the next quote.
    The tracker's record and the ``order_updates`` events say so."""
    lv = await start(realistic, tmp_path, stream=True)
    try:
        [stream] = lv.engine.streams
        await asyncio.wait_for(stream.wait_live(), 30)
        fault(realistic, partialFill={"PLACE_ORDER": 1})
        out = await lv.run(
            id="p1", account="a1", action="place", type="market", side="buy", qty=1.0, **EUR
        )
        assert out.status == "accepted", out
        rec = lv.engine.pipeline.tracker.by_signal("p1")
        assert rec is not None
        await eventually(lambda: rec.remaining_qty == 0.0, "the IOC's final update")
        assert rec.filled_qty == pytest.approx(0.5) and rec.avg_price is not None
        [pos] = lv.sim_positions()
        assert pos.qty == pytest.approx(0.5)
        # Known on the reply (the stream came first) or reported after it, against the leg.
        assert out.filled_qty in (None, pytest.approx(0.5))
        await eventually(lambda: out.filled_qty is not None or leg_fills(lv, "p1"), "p1's fill")
        known = leg_fills(lv, "p1")[-1] if leg_fills(lv, "p1") else out
        assert known.filled_qty == pytest.approx(0.5)
        final = [u for u in updates(lv, out.order_id) if u.event == "cancelled"]
        assert len(final) == 1 and final[0].filled_qty == pytest.approx(0.5)

        quote = realistic.state.prices.quote(realistic.state.instrument_id("EURUSD"))
        fault(realistic, partialFill={"PLACE_ORDER": 1})
        out = await lv.run(
            id="p2",
            account="a1",
            action="place",
            type="limit",
            side="buy",
            qty=0.4,
            price=round(quote.ask + 0.0001, 5),
            **EUR,
        )
        assert out.status == "accepted", out
        rec = lv.engine.pipeline.tracker.by_signal("p2")
        assert rec is not None
        await eventually(lambda: rec.filled_qty is not None, "the first part's update")
        assert rec.filled_qty == pytest.approx(0.2) and rec.remaining_qty == pytest.approx(0.2)
        working = [o for o in lv.sim_orders() if o.id == out.order_id]
        assert working[0].is_open and working[0].filled_qty == pytest.approx(0.2)
        next_quote(realistic)  # the rest fills at the next quote
        await eventually(lambda: rec.remaining_qty == 0.0, "the order's last fill")
        assert rec.filled_qty == pytest.approx(0.4)
        fills = [u.filled_qty for u in updates(lv, out.order_id) if u.filled_qty is not None]
        assert fills == sorted(fills) and fills[-1] == pytest.approx(0.4)
        await eventually(lambda: leg_fills(lv, "p2"), "p2's fills reported against the leg")
        assert leg_fills(lv, "p2")[-1].filled_qty == pytest.approx(0.4)
        assert leg_fills(lv, "p2")[-1].tag == out.tag
    finally:
        await lv.engine.stop()


def updates(lv: Live, order_id: str | None) -> list[OrderUpdate]:
    return [e for e in lv.events if isinstance(e, OrderUpdate) and e.order_id == order_id]


def leg_fills(lv: Live, leg: str) -> list[OrderUpdate]:
    """The fills reported against a signal leg after its outcome (order_updates kind fill)."""
    return [
        e for e in lv.events if isinstance(e, OrderUpdate) and e.kind == "fill" and e.signal == leg
    ]


async def test_a_partial_close_whose_position_cannot_be_read_is_not_sent(live: Live) -> None:
    out = await live.run(
        id="m5", account="a1", action="place", type="market", side="buy", qty=0.4, **EUR
    )
    assert out.status == "accepted", out
    [pos] = live.sim_positions()
    fault(live.sandbox, error5xx={"POSITIONS": 1.0})  # every positions read: 503
    try:
        closed = await live.run(
            id="c5", account="a1", action="close", position_id=pos.id, qty=0.1, **EUR
        )
    finally:
        live.sandbox.state.faults.clear()
    # Nothing was sent: "not sent", never an unknown outcome, and the position is whole.
    assert closed.status == "expired", closed
    assert (closed.reason or "").startswith("not sent: the account's positions could not be read")
    [still] = live.sim_positions()
    assert still.qty == pytest.approx(0.4)
