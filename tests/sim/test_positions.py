"""docs/api-reference.md sections 6.4, 6.5, 7.4: SL/TP legs, hedging, closes, account state."""

from __future__ import annotations

from typing import Any

import pytest

from tests.sim.client import ACCOUNT, EURUSD, Wire


@pytest.fixture(autouse=True)
def still_market(wire: Wire) -> None:
    wire.sb.state.set_price(EURUSD, bid=1.10000, ask=1.10010)


async def test_sl_and_tp_become_working_orders_referenced_by_the_position(wire: Wire) -> None:
    await wire.place_ok(
        stopLoss="20", stopLossType="offset", takeProfit="1.10500", takeProfitType="absolute"
    )
    (p,) = await wire.table("positions")
    legs = {o["id"]: o for o in await wire.table("orders")}
    sl, tp = legs[p["stopLossId"]], legs[p["takeProfitId"]]
    assert sl["type"] == "stop" and sl["side"] == "sell" and sl["stopPrice"] == "1.09810"
    assert tp["type"] == "limit" and tp["price"] == "1.10500"
    assert sl["positionId"] == tp["positionId"] == p["id"]


async def test_take_profit_fill_closes_the_position_cancels_the_sl_and_books_pnl(
    wire: Wire,
) -> None:
    await wire.place_ok(
        qty="1.00",
        stopLoss="1.09000",
        stopLossType="absolute",
        takeProfit="1.10500",
        takeProfitType="absolute",
    )
    wire.sb.state.set_price(EURUSD, bid=1.10500, ask=1.10510)
    assert await wire.table("positions") == [] and await wire.table("orders") == []
    statuses = sorted(h["status"] for h in await wire.table("ordersHistory"))
    assert statuses == ["Cancelled", "Filled", "Filled"]
    state = await wire.state()
    assert state["balance"] == pytest.approx(100_000 + (1.10500 - 1.10010) * 100_000)


async def test_trailing_stop_follows_the_price_up_but_never_down(wire: Wire) -> None:
    await wire.place_ok(stopLoss="10", stopLossType="trailingOffset", trStopOffset="10")
    (p,) = await wire.table("positions")

    async def stop() -> str:
        legs = {o["id"]: o for o in await wire.table("orders")}
        return str(legs[p["stopLossId"]]["stopPrice"])

    assert await stop() == "1.09910"
    wire.sb.state.set_price(EURUSD, bid=1.10300, ask=1.10310)
    assert await stop() == "1.10200"
    wire.sb.state.set_price(EURUSD, bid=1.10250, ask=1.10260)
    assert await stop() == "1.10200"
    wire.sb.state.set_price(EURUSD, bid=1.10190, ask=1.10200)
    assert await wire.table("positions") == []


async def test_modify_position_sets_then_null_removes_sl_and_tp(wire: Wire) -> None:
    await wire.place_ok()
    (p,) = await wire.table("positions")
    path = f"/trade/positions/{p['id']}"
    status, body = await wire.call(
        "PATCH", path, json={"stopLoss": "1.09000", "takeProfit": "1.12000"}
    )
    assert status == 200 and body == {"s": "ok"}
    (p,) = await wire.table("positions")
    legs = {o["id"]: o for o in await wire.table("orders")}
    assert legs[p["stopLossId"]]["stopPrice"] == "1.09000"
    assert legs[p["takeProfitId"]]["price"] == "1.12000"
    await wire.call("PATCH", path, json={"stopLoss": None})
    (p,) = await wire.table("positions")
    assert p["stopLossId"] is None and p["takeProfitId"] is not None
    await wire.call("PATCH", path, json={"takeProfit": None})
    (p,) = await wire.table("positions")
    assert p["takeProfitId"] is None and await wire.table("orders") == []
    status, body = await wire.call("PATCH", path, json={"stopLoss": "1.20000"})
    assert status == 200 and body["s"] == "error"  # a buy's stop above the market


async def test_partial_close_reduces_the_position_and_its_legs(wire: Wire) -> None:
    await wire.place_ok(qty="0.50", stopLoss="1.09000", stopLossType="absolute")
    (p,) = await wire.table("positions")
    status, body = await wire.call("DELETE", f"/trade/positions/{p['id']}", json={"qty": "0.20"})
    assert status == 200 and body == {"s": "ok"}
    (after,) = await wire.table("positions")
    assert after["id"] == p["id"] and after["qty"] == "0.30"
    (sl,) = await wire.table("orders")
    assert sl["qty"] == "0.30"
    status, body = await wire.call("DELETE", f"/trade/positions/{p['id']}", json={"qty": "0.40"})
    assert status == 200 and body["s"] == "error"
    status, _ = await wire.call("DELETE", f"/trade/positions/{p['id']}", json={"qty": "0"})
    assert status == 200
    assert await wire.table("positions") == [] and await wire.table("orders") == []
    status, _ = await wire.call("DELETE", f"/trade/positions/{p['id']}", json={"qty": "0"})
    assert status == 404


