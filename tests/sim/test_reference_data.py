"""docs/api-reference.md sections 2, 5, 6: config, accounts, instruments, routes, market data."""

from __future__ import annotations

from sandbox.seed import RATE_LIMIT_TYPES
from tests.sim.client import ACCOUNT, BTCUSD, EURUSD, GBPUSD, US30, Wire

ORDER_COLUMNS = [
    "id",
    "tradableInstrumentId",
    "routeId",
    "qty",
    "side",
    "type",
    "status",
    "filledQty",
    "avgPrice",
    "price",
    "stopPrice",
    "validity",
    "expireDate",
    "createdDate",
    "lastModified",
    "isOpen",
    "positionId",
    "stopLoss",
    "stopLossType",
    "takeProfit",
    "takeProfitType",
    "strategyId",
]


async def test_config_announces_columns_rate_limits_and_limits_in_tradelockers_shape(
    wire: Wire,
) -> None:
    status, body = await wire.call("GET", "/trade/config")
    assert status == 200 and body["s"] == "ok"
    d = body["d"]
    assert list(d) == [
        "customerAccess",
        "positionsConfig",
        "ordersConfig",
        "ordersHistoryConfig",
        "filledOrdersConfig",
        "accountDetailsConfig",
        "rateLimits",
        "limits",
    ]
    cols = {k: [c["id"] for c in d[k]["columns"]] for k in d if k.endswith("Config")}
    assert cols["ordersConfig"] == ORDER_COLUMNS == cols["ordersHistoryConfig"]
    assert len(cols["positionsConfig"]) == 11 and len(cols["filledOrdersConfig"]) == 8
    assert len(cols["accountDetailsConfig"]) == 26
    assert cols["accountDetailsConfig"][:2] == ["balance", "projectedBalance"]
    limits = {r["rateLimitType"]: r for r in d["rateLimits"]}
    assert set(limits) == set(RATE_LIMIT_TYPES) and len(RATE_LIMIT_TYPES) == 18
    assert all(r["measure"] in ("SECONDS", "MINUTES") and r["limit"] > 0 for r in limits.values())
    assert {x["limitType"] for x in d["limits"]} == {
        "QUOTES_HISTORY_BARS",
        "MAX_ORDERS_COUNT_IN_HISTORY",
    }


async def test_trade_accounts_describe_the_accnum_account(wire: Wire) -> None:
    status, body = await wire.call("GET", "/trade/accounts")
    assert status == 200
    assert body["d"][0]["id"] == ACCOUNT and "tradingRules" in body["d"][0]


async def test_instruments_carry_trade_and_info_routes(wire: Wire) -> None:
    status, body = await wire.call("GET", f"/trade/accounts/{ACCOUNT}/instruments")
    assert status == 200
    by_name = {i["name"]: i for i in body["d"]["instruments"]}
    assert {"EURUSD", "GBPUSD", "US30", "BTCUSD"} <= set(by_name)
    eurusd = by_name["EURUSD"]
    assert eurusd["tradableInstrumentId"] == EURUSD and eurusd["id"] != EURUSD
    assert {r["type"] for r in eurusd["routes"]} == {"TRADE", "INFO"}
    gbp_info = [r["id"] for r in by_name["GBPUSD"]["routes"] if r["type"] == "INFO"]
    assert len(gbp_info) == 2


async def test_first_info_route_of_gbpusd_is_dead_and_the_second_quotes(wire: Wire) -> None:
    dead, live = 9199, 9101
    status, body = await wire.call(
        "GET", "/trade/quotes", params={"tradableInstrumentId": GBPUSD, "routeId": dead}
    )
    assert status == 200 and body == {"s": "no_data"}
    status, body = await wire.call(
        "GET", "/trade/quotes", params={"tradableInstrumentId": GBPUSD, "routeId": 9102}
    )
    assert status == 404 and body["s"] == "error"  # not an INFO route of GBPUSD at all
    status, body = await wire.call(
        "GET", "/trade/quotes", params={"tradableInstrumentId": GBPUSD, "routeId": live}
    )
    assert status == 200 and body["s"] == "ok"
    assert body["d"]["ap"] > body["d"]["bp"] > 0 and body["d"]["as"] > 0


async def test_instrument_details_give_lots_and_tiered_ticks(wire: Wire) -> None:
    status, body = await wire.call(
        "GET", f"/trade/instruments/{US30}", params={"routeId": 9102, "locale": "en"}
    )
    assert status == 200
    d = body["d"]
    assert d["lotSize"] == 1.0 and d["minLot"] == 0.01 and d["lotStep"] == 0.01
    assert [t["leftRangeLimit"] for t in d["tickSize"]] == [0.0, 10000.0]
    assert len(d["tickCost"]) == 2 and d["symbolStatus"] == "FULLY_OPEN"
    session_id, status_id = d["tradeSessionId"], d["tradeSessionStatusId"]
    status, body = await wire.call("GET", f"/trade/sessions/{session_id}")
    assert status == 200 and body["d"]["holidays"] == []
    status, body = await wire.call("GET", f"/trade/sessionStatuses/{status_id}")
    assert status == 200 and len(body["d"]["allowedOrderTypes"]) == 6
    status, _ = await wire.call("GET", "/trade/instruments/999999", params={"routeId": 9102})
    assert status == 404


async def test_depth_and_daily_bar_follow_the_current_quote(wire: Wire) -> None:
    wire.sb.state.set_price(BTCUSD, bid=60_000.0, ask=60_020.0)
    q = {"tradableInstrumentId": BTCUSD, "routeId": 9103}
    _, depth = await wire.call("GET", "/trade/depth", params=q)
    assert depth["d"]["asks"][0][0] == 60_020.0 and depth["d"]["bids"][0][0] == 60_000.0
    _, bar = await wire.call("GET", "/trade/dailyBar", params={**q, "barType": "BID"})
    assert bar["d"]["c"] == 60_000.0 and bar["d"]["h"] >= bar["d"]["l"]


async def test_history_returns_bars_or_no_data_for_an_empty_window(wire: Wire) -> None:
    q = {"tradableInstrumentId": EURUSD, "routeId": 9101, "resolution": "1H"}
    start = 1_700_000_000_000
    status, body = await wire.call(
        "GET", "/trade/history", params={**q, "from": start, "to": start + 10 * 3_600_000}
    )
    assert status == 200 and body["s"] == "ok"
    bars = body["d"]["barDetails"]
    assert len(bars) == 10 and all(b["l"] <= min(b["o"], b["c"]) for b in bars)
    _, again = await wire.call(
        "GET", "/trade/history", params={**q, "from": start, "to": start + 10 * 3_600_000}
    )
    assert again == body  # deterministic
    status, body = await wire.call(
        "GET", "/trade/history", params={**q, "from": 1_000_000_000, "to": 1_000_100_000}
    )
    assert status == 200 and body == {"s": "no_data"}


async def test_prices_step_deterministically_for_a_given_seed(wire: Wire) -> None:
    from sandbox.prices import PriceBook
    from sandbox.seed import default_instruments

    a, b = PriceBook(default_instruments(), 7), PriceBook(default_instruments(), 7)
    for _ in range(50):
        a.step()
        b.step()
    assert a.quote(EURUSD).bid == b.quote(EURUSD).bid
    before = wire.sb.state.prices.quote(EURUSD).bid
    wire.sb.state.step_prices(20)
    assert wire.sb.state.prices.quote(EURUSD).bid != before
