"""docs/api-reference.md section 7: placing, triggering, rejecting, modifying, cancelling orders."""

from __future__ import annotations

from tests.sim.client import ACCOUNT, EURUSD, Wire


async def test_market_buy_fills_at_the_ask_into_a_new_position(wire: Wire) -> None:
    wire.sb.state.set_price(EURUSD, bid=1.10000, ask=1.10010)
    order_id = await wire.place_ok(qty="0.10", side="buy", strategyId="tag-1")
    positions = await wire.table("positions")
    assert len(positions) == 1
    p = positions[0]
    assert p["id"] != order_id and p["avgPrice"] == "1.10010" and p["side"] == "buy"
    assert p["strategyId"] == "tag-1" and int(p["id"]) < 2**63
    history = await wire.table("ordersHistory")
    assert [(h["id"], h["status"], h["positionId"]) for h in history] == [
        (order_id, "Filled", p["id"])
    ]
    assert await wire.table("orders") == []
    fills = await wire.table("executions")
    assert fills[0]["orderId"] == order_id and fills[0]["price"] == "1.10010"


async def test_market_sell_fills_at_the_bid(wire: Wire) -> None:
    wire.sb.state.set_price(EURUSD, bid=1.10000, ask=1.10010)
    await wire.place_ok(side="sell")
    (p,) = await wire.table("positions")
    assert p["avgPrice"] == "1.10000" and p["side"] == "sell"


async def test_limit_order_rests_then_fills_when_the_price_reaches_it(wire: Wire) -> None:
    wire.sb.state.set_price(EURUSD, bid=1.10000, ask=1.10010)
    order_id = await wire.place_ok(type="limit", validity="GTC", price="1.09500")
    (working,) = await wire.table("orders")
    assert working["id"] == order_id and working["status"] == "New"
    assert working["isOpen"] == "true"
    assert await wire.table("positions") == []
    wire.sb.state.set_price(EURUSD, bid=1.09480, ask=1.09490)
    assert await wire.table("orders") == []
    (p,) = await wire.table("positions")
    assert p["avgPrice"] == "1.09490"


async def test_stop_order_triggers_when_the_market_trades_through(wire: Wire) -> None:
    wire.sb.state.set_price(EURUSD, bid=1.10000, ask=1.10010)
    await wire.place_ok(type="stop", validity="GTC", side="sell", stopPrice="1.09000")
    wire.sb.state.set_price(EURUSD, bid=1.09100, ask=1.09110)
    assert await wire.table("positions") == []
    wire.sb.state.set_price(EURUSD, bid=1.08990, ask=1.09000)
    (p,) = await wire.table("positions")
    assert p["side"] == "sell" and p["avgPrice"] == "1.08990"


async def test_marketable_limit_fills_immediately(wire: Wire) -> None:
    wire.sb.state.set_price(EURUSD, bid=1.10000, ask=1.10010)
    await wire.place_ok(type="limit", validity="GTC", side="sell", price="0.50000")
    (p,) = await wire.table("positions")
    assert p["avgPrice"] == "1.10000"


async def test_business_rejections_are_http_200_with_errmsg(wire: Wire) -> None:
    cases = [
        ({"qty": "0.001"}, "minimum lot"),
        ({"qty": "0.123"}, "lot step"),
        ({"qty": "-0.05"}, "positive"),
        ({"qty": "1000"}, "maximum lot"),
        ({"validity": "GTC"}, "TimeInForce"),
        ({"type": "limit", "validity": "IOC", "price": "1.0"}, "TimeInForce"),
        ({"type": "stop", "validity": "GTC"}, "stopPrice"),
        ({"type": "limit", "validity": "GTC"}, "price"),
        ({"type": "limit", "validity": "GTC", "price": "1.000001"}, "tick"),
        ({"takeProfit": "1.5"}, "takeProfitType"),
        ({"stopLoss": "1.0"}, "stopLossType"),
        ({"stopLossType": "trailingOffset"}, "trStopOffset"),
        ({"stopLoss": "9.0", "stopLossType": "absolute"}, "stop loss"),
        ({"routeId": "9002"}, "TRADE route"),
        ({"tradableInstrumentId": "1"}, "not found"),
    ]
    for fields, text in cases:
        status, body = await wire.place(**fields)
        assert status == 200 and body["s"] == "error", (fields, body)
        assert text in body["errmsg"], (fields, body)
    assert await wire.table("ordersHistory") == [] and await wire.table("positions") == []