async def test_opposite_orders_hedge_into_two_positions(wire: Wire) -> None:
    await wire.place_ok(qty="0.01", side="buy")
    await wire.place_ok(qty="0.03", side="sell")
    sides = sorted((p["side"], p["qty"]) for p in await wire.table("positions"))
    assert sides == [("buy", "0.01"), ("sell", "0.03")]


async def test_close_all_can_filter_by_strategy_and_instrument(wire: Wire) -> None:
    await wire.place_ok(strategyId="keep")
    await wire.place_ok(strategyId="drop")
    await wire.place_ok(strategyId="drop", tradableInstrumentId="301", routeId="9002", qty="1.00")
    await wire.call(
        "DELETE",
        f"/trade/accounts/{ACCOUNT}/positions",
        params={"strategyId": "drop", "tradableInstrumentId": EURUSD},
    )
    left = sorted(
        (p["strategyId"], p["tradableInstrumentId"]) for p in await wire.table("positions")
    )
    assert left == [("drop", "301"), ("keep", "278")]
    status, body = await wire.call("DELETE", f"/trade/accounts/{ACCOUNT}/positions")
    assert status == 200 and body["s"] == "ok" and await wire.table("positions") == []


async def test_state_is_consistent_with_positions_and_pnl(wire: Wire) -> None:
    await wire.place_ok(qty="1.00")  # buy at 1.10010
    await wire.place_ok(qty="0.50", type="limit", validity="GTC", price="1.05000")
    wire.sb.state.set_price(EURUSD, bid=1.10110, ask=1.10120)
    s: dict[str, Any] = await wire.state()
    assert s["balance"] == 100_000
    assert s["openGrossPnL"] == pytest.approx(100.0)
    assert s["projectedBalance"] == pytest.approx(s["balance"] + s["openGrossPnL"])
    assert s["positionsCount"] == 1 and s["ordersCount"] == 1
    assert s["initialMarginReq"] == pytest.approx(1.10010 * 100_000 / 100, abs=0.01)
    assert s["availableFunds"] == pytest.approx(s["projectedBalance"] - s["initialMarginReq"])
    (p,) = await wire.table("positions")
    assert p["unrealizedPl"] == "100.00"
    await wire.call("DELETE", f"/trade/positions/{p['id']}", json={"qty": "0"})
    s = await wire.state()
    assert s["balance"] == pytest.approx(100_100.0) and s["openGrossPnL"] == 0
    assert s["todayGross"] == pytest.approx(100.0) and s["todayTradesCount"] == 2


async def test_insufficient_margin_is_rejected(wire: Wire) -> None:
    status, body = await wire.place(tradableInstrumentId="206", routeId="9003", qty="10.00")
    assert status == 200 and body["s"] == "error" and "money" in body["errmsg"]


async def test_stream_listener_sees_fill_position_and_close_in_order(wire: Wire) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    wire.sb.state.add_stream_listener(lambda acc, msg: seen.append((acc, msg)))
    await wire.place_ok(stopLoss="1.09000", stopLossType="absolute")
    (p,) = await wire.table("positions")
    await wire.call("DELETE", f"/trade/positions/{p['id']}", json={"qty": "0"})
    kinds = [(m["type"], m.get("status")) for _, m in seen]
    assert kinds[0] == ("OpenOrder", "EXECUTED")
    assert ("Position", None) in kinds and ("ClosePosition", None) in kinds
    assert kinds.index(("ClosePosition", None)) > kinds.index(("Position", None))
    position_msg = next(m for _, m in seen if m["type"] == "Position")
    assert position_msg["side"] == "BUY" and position_msg["instrument"] == "EURUSD"
    assert position_msg["lots"] == "0.10" and position_msg["stopLossLimit"] == "1.09000"
    assert {acc for acc, _ in seen} == {ACCOUNT}
    snapshot = wire.sb.state.stream_snapshot(ACCOUNT)
    assert [m["type"] for m in snapshot] == ["AccountStatus"]
