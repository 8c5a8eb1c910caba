"""The seed's instruments (with sessions and depth) and its execution, marketHours and
accountRules objects: what they make the sandbox serve, and a clear error naming the key when
one is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sandbox import Sandbox
from sandbox.errors import ConfigError
from sandbox.seed import SandboxConfig, config_from_dict, default_users, load_seed
from sandbox.venue_rules import fast_venue_rules, realistic_venue_rules
from tests.sim.client import ACCOUNT, EURUSD
from tests.sim.venue import venue

GOLD = {
    "tradableInstrumentId": 500,
    "id": 600,
    "name": "XAUUSD",
    "type": "COMMODITIES",
    "startPrice": 2000.0,
    "tickSize": 0.01,
    "lotSize": 100,
    "tradeRouteId": 9004,
    "infoRouteIds": [9104],
    "depth": [[0, 2], [5, 10]],
    "baseCurrency": "XAU",
}


async def test_instruments_from_the_seed_are_listed_quoted_and_traded() -> None:
    async with venue({"instruments": [GOLD, {"base": "EURUSD", "maxLot": 5}]}) as wire:
        wire.sb.state.set_price("XAUUSD", bid=2000.00, ask=2000.30)
        _, listed = await wire.call("GET", f"/trade/accounts/{ACCOUNT}/instruments")
        names = {i["name"]: i for i in listed["d"]["instruments"]}
        assert set(names) == {"XAUUSD", "EURUSD"}
        assert names["XAUUSD"]["routes"] == [
            {"id": 9004, "type": "TRADE"},
            {"id": 9104, "type": "INFO"},
        ]
        _, d = await wire.call("GET", "/trade/instruments/500", params={"routeId": 9104})
        assert (d["d"]["lotSize"], d["d"]["tickSize"], d["d"]["id"]) == (
            100.0,
            [{"leftRangeLimit": 0.0, "tickSize": 0.01}],
            600,
        )
        q = {"tradableInstrumentId": 500, "routeId": 9104}
        _, quote = await wire.call("GET", "/trade/quotes", params=q)
        assert quote["d"]["as"] == 2.0
        _, depth = await wire.call("GET", "/trade/depth", params=q)
        assert depth["d"]["asks"] == [[2000.3, 2.0], [2000.35, 10.0]]
        assert await wire.place_ok(tradableInstrumentId="500", routeId="9004", qty="0.10")
        (p,) = await wire.table("positions")
        assert (p["tradableInstrumentId"], p["avgPrice"]) == ("500", "2000.30")
        status, body = await wire.place(qty="6.00")  # EURUSD from its default, maxLot changed
        assert status == 200 and body["s"] == "error" and "maximum lot 5" in body["errmsg"]
        status, body = await wire.place(tradableInstrumentId="301", routeId="9002")
        assert (
            status == 200 and body["s"] == "error" and "not found" in body["errmsg"]
        )  # not in the seed's list


async def test_a_seed_fault_halts_an_instrument_from_the_start() -> None:
    async with venue({"faults": {"marketStatus": {"EURUSD": "TRADING_HALT"}}}) as wire:
        status, body = await wire.place()
        assert status == 200 and body["errmsg"] == "Market is closed for EURUSD (TRADING_HALT)"
        _, d = await wire.call("GET", f"/trade/instruments/{EURUSD}", params={"routeId": 9101})
        assert d["d"]["symbolStatus"] == "TRADING_HALT"


def test_the_default_config_is_the_fast_preset_and_realistic_differs_in_every_part() -> None:
    default = SandboxConfig(users=default_users()).venue
    assert default == fast_venue_rules() == config_from_dict({}, profile="fast").venue
    realistic = realistic_venue_rules()
    assert realistic.execution != default.execution
    assert realistic.hours != default.hours and realistic.hours.enabled
    assert realistic.accounts != default.accounts and realistic.accounts.stop_out
    preset = config_from_dict(
        {
            "execution": {"preset": "realistic"},
            "marketHours": {"preset": "realistic"},
            "accountRules": {"preset": "realistic"},
        },
        profile="fast",
    ).venue
    assert preset == realistic


@pytest.mark.parametrize(
    ("seed", "names"),
    [
        ({"instruments": [{"base": "NOPE"}]}, "instruments[0].base"),
        ({"instruments": [{"name": "X"}]}, "missing tradableInstrumentId"),
        ({"instruments": [{"base": "EURUSD", "depth": [[1, 5], [0, 1]]}]}, "instruments[0].depth"),
        (
            {"instruments": [{"base": "EURUSD"}, {"base": "EURUSD"}]},
            "EURUSD (278) is defined twice",
        ),
        ({"instruments": [{"base": "EURUSD", "colour": "red"}]}, "unknown keys ['colour']"),
        ({"execution": {"partialFillShare": 2}}, "execution.partialFillShare"),
        ({"execution": {"close": "later"}}, "execution.close"),
        (
            {
                "marketHours": {
                    "sessions": [
                        {
                            "id": 2,
                            "tradingTimes": [{"day": "MON", "open": "25:00", "close": "26:00"}],
                        }
                    ]
                }
            },
            "sessions[0].tradingTimes[0].open",
        ),
        ({"marketHours": {"sessionsByType": {"FOREX": 9}}}, "sessionsByType.FOREX: no session 9"),
        ({"accountRules": {"accounts": {ACCOUNT: {"dailyLossLimit": "five"}}}}, "dailyLossLimit"),
        (
            {"accountRules": {"accounts": {ACCOUNT: {"marginHedgingType": "BOTH"}}}},
            "marginHedgingType",
        ),
        ({"accountRules": {"stopOutLevel": 0}}, "accountRules.stopOutLevel"),
    ],
)
def test_a_bad_seed_names_the_key_and_the_fix(seed: dict[str, Any], names: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_dict(seed)
    assert names in str(caught.value)


@pytest.mark.parametrize(
    ("seed", "names"),
    [
        ({"instruments": [{"base": "EURUSD", "tradeSessionId": 9}]}, "trade session 9"),
        ({"faults": {"marketStatus": {"XAUUSD": "CLOSED"}}}, "unknown instruments ['XAUUSD']"),
        ({"faults": {"ruleBreach": {"123": "dailyLoss"}}}, "unknown accounts ['123']"),
    ],
)
def test_a_seed_that_names_what_does_not_exist_fails_at_start(
    seed: dict[str, Any], names: str
) -> None:
    config = config_from_dict(seed)
    with pytest.raises(ConfigError) as caught:
        Sandbox(config, price_interval_ms=0)
    assert names in str(caught.value)


def test_the_realistic_example_seed_loads_every_part_b_key() -> None:
    config = load_seed(
        Path(__file__).resolve().parents[2] / "config" / "sandbox-seed-realistic.json"
    )
    realistic = realistic_venue_rules()
    assert config.venue.execution == realistic.execution
    assert config.venue.hours == realistic.hours
    prop = config.venue.accounts.of("700002")
    assert (prop.margin_hedging_type, prop.max_lots, prop.drawdown_mode) == (
        "NETTING",
        20,
        "trailing",
    )
    assert config.venue.accounts.of("700001").margin_hedging_type == "HEDGING"
    assert config.venue.accounts.day_start_minute == 22 * 60
    assert {s.name: s.depth[0] for s in config.instruments}["US30"] == (0, 20.0)