async def test_schema_errors_are_http_400(wire: Wire) -> None:
    status, body = await wire.place(strategyId="x" * 33)
    assert status == 400 and "32" in body["errmsg"]
    status, _ = await wire.place(side="BUY")
    assert status == 400
    status, _ = await wire.place(qty="lots")
    assert status == 400
    status, _ = await wire.place(qty=None)
    assert status == 400
    status, _ = await wire.call(
        "POST",
        f"/trade/accounts/{ACCOUNT}/orders",
        data=b"{not json",
        headers={**wire.headers(), "Content-Type": "application/json"},
    )
    assert status == 400
    assert await wire.place_ok(strategyId="y" * 31)


async def test_modify_order_returns_the_row_and_moves_last_modified(wire: Wire) -> None:
    wire.sb.state.set_price(EURUSD, bid=1.10000, ask=1.10010)
    order_id = await wire.place_ok(type="limit", validity="GTC", price="1.09000")
    (before,) = await wire.table("orders")
    status, body = await wire.call(
        "PATCH", f"/trade/orders/{order_id}", json={"price": "1.08000", "qty": "0.20"}
    )
    assert status == 200 and body["s"] == "ok"
    row = body["d"]["orders"][0]
    assert row[0] == order_id and row[3] == "0.20" and row[9] == "1.08000"
    (after,) = await wire.table("orders")
    assert int(after["lastModified"]) > int(before["lastModified"])
    status, body = await wire.call("PATCH", f"/trade/orders/{order_id}", json={"qty": "0.005"})
    assert status == 200 and body["s"] == "error"


async def test_cancel_moves_the_order_to_history_and_a_second_cancel_is_refused(
    wire: Wire,
) -> None:
    order_id = await wire.place_ok(type="limit", validity="GTC", price="0.90000")
    status, body = await wire.call("DELETE", f"/trade/orders/{order_id}")
    assert status == 200 and body == {"s": "ok"}
    (h,) = await wire.table("ordersHistory")
    assert h["status"] == "Cancelled" and h["isOpen"] == "false"
    status, body = await wire.call("DELETE", f"/trade/orders/{order_id}")
    assert status == 200 and body["s"] == "error"
    status, _ = await wire.call("DELETE", "/trade/orders/123456")
    assert status == 404


async def test_cancel_all_can_be_limited_to_one_instrument(wire: Wire) -> None:
    await wire.place_ok(type="limit", validity="GTC", price="0.90000")
    await wire.place_ok(type="limit", validity="GTC", price="0.91000")
    await wire.place_ok(
        tradableInstrumentId="301", routeId="9002", type="limit", validity="GTC", price="100.00"
    )
    status, _ = await wire.call(
        "DELETE", f"/trade/accounts/{ACCOUNT}/orders", params={"tradableInstrumentId": EURUSD}
    )
    assert status == 200
    assert [o["tradableInstrumentId"] for o in await wire.table("orders")] == ["301"]
    await wire.call("DELETE", f"/trade/accounts/{ACCOUNT}/orders")
    assert await wire.table("orders") == []


async def test_orders_history_reports_has_more_beyond_the_cap_and_filters_by_time(
    wire: Wire,
) -> None:
    wire.sb.state.config.max_orders_in_history = 3
    ids = [await wire.place_ok() for _ in range(5)]
    status, body = await wire.call("GET", f"/trade/accounts/{ACCOUNT}/ordersHistory")
    assert status == 200
    assert body["d"]["hasMore"] is True and len(body["d"]["ordersHistory"]) == 3
    assert [r[0] for r in body["d"]["ordersHistory"]] == ids[2:]
    oldest_returned = int(body["d"]["ordersHistory"][0][13])
    rest = await wire.table("ordersHistory", to=oldest_returned - 1)
    assert [r["id"] for r in rest] == ids[:2]
    _, body = await wire.call(
        "GET", f"/trade/accounts/{ACCOUNT}/ordersHistory", params={"to": oldest_returned - 1}
    )
    assert body["d"]["hasMore"] is False
