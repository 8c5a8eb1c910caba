"""Partial fills and slow closes in process: the pipeline on the PaperVenue with thin liquidity
(``liquidity=0.5``: one execution fills at most half a lot; a market order's rest is cancelled, a
limit order fills in parts, a close's rest becomes a working GTC closing order that fills at the
next quote), the venue's stream events relayed into the pipeline as the daemon does. The same
behaviour against the sandbox's realistic profile: tests/e2e/test_partial_fills.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.model.events import OrderUpdate
from engine.venue.paper import PaperVenue
from tests.execution.conftest import Harness, build
from tests.fixtures.waiting import eventually

EUR = 278
QUOTE = (1.10000, 1.10010)


@pytest.fixture
async def thin(tmp_path: Path) -> AsyncIterator[Harness]:
    h = await build(tmp_path, PaperVenue(("a1",), liquidity=0.5), aliases=("a1",))
    h.pipeline.close_wait_s = 0.3

    async def relay() -> None:
        async for event in h.venue.events():
            h.pipeline.apply_venue_event(event)

    task = asyncio.create_task(relay())
    try:
        yield h
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await h.pipeline.close()
        await h.book.close()
        await h.journal.close()


def fills(h: Harness, leg: str) -> list[OrderUpdate]:
    return [
        u for u in h.updates if isinstance(u, OrderUpdate) and u.kind == "fill" and u.signal == leg
    ]


def next_quote(h: Harness) -> None:
    h.venue.set_quote(EUR, *QUOTE)


async def one_lot_position(h: Harness, leg: str) -> str:
    """A buy limit through the market: half fills now, half at the next quote, one position."""
    out = await h.run(
        id=leg, account="a1", action="place", symbol="EURUSD", type="limit", side="buy",
        qty=1.0, price=1.2,
    )  # fmt: skip
    assert out.status == "accepted", out
    rec = h.pipeline.tracker.by_signal(leg)
    assert rec is not None
    await eventually(lambda: rec.filled_qty == 0.5, "the first half's fill")
    assert rec.remaining_qty == 0.5
    next_quote(h)
    await eventually(lambda: rec.remaining_qty == 0.0, "the second half's fill")
    assert rec.filled_qty == 1.0 and [f.filled_qty for f in fills(h, leg)][-1] == 1.0
    [position] = await h.venue.positions("a1")
    assert position.qty == 1.0
    return position.position_id


async def test_a_market_order_filled_in_part_reports_the_filled_part(thin: Harness) -> None:
    out = await thin.run(
        id="m1", account="a1", action="place", symbol="EURUSD", type="market", side="buy", qty=1.0
    )
    assert out.status == "accepted", out
    await eventually(lambda: out.filled_qty is not None or fills(thin, "m1"), "m1's fill")
    known = fills(thin, "m1")[-1] if fills(thin, "m1") else out
    assert (known.filled_qty, known.remaining_qty) == (0.5, 0.0)  # the IOC's rest: cancelled
    [order] = [o for o in await thin.venue.orders_history("a1") if o.order_id == out.order_id]
    assert order.status == "Cancelled" and order.filled_qty == 0.5


async def test_a_close_left_working_says_what_is_open(thin: Harness) -> None:
    position_id = await one_lot_position(thin, "l1")
    out = await thin.run(id="c1", account="a1", action="close", position_id=position_id)
    assert out.status == "accepted" and out.remaining_qty == 0.5, out
    assert "not complete" in (out.reason or "")
    [working] = await thin.venue.orders("a1")
    assert working.validity == "GTC" and working.position_id == position_id
    next_quote(thin)
    assert await thin.venue.positions("a1") == []
    assert await thin.venue.orders("a1") == []


async def test_a_reverse_does_not_open_the_other_side_while_its_close_works(
    thin: Harness,
) -> None:
    position_id = await one_lot_position(thin, "l2")
    out = await thin.run(id="r1", account="a1", action="reverse", position_id=position_id)
    assert out.status == "expired", out
    assert (out.filled_qty, out.remaining_qty) == (0.5, 0.5)
    tagged = await thin.venue.find_by_tag("a1", out.tag or "")
    assert not tagged.found
    next_quote(thin)
    assert await thin.venue.positions("a1") == []


async def test_close_all_names_what_remains(thin: Harness) -> None:
    position_id = await one_lot_position(thin, "l3")
    out = await thin.run(id="x1", account="a1", action="close_all")
    assert out.status == "accepted" and out.remaining_qty == 0.5, out
    assert position_id in (out.reason or "")
    next_quote(thin)
    out = await thin.run(id="x2", account="a1", action="close_all")
    assert out.status == "accepted" and out.reason is None and out.remaining_qty == 0.0, out


class _Kill:
    engaged = False
    reason = "operator stop"


@pytest.mark.parametrize("why", ["kill switch", "age"])
async def test_a_reverse_opens_nothing_if_its_signal_may_no_longer_trade_once_closed(
    thin: Harness, why: str
) -> None:
    """The close completes (its GTC rest fills at a quote the test sets) while the kill switch
    engages, or after the signal passed max_signal_age_ms (the limit is lowered to 1 ms while
    the close works: the signal is then older than it): the opposite order is not sent."""
    thin.pipeline.close_wait_s = 60.0  # a hang guard: the test completes the close itself
    kill = _Kill()
    thin.pipeline.kill_switch = kill
    position_id = await one_lot_position(thin, "l4")
    thin.send(id="r4", account="a1", action="reverse", position_id=position_id)

    async def closing_order_working() -> bool:
        return bool(await thin.venue.orders("a1"))

    await eventually(closing_order_working, "the close's GTC rest working")
    if why == "kill switch":
        kill.engaged = True
    else:
        thin.pipeline.max_age_ns = 1_000_000
    next_quote(thin)  # the rest of the close fills
    await thin.pipeline.drain()
    out = thin.outcome("r4")
    assert out.status == "expired", out
    assert "was closed; the opposite side was not opened" in (out.reason or "")
    assert ("kill switch" if why == "kill switch" else "max_signal_age_ms") in (out.reason or "")
    assert (out.filled_qty, out.remaining_qty) == (1.0, 0.0)
    assert await thin.venue.positions("a1") == []
    assert not (await thin.venue.find_by_tag("a1", out.tag or "")).found
