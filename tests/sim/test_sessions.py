"""Market hours: sessions per instrument (weekend, daily break, holidays), halts and openings as
faults, working orders filling at the gap on the open. Time is the sandbox's own clock, moved by
the test (January 2025: Friday the 3rd, Saturday the 4th, Sunday the 5th, Wednesday the 8th)."""

from __future__ import annotations

from typing import Any

from tests.sim.client import BTCUSD, EURUSD, US30, Wire
from tests.sim.venue import at, close, faults, history, venue

REALISTIC_HOURS = {"marketHours": {"preset": "realistic"}}
US30_ORDER = {"tradableInstrumentId": str(US30), "routeId": "9002", "qty": "1.00"}
BTC_ORDER = {"tradableInstrumentId": str(BTCUSD), "routeId": "9003", "qty": "0.01"}


async def refused(wire: Wire, **fields: Any) -> str:
    status, body = await wire.place(**fields)
    assert status == 200 and body["s"] == "error", body
    return str(body["errmsg"])


async def details(wire: Wire, tid: int, route: int) -> dict[str, Any]:
    status, body = await wire.call("GET", f"/trade/instruments/{tid}", params={"routeId": route})
    assert status == 200, body
    return dict(body["d"])


async def test_fx_and_indices_close_for_the_weekend_crypto_trades_on() -> None:
    async with venue(REALISTIC_HOURS) as wire:
        wire.sb.state.clock.set(at(4, 12))
        assert await refused(wire) == "Market is closed for EURUSD (CLOSED)"
        assert "US30 (CLOSED)" in await refused(wire, **US30_ORDER)
        assert await wire.place_ok(**BTC_ORDER)
        d = await details(wire, EURUSD, 9101)
        assert (d["symbolStatus"], d["tradeSessionStatusId"]) == ("CLOSED", 2)
        _, status = await wire.call("GET", "/trade/sessionStatuses/2")
        assert status["d"]["allowedOperations"] == [0, 0, 0]
        wire.sb.state.clock.set(at(6, 9))  # Monday morning
        assert await wire.place_ok()
        assert await wire.place_ok(**US30_ORDER)


async def test_the_daily_break_closes_each_market_for_its_own_minutes() -> None:
    async with venue(REALISTIC_HOURS) as wire:
        clock = wire.sb.state.clock
        clock.set(at(8, 22, 2))
        assert "EURUSD (CLOSED)" in await refused(wire)
        clock.set(at(8, 22, 6))
        assert await wire.place_ok()
        clock.set(at(8, 22, 30))  # FX is back, the index break lasts until 23:00
        assert "US30 (CLOSED)" in await refused(wire, **US30_ORDER)
        assert await wire.place_ok()
        clock.advance(31 * 60_000)
        assert await wire.place_ok(**US30_ORDER)


async def test_working_orders_wait_out_the_weekend_and_fill_at_the_gap_on_the_open() -> None:
    async with venue(REALISTIC_HOURS) as wire:
        state = wire.sb.state
        state.clock.set(at(3, 21))
        state.set_price(EURUSD, bid=1.10000, ask=1.10010)
        await wire.place_ok(qty="0.10", strategyId="sell-long")  # a position for the close test
        limit = await wire.place_ok(type="limit", validity="GTC", price="1.09500")
        stop = await wire.place_ok(type="stop", validity="GTC", side="sell", stopPrice="1.09800")
        state.clock.set(at(4, 10))
        state.set_price(EURUSD, bid=1.08990, ask=1.09000)  # the market moves while closed
        assert {o["id"] for o in await wire.table("orders")} == {limit, stop}
        (p,) = await wire.table("positions")
        status, body = await wire.call("DELETE", f"/trade/positions/{p['id']}", json={"qty": "0"})
        assert status == 200 and body["s"] == "error" and "Market is closed" in body["errmsg"]
        state.clock.set(at(5, 22, 10))  # Sunday's open: the gap
        assert await wire.table("orders") == []
        rows = await history(wire)
        assert rows[limit]["avgPrice"] == "1.09000"  # better than its limit of 1.09500
        assert rows[stop]["avgPrice"] == "1.08990"  # worse than its stop at 1.09800
        await close(wire, p["id"])


