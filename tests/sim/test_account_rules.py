"""Account rules: margin stop-out, prop-firm limits (daily loss, maximum drawdown, maximum lots)
that close everything and restrict the account, breaches forced by a fault, netting accounts."""

from __future__ import annotations

from typing import Any

import pytest

from tests.sim.client import ACCOUNT, EURUSD, US30, Wire
from tests.sim.venue import at, close, faults, history, venue

SMALL_ACCOUNT = {
    "users": [
        {
            "email": "demo@sandbox.local",
            "password": "demo-password",
            "uid": "100001",
            "accounts": [{"id": ACCOUNT, "balance": 2000}],
        }
    ]
}
US30_ORDER = {"tradableInstrumentId": str(US30), "routeId": "9002", "qty": "0.10"}


def rules(**account: Any) -> dict[str, Any]:
    return {"accountRules": {"accounts": {ACCOUNT: account}}}


def still(wire: Wire, bid: float = 1.10000, ask: float = 1.10010) -> None:
    wire.sb.state.set_price(EURUSD, bid=bid, ask=ask)


async def account_status(wire: Wire) -> tuple[str, str]:
    _, trade = await wire.call("GET", "/trade/accounts")
    _, listed = await wire.call("GET", "/auth/jwt/all-accounts")
    mine = [a for a in listed["accounts"] if a["id"] == ACCOUNT]
    return trade["d"][0]["status"], mine[0]["status"]


async def test_stop_out_liquidates_the_biggest_loser_until_the_margin_level_recovers() -> None:
    async with venue({**SMALL_ACCOUNT, "accountRules": {"stopOut": True}}) as wire:
        still(wire)
        wire.sb.state.set_price(US30, bid=39_000.0, ask=39_002.0)
        await wire.place_ok(qty="1.00")
        await wire.place_ok(**US30_ORDER)
        still(wire, bid=1.09000, ask=1.09010)  # equity 990 on 1,295 margin: 76%, held
        assert len(await wire.table("positions")) == 2
        still(wire, bid=1.08500, ask=1.08510)  # 490 on 1,295: 38%, below the 50% stop-out
        (left,) = await wire.table("positions")
        assert left["tradableInstrumentId"] == str(US30)
        closes = [h for h in (await history(wire)).values() if h["side"] == "sell"]
        assert [(h["status"], h["avgPrice"]) for h in closes] == [("Filled", "1.08500")]
        state = await wire.state()
        assert state["balance"] == pytest.approx(2000 - 1510)
        assert state["stopOutLevel"] == 50.0


async def test_without_stop_out_the_same_loss_keeps_the_position() -> None:
    async with venue(SMALL_ACCOUNT) as wire:
        still(wire)
        await wire.place_ok(qty="1.00")
        still(wire, bid=1.08500, ask=1.08510)
        assert len(await wire.table("positions")) == 1


async def test_a_daily_loss_breach_closes_everything_and_restricts_the_account() -> None:
    async with venue(rules(dailyLossLimit=500)) as wire:
        wire.sb.state.clock.set(at(6, 10))
        still(wire)
        await wire.place_ok(qty="1.00")
        resting = await wire.place_ok(type="limit", validity="GTC", price="1.05000")
        assert await account_status(wire) == ("ACTIVE", "ACTIVE")
        still(wire, bid=1.09500, ask=1.09510)  # equity 99,490: below 100,000 - 500
        assert await wire.table("positions") == [] and await wire.table("orders") == []
        assert (await history(wire))[resting]["status"] == "Cancelled"
        assert await account_status(wire) == ("RESTRICTED", "RESTRICTED")
        status, body = await wire.place()
        assert status == 200 and body["s"] == "error"
        assert body["errmsg"].startswith(f"Account {ACCOUNT} is RESTRICTED: daily loss limit 500")
        assert (await wire.state())["balance"] == pytest.approx(100_000 - 510)


async def test_the_daily_loss_counts_from_each_trading_days_starting_balance() -> None:
    async with venue(rules(dailyLossLimit=500)) as wire:
        clock = wire.sb.state.clock
        clock.set(at(6, 10))
        still(wire)
        await wire.place_ok(qty="1.00")
        still(wire, bid=1.09610, ask=1.09620)
        (p,) = await wire.table("positions")
        await close(wire, p["id"])  # Monday: -400, within the limit
        clock.set(at(7, 10))  # Tuesday starts at 99,600
        still(wire)
        await wire.place_ok(qty="1.00")
        still(wire, bid=1.09610, ask=1.09620)  # -400 today, -800 since Monday: no breach
        assert len(await wire.table("positions")) == 1
        still(wire, bid=1.09460, ask=1.09470)  # -550 today
        assert await wire.table("positions") == []
        assert (await account_status(wire))[0] == "RESTRICTED"


