"""Where the venue clock starts (``clockStart``): the realistic profile keeps its market hours but
does not let the wall clock's weekend refuse every order, the fast profile runs on the wall clock,
and a seed can name its own instant. The wall clock is passed in, so any day can be "today"
(January 2025: Friday the 3rd, Saturday the 4th, Sunday the 5th, Wednesday the 8th)."""

from __future__ import annotations

import datetime

import aiohttp
import pytest

from sandbox import Sandbox
from sandbox.errors import ConfigError
from sandbox.instruments import default_instruments
from sandbox.seed import config_from_dict, load_seed
from sandbox.sessions import (
    fast_market_hours,
    open_start_ms,
    realistic_market_hours,
    trading_hours_start,
)
from sandbox.state import SandboxState, start_clock
from tests.sim.client import BTCUSD, EURUSD, US30, Wire
from tests.sim.venue import at

DAY_MS = 86_400_000


def christmas_2025(hour: int) -> int:
    moment = datetime.datetime(2025, 12, 25, hour, tzinfo=datetime.UTC)  # a Thursday
    return int(moment.timestamp() * 1000)


@pytest.mark.parametrize(
    ("wall", "start"),
    [
        (at(8, 10), at(8, 10)),  # Wednesday: every market trades, the wall time it is
        (at(4, 10), at(3, 10)),  # Saturday morning trades as Friday morning
        (at(5, 12), at(3, 12)),  # Sunday noon: back past Saturday too
        (at(3, 23), at(2, 23)),  # Friday after the close: Thursday night, FX and indices open
        (at(5, 22, 30), at(5, 22, 30)),  # Sunday 22:30: FX open, indices within the hour
        (at(8, 22, 2), at(8, 22, 2)),  # a daily break: it ends within the hour
        (christmas_2025(10), christmas_2025(10) - DAY_MS),  # the holiday: Christmas Eve
    ],
)
def test_realistic_hours_start_in_the_latest_trading_hours_never_ahead(
    wall: int, start: int
) -> None:
    assert trading_hours_start(realistic_market_hours(), default_instruments(), wall) == start


def test_without_market_hours_the_start_is_the_wall_time() -> None:
    assert trading_hours_start(fast_market_hours(), default_instruments(), at(4, 10)) == at(4, 10)


def test_a_realistic_sandbox_started_on_a_saturday_trades_and_its_clock_runs() -> None:
    config = load_seed(None)
    clock = start_clock(config, wall=lambda: at(4, 10))
    assert (clock.now_ms(), clock.frozen) == (at(3, 10), False)
    state = SandboxState(config, clock=clock)
    assert all(state.book.market.is_open(tid) for tid in (EURUSD, US30, BTCUSD))
    clock.advance(12 * 3_600_000)  # Friday 22:00: the weekend comes as it would
    assert not state.book.market.is_open(EURUSD) and state.book.market.is_open(BTCUSD)


def test_the_fast_profile_runs_on_the_wall_clock() -> None:
    clock = start_clock(load_seed(None, profile="fast"), wall=lambda: at(4, 10))
    assert clock.now_ms() == at(4, 10)


async def test_a_seed_instant_starts_the_clock_there_even_in_a_closed_market() -> None:
    config = config_from_dict({"clockStart": "2025-01-04T10:00:00Z"})  # realistic, Saturday
    async with Sandbox(config, price_interval_ms=0) as sb, aiohttp.ClientSession() as http:
        wire = Wire(sb, http)
        await wire.login()
        status, body = await wire.place()
        assert status == 200 and body["errmsg"] == "Market is closed for EURUSD (CLOSED)"
        assert await wire.place_ok(tradableInstrumentId=str(BTCUSD), routeId="9003", qty="0.01")
        async with http.get(sb.base_url + "/sandbox/state") as resp:
            clock = (await resp.json())["clock"]
    assert clock["frozen"] is False and clock["nowMs"] >= at(4, 10)


def test_a_bad_clock_start_is_one_clear_error() -> None:
    with pytest.raises(ConfigError, match="seed: clockStart must be wall, tradingHours, epoch"):
        config_from_dict({"clockStart": "monday"})


@pytest.mark.parametrize(
    ("wall", "start"),
    [
        (at(8, 10), at(8, 10)),  # Wednesday morning: the wall time
        (at(8, 20, 59), at(8, 20, 59)),  # an hour before the first daily break
        (at(8, 22, 30), at(8, 12)),  # the indices' daily break: noon the same day
        (at(4, 10), at(3, 12)),  # Saturday: Friday noon
        (at(6, 3), at(6, 3)),  # Monday night: open since Sunday evening
        (christmas_2025(15), christmas_2025(12) - DAY_MS),  # the holiday: Christmas Eve noon
    ],
)
def test_open_start_has_every_realistic_market_open_for_an_hour(wall: int, start: int) -> None:
    assert open_start_ms(wall) == start
    hours = realistic_market_hours()
    for spec in default_instruments():
        session = hours.sessions[hours.session_id_of(spec)]
        for minutes in (0, 30, 59):
            assert session.is_open(start + minutes * 60_000), (spec.name, minutes)