async def test_a_halt_fault_stops_one_instrument_until_it_is_lifted() -> None:
    async with venue({}) as wire:
        state = wire.sb.state
        state.set_price(US30, bid=39_000.0, ask=39_002.0)
        resting = await wire.place_ok(**US30_ORDER, type="limit", validity="GTC", price="38990.00")
        body = await faults(wire, {"marketStatus": {"US30": "TRADING_HALT"}})
        assert body["marketStatus"] == {"US30": "TRADING_HALT"}
        assert await refused(wire, **US30_ORDER) == "Market is closed for US30 (TRADING_HALT)"
        d = await details(wire, US30, 9102)
        assert (d["symbolStatus"], d["tradeSessionStatusId"]) == ("TRADING_HALT", 3)
        state.set_price(US30, bid=38_980.0, ask=38_982.0)  # crosses the limit: held, not filled
        assert [o["id"] for o in await wire.table("orders")] == [resting]
        assert await wire.place_ok()  # EURUSD trades on
        async with wire.http.delete(wire.sb.base_url + "/sandbox/faults") as resp:
            assert resp.status == 200
        assert await wire.table("orders") == []  # filled on the reopening, at the market
        assert (await history(wire))[resting]["avgPrice"] == "38982.00"


async def test_an_open_now_fault_trades_through_the_weekend_and_null_gives_back_the_calendar() -> (
    None
):
    async with venue(REALISTIC_HOURS) as wire:
        wire.sb.state.clock.set(at(4, 12))
        await faults(wire, {"marketStatus": {"EURUSD": "FULLY_OPEN"}})
        assert await wire.place_ok()
        await faults(wire, {"marketStatus": {"EURUSD": None}})
        assert "(CLOSED)" in await refused(wire)


async def test_sessions_publish_trading_times_with_breaks_and_holidays() -> None:
    async with venue(REALISTIC_HOURS) as wire:
        d = await details(wire, EURUSD, 9101)
        status, body = await wire.call("GET", f"/trade/sessions/{d['tradeSessionId']}")
        assert status == 200
        times = body["d"]["tradingTimes"]
        assert [t for t in times if t["day"] == "MON"] == [
            {"day": "MON", "open": "00:00", "close": "22:00"},
            {"day": "MON", "open": "22:05", "close": "24:00"},
        ]
        assert not [t for t in times if t["day"] == "SAT"]
        assert {"date": "2025-12-25", "name": "Christmas Day"} in body["d"]["holidays"]
        crypto = await details(wire, BTCUSD, 9103)
        _, body = await wire.call("GET", f"/trade/sessions/{crypto['tradeSessionId']}")
        assert len(body["d"]["tradingTimes"]) == 7
        status, _ = await wire.call("GET", "/trade/sessions/99")
        assert status == 404


async def test_a_holiday_from_the_seed_closes_the_market_for_that_day() -> None:
    seed = {
        "instruments": [{"base": "EURUSD", "tradeSessionId": 7}, {"base": "BTCUSD"}],
        "marketHours": {
            "sessions": [
                {
                    "id": 7,
                    "name": "Sandbox FX with a holiday",
                    "tradingTimes": [
                        {"day": day, "open": "00:00", "close": "24:00"}
                        for day in ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
                    ],
                    "holidays": [{"date": "2025-01-06", "name": "Sandbox Day"}],
                }
            ]
        },
    }
    async with venue(seed) as wire:
        wire.sb.state.clock.set(at(6, 12))
        assert "(CLOSED)" in await refused(wire)
        wire.sb.state.clock.set(at(7, 0, 1))
        assert await wire.place_ok()


async def test_the_fast_default_trades_around_the_clock() -> None:
    async with venue({}) as wire:
        wire.sb.state.clock.set(at(4, 12))
        assert await wire.place_ok()
        d = await details(wire, EURUSD, 9101)
        assert (d["symbolStatus"], d["tradeSessionId"]) == ("FULLY_OPEN", 1)


async def test_the_admin_clock_sets_and_moves_the_venue_time() -> None:
    async with venue(REALISTIC_HOURS) as wire:
        url = wire.sb.base_url + "/sandbox/clock"
        async with wire.http.post(url, json={"set": "2025-01-04T12:00:00Z"}) as resp:
            body = await resp.json()
        assert body == {"nowMs": at(4, 12), "frozen": True}
        assert "(CLOSED)" in await refused(wire)
        async with wire.http.post(url, json={"advance": 2 * 86_400_000}) as resp:
            assert (await resp.json())["nowMs"] == at(6, 12)
        assert await wire.place_ok()
        (row,) = await wire.table("ordersHistory")
        assert int(row["createdDate"]) >= at(6, 12)  # the venue stamps its orders with its time
        async with wire.http.post(url, json={"set": "yesterday"}) as resp:
            assert resp.status == 400 and "ISO 8601" in (await resp.json())["errmsg"]
