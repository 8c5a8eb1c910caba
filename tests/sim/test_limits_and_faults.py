"""Rate limits (429) and fault injection, incl. an order that exists though its reply was lost."""

from __future__ import annotations

import aiohttp
import pytest

from tests.sim.client import ACCOUNT, Wire


async def test_place_order_beyond_the_configured_limit_gets_429_with_errmsg(wire: Wire) -> None:
    async with wire.http.post(
        wire.sb.base_url + "/sandbox/rate-limits",
        json={"PLACE_ORDER": {"limit": 5, "intervalNum": 1}},
    ) as r:
        assert r.status == 200
    # Sliding window of 1 s: count only what the clock allows, six calls well inside it.
    wire.sb.state.rate_limiter.limits["PLACE_ORDER"].interval_num = 3600
    results = [await wire.place() for _ in range(6)]
    assert [s for s, _ in results[:5]] == [200] * 5
    status, body = results[5]
    assert status == 429 and body["s"] == "error" and "PLACE_ORDER" in body["errmsg"]
    assert len(await wire.table("ordersHistory")) == 5  # the refused one did nothing
    _, config = await wire.call("GET", "/trade/config")
    limits = {r["rateLimitType"]: r for r in config["d"]["rateLimits"]}
    assert limits["PLACE_ORDER"]["limit"] == 5


async def test_rate_limits_are_per_account(wire: Wire) -> None:
    wire.sb.state.rate_limiter.limits["GET_POSITIONS"].limit = 1
    wire.sb.state.rate_limiter.limits["GET_POSITIONS"].interval_num = 3600
    assert (await wire.call("GET", f"/trade/accounts/{ACCOUNT}/positions"))[0] == 200
    assert (await wire.call("GET", f"/trade/accounts/{ACCOUNT}/positions"))[0] == 429
    wire.acc_num = "2"
    assert (await wire.call("GET", "/trade/accounts/700002/positions"))[0] == 200


async def test_dropped_after_accept_leaves_the_order_in_place(wire: Wire) -> None:
    async with wire.http.post(
        wire.sb.base_url + "/sandbox/faults", json={"dropAfterAccept": {"PLACE_ORDER": 1}}
    ) as r:
        assert r.status == 200
    with pytest.raises(aiohttp.ClientError):
        await wire.place(strategyId="lost-reply")
    (h,) = await wire.table("ordersHistory")
    assert h["strategyId"] == "lost-reply" and h["status"] == "Filled"
    (p,) = await wire.table("positions")
    assert p["strategyId"] == "lost-reply"
    assert await wire.place_ok()  # the fault was one-shot


async def test_injected_5xx_happens_before_any_effect(wire: Wire) -> None:
    wire.sb.faults.update({"error5xx": {"PLACE_ORDER": 2}})
    assert [(await wire.place())[0] for _ in range(3)] == [503, 503, 200]
    assert len(await wire.table("ordersHistory")) == 1


async def test_burst_of_429_then_recovery(wire: Wire) -> None:
    wire.sb.faults.update({"burst429": {"*": 2}})
    statuses = [(await wire.call("GET", "/trade/config"))[0] for _ in range(3)]
    assert statuses == [429, 429, 200]


async def test_malformed_reply_is_unparsable_but_the_work_is_done(wire: Wire) -> None:
    wire.sb.faults.update({"malformed": {"PLACE_ORDER": 1}})
    status, body = await wire.place(strategyId="garbled")
    assert status == 200 and isinstance(body, str)
    (h,) = await wire.table("ordersHistory")
    assert h["strategyId"] == "garbled"


async def test_latency_fault_still_answers_and_is_reported(wire: Wire) -> None:
    wire.sb.faults.update({"latency": {"QUOTES": "1-3"}})
    status, _ = await wire.call(
        "GET", "/trade/quotes", params={"tradableInstrumentId": 278, "routeId": 9101}
    )
    assert status == 200
    async with wire.http.get(wire.sb.base_url + "/sandbox/state") as r:
        dump = await r.json()
    assert dump["faults"]["latency"]["QUOTES"] == [1.0, 3.0]


async def test_bad_fault_spec_is_refused_with_a_reason_and_changes_nothing(wire: Wire) -> None:
    async with wire.http.post(
        wire.sb.base_url + "/sandbox/faults", json={"error5xx": {"*": 3.5}}
    ) as r:
        assert r.status == 400 and "share" in (await r.json())["errmsg"]
    async with wire.http.post(wire.sb.base_url + "/sandbox/faults", json={"typo": 1}) as r:
        assert r.status == 400
    assert (await wire.call("GET", "/trade/config"))[0] == 200


async def test_garbage_requests_get_json_errors_and_the_sandbox_keeps_serving(
    wire: Wire,
) -> None:
    h = wire.headers()
    for method, path, data in [
        ("POST", f"/trade/accounts/{ACCOUNT}/orders", b"\xff\xfe garbage"),
        ("POST", f"/trade/accounts/{ACCOUNT}/orders", b"[1,2,3]"),
        ("PATCH", "/trade/orders/abc", b"{}"),
        ("PATCH", "/trade/positions/1", b"null"),
        ("DELETE", "/trade/positions/1", b'"x"'),
        ("GET", "/trade/quotes", b""),
        ("GET", "/trade/history", b""),
        ("PUT", "/trade/config", b""),
        ("GET", "/trade/does-not-exist", b""),
        ("POST", "/auth/jwt/token", b"{{{"),
        ("POST", "/sandbox/prices", b'{"instrument": "NOPE", "mid": 1}'),
    ]:
        status, body = await wire.call(method, path, data=data, headers=h)
        assert 400 <= status < 500, (method, path, status, body)
        assert isinstance(body, dict) and body.get("s") == "error", (method, path, body)
    assert await wire.place_ok()


async def test_admin_prices_endpoint_triggers_working_orders(wire: Wire) -> None:
    wire.sb.state.set_price(278, bid=1.10000, ask=1.10010)
    await wire.place_ok(type="limit", validity="GTC", price="1.09000")
    async with wire.http.post(
        wire.sb.base_url + "/sandbox/prices",
        json={"instrument": "EURUSD", "bid": 1.08990, "ask": 1.09000},
    ) as r:
        assert r.status == 200
    async with wire.http.get(
        wire.sb.base_url + "/sandbox/orders", params={"accountId": ACCOUNT}
    ) as r:
        orders = (await r.json())["orders"]
    assert [o["status"] for o in orders] == ["Filled"]


async def test_counters_count_the_429s_earned_not_the_injected_ones(wire: Wire) -> None:
    async def earned() -> dict[str, object]:
        async with wire.http.get(wire.sb.base_url + "/sandbox/counters") as r:
            assert r.status == 200
            return dict(await r.json())

    assert await earned() == {"earned429": {}, "earned429Total": 0}
    wire.sb.faults.update({"burst429": {"*": 2}})
    assert [(await wire.place())[0] for _ in range(2)] == [429, 429]  # injected: not earned
    assert (await earned())["earned429Total"] == 0
    wire.sb.state.rate_limiter.limits["GET_POSITIONS"].limit = 1
    wire.sb.state.rate_limiter.limits["GET_POSITIONS"].interval_num = 3600
    statuses = [
        (await wire.call("GET", f"/trade/accounts/{ACCOUNT}/positions"))[0] for _ in range(3)
    ]
    assert statuses == [200, 429, 429]
    assert await earned() == {"earned429": {"GET_POSITIONS": 2}, "earned429Total": 2}
