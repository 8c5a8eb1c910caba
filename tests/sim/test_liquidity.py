"""Execution realism: a depth ladder per instrument, partial fills, IOC remainders, closes that go
GTC, rejections after acceptance, slippage. Each test switches on what it tests (seed or fault);
the default (fast) sandbox keeps unlimited liquidity at the touch."""

from __future__ import annotations

from typing import Any

from tests.sim.client import EURUSD, Wire
from tests.sim.venue import close, faults, history, stream_log, venue

# EURUSD offering 1 lot at the touch, 2 one tick away, 3 two ticks away (each side).
LADDER = {"instruments": [{"base": "EURUSD", "depth": [1, 2, 3]}]}
DEPTH = {**LADDER, "execution": {"depth": True}}


def still(wire: Wire, bid: float = 1.10000, ask: float = 1.10010) -> None:
    wire.sb.state.set_price(EURUSD, bid=bid, ask=ask)


async def test_a_market_order_larger_than_the_touch_fills_in_parts_at_worse_prices() -> None:
    async with venue(DEPTH) as wire:
        still(wire)
        order_id = await wire.place_ok(qty="2.50")
        row = (await history(wire))[order_id]
        assert (row["status"], row["filledQty"], row["avgPrice"]) == ("Filled", "2.50", "1.10011")
        fills = [(f["qty"], f["price"]) for f in await wire.table("executions")]
        assert fills == [("1.00", "1.10010"), ("1.50", "1.10011")]
        (p,) = await wire.table("positions")
        assert p["qty"] == "2.50" and p["avgPrice"] == "1.10011"


async def test_an_ioc_remainder_beyond_the_ladder_is_cancelled() -> None:
    async with venue(DEPTH) as wire:
        still(wire)
        order_id = await wire.place_ok(qty="7.00")
        row = (await history(wire))[order_id]
        assert (row["status"], row["filledQty"]) == ("Cancelled", "6.00")
        assert row["avgPrice"] == "1.10011"  # (1 x .10010 + 2 x .10011 + 3 x .10012) / 6
        (p,) = await wire.table("positions")
        assert p["qty"] == "6.00"


async def test_liquidity_taken_stays_taken_until_the_quote_changes() -> None:
    async with venue(DEPTH) as wire:
        still(wire)
        await wire.place_ok(qty="1.00")
        q = {"tradableInstrumentId": EURUSD, "routeId": 9101}
        _, depth = await wire.call("GET", "/trade/depth", params=q)
        assert depth["d"]["asks"] == [[1.1001, 0.0], [1.10011, 2.0], [1.10012, 3.0]]
        assert depth["d"]["bids"][0] == [1.1, 1.0]
        second = await wire.place_ok(qty="1.00")
        assert (await history(wire))[second]["avgPrice"] == "1.10011"
        still(wire)  # a new quote: the ladder is whole again
        third = await wire.place_ok(qty="1.00")
        assert (await history(wire))[third]["avgPrice"] == "1.10010"


async def test_a_resting_limit_fills_in_parts_as_the_price_trades_through() -> None:
    async with venue(DEPTH) as wire:
        still(wire)
        messages = stream_log(wire)
        order_id = await wire.place_ok(type="limit", validity="GTC", qty="3.00", price="1.09950")
        still(wire, bid=1.09940, ask=1.09950)  # only the touch is at or below the limit
        (working,) = await wire.table("orders")
        assert working["id"] == order_id and working["isOpen"] == "true"
        assert (working["filledQty"], working["avgPrice"]) == ("1.00", "1.09950")
        (p,) = await wire.table("positions")
        assert p["qty"] == "1.00"
        partial = [m for m in messages if m["type"] == "OpenOrder" and m["orderId"] == order_id]
        assert partial[-1]["status"] == "PENDING"
        assert (partial[-1]["filledQty"], partial[-1]["avgPrice"]) == ("1.00", "1.09950")
        still(wire, bid=1.09930, ask=1.09940)
        assert await wire.table("orders") == []
        row = (await history(wire))[order_id]
        assert (row["status"], row["filledQty"], row["avgPrice"]) == ("Filled", "3.00", "1.09944")
        (p,) = await wire.table("positions")  # one order, one position, grown by each part
        assert p["qty"] == "3.00" and p["avgPrice"] == "1.09944"
        done = [m for m in messages if m["type"] == "OpenOrder" and m["orderId"] == order_id]
        assert done[-1]["status"] == "EXECUTED" and "filledQty" not in done[-1]


async def test_without_depth_the_ladder_is_only_shown_and_every_order_fills_at_the_touch() -> None:
    async with venue(LADDER) as wire:
        still(wire)
        order_id = await wire.place_ok(qty="10.00")
        row = (await history(wire))[order_id]
        assert (row["status"], row["filledQty"], row["avgPrice"]) == ("Filled", "10.00", "1.10010")