@pytest.mark.parametrize(("mode", "breached"), [("static", False), ("trailing", True)])
async def test_maximum_drawdown_from_the_start_or_from_the_peak(mode: str, breached: bool) -> None:
    async with venue(rules(maxDrawdown=1000, drawdownMode=mode)) as wire:
        still(wire)
        await wire.place_ok(qty="1.00")
        still(wire, bid=1.10810, ask=1.10820)  # equity 100,800: the peak
        still(wire, bid=1.09810, ask=1.09820)  # 99,800: 1,000 below the peak, 200 below start
        assert (await wire.table("positions") == []) is breached
        expected = "RESTRICTED" if breached else "ACTIVE"
        assert (await account_status(wire))[0] == expected


async def test_maximum_lots_refuses_the_order_that_would_exceed_it() -> None:
    async with venue(rules(maxLots=1)) as wire:
        still(wire)
        await wire.place_ok(qty="0.60")
        await wire.place_ok(type="limit", validity="GTC", qty="0.30", price="1.05000")
        status, body = await wire.place(qty="0.20")
        assert status == 200 and body["s"] == "error"
        assert "would be 1.1, above the account's maximum of 1 lots" in body["errmsg"]
        assert await wire.place_ok(qty="0.10")
        assert (await account_status(wire))[0] == "ACTIVE"


async def test_a_forced_breach_restricts_at_once_and_null_lifts_it() -> None:
    async with venue({}) as wire:
        still(wire)
        await wire.place_ok(qty="0.50")
        body = await faults(wire, {"ruleBreach": {ACCOUNT: "dailyLoss"}})
        assert body["ruleBreach"] == {}  # acted on before the reply
        assert await wire.table("positions") == []
        assert await account_status(wire) == ("RESTRICTED", "RESTRICTED")
        status, reply = await wire.place()
        assert (
            status == 200
            and reply["s"] == "error"
            and "forced by the ruleBreach fault" in reply["errmsg"]
        )
        await faults(wire, {"ruleBreach": {ACCOUNT: None}})
        assert await account_status(wire) == ("ACTIVE", "ACTIVE")
        assert await wire.place_ok()


async def test_a_forced_stop_out_liquidates_every_position_and_leaves_the_account_active() -> None:
    async with venue({}) as wire:
        still(wire)
        await wire.place_ok(qty="0.50")
        await wire.place_ok(qty="0.20", side="sell")
        await faults(wire, {"ruleBreach": {ACCOUNT: "stopOut"}})
        assert await wire.table("positions") == []
        assert await wire.place_ok()


async def test_fault_names_must_be_known_accounts_and_instruments() -> None:
    async with venue({}) as wire:
        url = wire.sb.base_url + "/sandbox/faults"
        for spec in (
            {"ruleBreach": {"999": "dailyLoss"}},
            {"ruleBreach": {ACCOUNT: "bankrupt"}},
            {"marketStatus": {"XAUUSD": "CLOSED"}},
            {"marketStatus": {"EURUSD": "SLEEPING"}},
        ):
            async with wire.http.post(url, json=spec) as resp:
                assert resp.status == 400, spec
        assert await wire.place_ok()


async def test_a_netting_account_holds_one_position_per_instrument() -> None:
    async with venue(rules(marginHedgingType="NETTING")) as wire:
        still(wire)
        await wire.place_ok(qty="1.00", stopLoss="1.09000", stopLossType="absolute")
        (first,) = await wire.table("positions")
        await wire.place_ok(qty="0.40", side="sell")
        (reduced,) = await wire.table("positions")
        assert reduced["id"] == first["id"] and reduced["qty"] == "0.60"
        (leg,) = await wire.table("orders")
        assert leg["id"] == first["stopLossId"] and leg["qty"] == "0.60"
        reverse = await wire.place_ok(qty="1.00", side="sell")
        (flipped,) = await wire.table("positions")
        assert flipped["id"] != first["id"]
        assert (flipped["side"], flipped["qty"], flipped["avgPrice"]) == ("sell", "0.40", "1.10000")
        assert await wire.table("orders") == []  # the old position's stop went with it
        row = (await history(wire))[reverse]
        assert (row["status"], row["positionId"]) == ("Filled", flipped["id"])
        parts = [(e["qty"], e["positionId"]) for e in await wire.table("executions")]
        assert parts[-2:] == [("0.60", first["id"]), ("0.40", flipped["id"])]
        state = await wire.state()
        assert state["balance"] == pytest.approx(
            100_000 - 10
        )  # 1 lot bought at the ask, sold at the bid
        _, d = await wire.call("GET", f"/trade/instruments/{EURUSD}", params={"routeId": 9101})
        assert d["d"]["margin_hedging_type"] == "NETTING"
        _, accounts = await wire.call("GET", "/trade/accounts")
        assert accounts["d"][0]["tradingRules"]["hedgingAllowed"] is False
