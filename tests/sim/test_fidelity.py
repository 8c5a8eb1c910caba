"""Points where the sandbox once answered differently from the real API (docs/api-reference.md),
each pinned by the section it follows, so an engine cannot come to rely on the difference."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.seed import RateLimit
from tests.sim.client import ACCOUNT, EURUSD, US30, Wire
from tests.sim.test_streams import Reference, tokens
from tests.stream.sandbox import SERVER, StreamsSandbox, run_streams_sandbox

INFO_EURUSD = {"tradableInstrumentId": EURUSD, "routeId": 9101}


async def test_config_column_lists_are_exactly_those_of_section_5(wire: Wire) -> None:
    _, body = await wire.call("GET", "/trade/config")
    cols = {
        k: [c["id"] for c in v["columns"]] for k, v in body["d"].items() if k.endswith("Config")
    }
    assert cols["positionsConfig"] == [
        "id", "tradableInstrumentId", "routeId", "side", "qty", "avgPrice", "stopLossId",
        "takeProfitId", "openDate", "unrealizedPl", "strategyId",
    ]  # fmt: skip
    assert cols["filledOrdersConfig"] == [
        "id", "price", "side", "createdDate", "qty", "orderId", "positionId",
        "tradableInstrumentId",
    ]  # fmt: skip
    assert cols["accountDetailsConfig"] == [
        "balance", "projectedBalance", "availableFunds", "blockedBalance", "cashBalance",
        "unsettledCash", "withdrawalAvailable", "stocksValue", "optionValue", "initialMarginReq",
        "maintMarginReq", "marginWarningLevel", "blockedForStocks", "stockOrdersReq",
        "stopOutLevel", "warningMarginReq", "marginBeforeWarning", "todayGross", "todayNet",
        "todayFees", "todayVolume", "todayTradesCount", "openGrossPnL", "openNetPnL",
        "positionsCount", "ordersCount",
    ]  # fmt: skip


async def test_instrument_details_carry_the_section_6_6_fields_a_cfd_has_and_no_null(
    wire: Wire,
) -> None:
    status, body = await wire.call(
        "GET", f"/trade/instruments/{US30}", params={"routeId": 9102, "locale": "en"}
    )
    assert status == 200
    documented = {
        "barSource", "baseCurrency", "quotingCurrency", "lotSize", "lotStep", "minLot", "maxLot",
        "tickSize", "tickCost", "leverage", "margin_hedging_type", "symbolStatus",
        "tradeSessionId", "tradeSessionStatusId", "type", "settlementSystem",
        "name", "description", "country", "logoUrl",
        "localizedName", "hasDaily", "hasIntraday", "tradingExchange", "marketDataExchange",
    }  # fmt: skip
    assert documented <= set(body["d"])
    # The official client's InstrumentDetailsType allows no null: what a CFD lacks is absent.
    assert "contractMonth" not in body["d"]
    assert all(value is not None for value in body["d"].values())


async def test_instrument_details_refuse_a_locale_outside_the_documented_13(wire: Wire) -> None:
    # Section 6: locale is one of ar en es fr ja ko pl pt ru tr ua zh_sm zh_tr.
    status, body = await wire.call(
        "GET", f"/trade/instruments/{US30}", params={"routeId": 9102, "locale": "de"}
    )
    assert status == 400 and body["s"] == "error" and "locale" in body["errmsg"]
    status, _ = await wire.call(
        "GET", f"/trade/instruments/{US30}", params={"routeId": 9102, "locale": "zh_tr"}
    )
    assert status == 200


async def test_daily_bar_without_bar_type_is_refused(wire: Wire) -> None:
    # Section 6: dailyBar takes barType in ASK, BID, TRADE; the sandbox used to default to ASK.
    status, body = await wire.call("GET", "/trade/dailyBar", params=INFO_EURUSD)
    assert status == 400 and "barType" in body["errmsg"]
    status, body = await wire.call(
        "GET", "/trade/dailyBar", params={**INFO_EURUSD, "barType": "ASK"}
    )
    assert status == 200 and set(body["d"]) == {"o", "h", "l", "c", "v"}


async def test_offset_protection_is_shown_as_a_plain_decimal_string(wire: Wire) -> None:
    # Section 4: numbers inside rows are decimal strings; a 1,000,000-pip take-profit offset
    # must not read "1e+06".
    wire.sb.state.set_price(EURUSD, bid=1.1, ask=1.1002)
    await wire.place_ok(
        type="limit",
        validity="GTC",
        price="1.05000",
        takeProfit="1000000",
        takeProfitType="offset",
    )
    (row,) = await wire.table("orders")
    assert row["takeProfit"] == "1000000" and row["takeProfitType"] == "offset"


@pytest.mark.parametrize("method", ["DELETE", "PATCH"])
async def test_no_content_fault_answers_204_only_for_a_successful_delete_or_patch(
    wire: Wire, method: str
) -> None:
    # Section 6: the DELETE and PATCH routes list 204 No Content beside 200; the sandbox answers
    # 200 {s:"ok"} (what the official client reads) unless this fault asks for 204.
    wire.sb.state.set_price(EURUSD, bid=1.1, ask=1.1002)
    order_id = await wire.place_ok(type="limit", validity="GTC", price="1.05000")
    wire.sb.faults.update({"noContent": {"*": 2}})
    patch = {"price": "1.04000"} if method == "PATCH" else None
    status, body = await wire.call(method, f"/trade/orders/{order_id}", json=patch)
    assert status == 204 and not body  # no JSON at all
    # A refusal keeps its body, whatever the fault says: an unknown order is still a 404.
    status, body = await wire.call(method, "/trade/orders/1234", json=patch)
    assert status == 404 and body["s"] == "error"
    # The work behind the 204 is done.
    if method == "PATCH":
        working = await wire.table("orders")
        assert [r["price"] for r in working if r["id"] == order_id] == ["1.04000"]
    else:
        history = await wire.table("ordersHistory")
        assert [r["status"] for r in history if r["id"] == order_id] == ["Cancelled"]


@pytest.fixture
async def streams() -> Any:
    async with run_streams_sandbox() as sb:
        yield sb


async def _subscribe(ref: Reference, body: dict[str, Any]) -> Any:
    return await ref.sio.call("subscriptions", body, namespace="/streams-api", timeout=5)


async def test_subscribe_without_brand_id_or_in_lower_case_is_refused(
    streams: StreamsSandbox,
) -> None:
    # Section 10.1: {action:"SUBSCRIBE", token, brandId:<server>, accountId}.
    tok = (await tokens(streams))["700001"]
    ref = Reference()
    await ref.connect(streams, streams.api_key)
    try:
        no_brand = await _subscribe(
            ref, {"action": "SUBSCRIBE", "token": tok.token, "accountId": "700001"}
        )
        assert no_brand["status"] == "error" and "brandId" in no_brand["message"]
        lower = await _subscribe(
            ref,
            {"action": "subscribe", "token": tok.token, "brandId": SERVER, "accountId": "700001"},
        )
        assert lower["status"] == "error"
        ok = await _subscribe(
            ref,
            {"action": "SUBSCRIBE", "token": tok.token, "brandId": SERVER, "accountId": "700001"},
        )
        assert ok["status"] == "ok"
    finally:
        await ref.sio.disconnect()


async def test_stream_messages_carry_plain_decimal_strings_and_upper_case_sides(
    wire: Wire,
) -> None:
    # Section 10.3: fields are strings; 10 lots of EURUSD is 1,000,000 units, not "1e+06".
    seen: list[dict[str, Any]] = []
    wire.sb.state.add_stream_listener(lambda _account, msg: seen.append(msg))
    await wire.place_ok(qty="10.00")
    (position,) = [m for m in seen if m["type"] == "Position"]
    assert position["units"] == "1000000" and position["lotSize"] == "100000"
    assert position["lots"] == "10.00" and position["side"] == "BUY"
    (executed,) = [m for m in seen if m["type"] == "OpenOrder"]
    assert executed["status"] == "EXECUTED" and executed["side"] == "BUY"
    for msg in seen:
        for key, value in msg.items():
            assert value is None or isinstance(value, str), (msg["type"], key, value)


@pytest.mark.parametrize("shape", ["html", "empty"])
async def test_a_429_can_read_as_html_or_nothing_and_still_changes_nothing(
    wire: Wire, shape: str
) -> None:
    # Section 8 and 16: the real 429 body is undocumented, so the sandbox can serve the shapes a
    # client must survive: an HTML error page or an empty body, for earned and injected 429s.
    wire.sb.faults.update({"body429": shape})
    wire.sb.state.rate_limiter.set_limit("PLACE_ORDER", RateLimit(1))
    await wire.place_ok()
    async with wire.http.post(
        f"{wire.url}/trade/accounts/{ACCOUNT}/orders",
        json={"tradableInstrumentId": EURUSD, "routeId": 9001, "qty": "0.10", "side": "buy",
              "type": "market", "validity": "IOC"},
        headers=wire.headers(),
    ) as resp:  # fmt: skip
        raw = await resp.read()
        assert resp.status == 429
        assert resp.content_type == ("text/html" if shape == "html" else "application/octet-stream")
    assert (b"429 Too Many Requests" in raw) if shape == "html" else raw == b""
    assert len(await wire.table("positions")) == 1
    wire.sb.faults.update({"burst429": {"QUOTES": 1}})
    status, body = await wire.call("GET", "/trade/quotes", params=INFO_EURUSD)
    assert status == 429 and not isinstance(body, dict)


async def test_an_unknown_429_body_shape_is_refused_with_a_reason(wire: Wire) -> None:
    async with wire.http.post(wire.sb.base_url + "/sandbox/faults", json={"body429": "xml"}) as r:
        assert r.status == 400 and "body429" in (await r.json())["errmsg"]
    assert wire.sb.faults.body429 == "json"