async def test_the_partial_fill_fault_acts_once_and_only_on_the_route_named() -> None:
    async with venue({}) as wire:
        still(wire)
        await faults(wire, {"partialFill": {"CLOSE_POSITION": 1}})
        untouched = await wire.place_ok(qty="0.10")
        assert (await history(wire))[untouched]["filledQty"] == "0.10"
        (p,) = await wire.table("positions")
        await close(wire, p["id"])  # the close takes the fault: half closes, the IOC rest is gone
        (p,) = await wire.table("positions")
        assert p["qty"] == "0.05" and await wire.table("orders") == []
        await faults(wire, {"partialFill": {"PLACE_ORDER": 1}})
        halved = await wire.place_ok(qty="0.10")
        row = (await history(wire))[halved]
        assert (row["status"], row["filledQty"]) == ("Cancelled", "0.05")
        whole = await wire.place_ok(qty="0.10")
        assert (await history(wire))[whole]["status"] == "Filled"


async def test_a_close_is_an_ioc_then_a_working_gtc_closing_order() -> None:
    seed = {"execution": {"close": "iocThenGtc"}}
    async with venue(seed, faults={"partialFill": {"CLOSE_POSITION": 1}}) as wire:
        still(wire)
        await wire.place_ok(qty="0.10")
        (p,) = await wire.table("positions")
        await close(wire, p["id"])
        (left,) = await wire.table("positions")
        assert left["id"] == p["id"] and left["qty"] == "0.05"
        (gtc,) = await wire.table("orders")
        assert (gtc["type"], gtc["validity"], gtc["qty"]) == ("market", "GTC", "0.05")
        assert gtc["positionId"] == p["id"] and gtc["side"] == "sell"
        ioc = [h for h in (await history(wire)).values() if h["validity"] == "IOC"]
        assert [(h["side"], h["status"], h["filledQty"]) for h in ioc] == [
            ("buy", "Filled", "0.10"),
            ("sell", "Cancelled", "0.05"),
        ]
        still(wire, bid=1.10020, ask=1.10030)  # liquidity returns with the next quote
        assert await wire.table("positions") == [] and await wire.table("orders") == []
        assert (await history(wire))[gtc["id"]]["status"] == "Filled"


async def test_under_the_realistic_preset_a_close_waits_for_liquidity() -> None:
    seed = {
        "instruments": [{"base": "EURUSD", "depth": [1, 1]}],
        "execution": {
            "preset": "realistic",
            "partialFillShare": 0,
            "rejectAfterAcceptShare": 0,
            "slippageShare": 0,
        },
        "marketHours": {"preset": "fast"},
    }
    async with venue(seed) as wire:
        still(wire)
        await wire.place_ok(qty="2.00")
        still(wire)
        await wire.place_ok(qty="2.00")
        first, second = await wire.table("positions")
        await close(wire, first["id"])  # takes both bid levels
        await close(wire, second["id"])  # nothing left at any level: all of it goes GTC
        (p,) = await wire.table("positions")
        assert p["id"] == second["id"] and p["qty"] == "2.00"
        (gtc,) = await wire.table("orders")
        assert (gtc["validity"], gtc["qty"]) == ("GTC", "2.00")
        still(wire)
        assert await wire.table("positions") == []


async def test_an_order_accepted_then_rejected_shows_rejected_in_history() -> None:
    async with venue({}, faults={"rejectAfterAccept": {"PLACE_ORDER": 1}}) as wire:
        still(wire)
        messages = stream_log(wire)
        order_id = await wire.place_ok(qty="0.10")  # the reply is ok, with an order id
        assert await wire.table("positions") == [] and await wire.table("orders") == []
        row = (await history(wire))[order_id]
        assert (row["status"], row["filledQty"], row["isOpen"]) == ("Rejected", "0.00", "false")
        statuses = [m["status"] for m in messages if m.get("orderId") == order_id]
        assert statuses == ["PENDING", "REJECTED"]
        assert await wire.place_ok(qty="0.10")
        assert len(await wire.table("positions")) == 1


async def test_slippage_moves_the_market_against_a_market_order_before_it_fills() -> None:
    seed = {"execution": {"slippageTicks": 3}}
    async with venue(seed, faults={"slippage": {"PLACE_ORDER": 1}}) as wire:
        still(wire)
        slipped = await wire.place_ok(side="buy")
        assert (await history(wire))[slipped]["avgPrice"] == "1.10013"
        q = {"tradableInstrumentId": EURUSD, "routeId": 9101}
        _, quote = await wire.call("GET", "/trade/quotes", params=q)
        assert (quote["d"]["bp"], quote["d"]["ap"]) == (1.10003, 1.10013)
        clean = await wire.place_ok(side="sell")
        assert (await history(wire))[clean]["avgPrice"] == "1.10003"


async def test_shares_in_the_seed_apply_to_every_order() -> None:
    async with venue({"execution": {"partialFillShare": 1.0}}) as wire:
        still(wire)
        rows: list[dict[str, Any]] = []
        for _ in range(3):
            order_id = await wire.place_ok(qty="0.10")
            rows.append((await history(wire))[order_id])
        assert {(r["status"], r["filledQty"]) for r in rows} == {("Cancelled", "0.05")}
    async with venue({"execution": {"rejectAfterAcceptShare": 1.0}}) as wire:
        still(wire)
        order_id = await wire.place_ok(qty="0.10")
        assert (await history(wire))[order_id]["status"] == "Rejected"
