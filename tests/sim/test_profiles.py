"""Profiles: ``realistic`` by default, ``fast`` on request, and the order in which the seed, the
command line and ``POST /sandbox/faults`` override a profile's defaults."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from sandbox import Sandbox
from sandbox.errors import ConfigError
from sandbox.liquidity import fast_execution, realistic_execution
from sandbox.profiles import PROFILES
from sandbox.rules import realistic_account_rules
from sandbox.seed import SandboxConfig, config_from_dict, default_users, load_seed
from sandbox.sessions import fast_market_hours
from sandbox.tokens import verify
from sandbox.venue_rules import fast_venue_rules, realistic_venue_rules
from tests.fixtures.sim import launch_sandbox_process, stop_process
from tests.sim.client import ACCOUNT, EURUSD, Wire
from tests.sim.venue import at


def _limits(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["rateLimitType"]: r for r in config["d"]["rateLimits"]}


async def test_the_default_is_realistic_latency_tight_limits_and_short_tokens() -> None:
    async with Sandbox(price_interval_ms=0) as sb, aiohttp.ClientSession() as http:
        assert sb.config.profile == "realistic"
        wire = Wire(sb, http)
        login = await wire.login()
        claims = verify(
            login["accessToken"], sb.config.jwt_secret.encode(), token_type="access_token"
        )
        assert claims["exp"] - claims["iat"] == 60  # a run of a minute or two sees a refresh
        _, config = await wire.call("GET", "/trade/config")
        limits = _limits(config)
        assert limits["PLACE_ORDER"]["limit"] == 5 and limits["PLACE_ORDER"]["measure"] == "SECONDS"
        assert limits["GET_POSITIONS"]["limit"] == 2
        assert limits["QUOTES_HISTORY"]["measure"] == "MINUTES"
        async with http.get(sb.base_url + "/sandbox/state") as r:
            state = await r.json()
        assert state["profile"] == "realistic" and state["rateLimitScope"] == "per_account"
        assert state["faults"]["latency"]["*"] == {
            "ms": [50.0, 100.0],
            "tail": {"share": 0.01, "ms": [300.0, 1500.0]},
        }
        # As TradeLocker's own Streams example expects: the `subscriptions` event, no ack.
        assert state["faults"]["streamAck"] == "event"


async def test_a_burst_beyond_the_realistic_order_limit_meets_429s_that_change_nothing() -> None:
    async with Sandbox(price_interval_ms=0) as sb, aiohttp.ClientSession() as http:
        wire = Wire(sb, http)
        await wire.login()
        # Twenty at once against 5 per second: only a spread of the burst over four seconds
        # could let them all through.
        results = await asyncio.gather(*(wire.place() for _ in range(20)))
        refused = [body for status, body in results if status == 429]
        placed = [body for status, body in results if status == 200]
        assert refused and all("PLACE_ORDER" in body["errmsg"] for body in refused)
        assert len(placed) + len(refused) == 20
        assert len(sb.state.accounts[ACCOUNT].history) == len(placed)


async def test_fast_is_todays_kind_sandbox_and_equals_a_bare_config() -> None:
    async with Sandbox(profile="fast", price_interval_ms=0) as sb, aiohttp.ClientSession() as http:
        wire = Wire(sb, http)
        await wire.login()
        _, config = await wire.call("GET", "/trade/config")
        assert _limits(config)["PLACE_ORDER"]["limit"] == 100
        assert not sb.faults.delaying
    bare = SandboxConfig(users=default_users())
    fast = load_seed(None, profile="fast")
    for field in (
        "access_token_lifetime_s",
        "refresh_token_lifetime_s",
        "stream_token_lifetime_s",
        "rate_limits",
        "rate_limit_scope",
        "profile_faults",
        "venue",
        "clock_start",
    ):
        assert getattr(fast, field) == getattr(bare, field), field
    assert fast.venue == fast_venue_rules() and fast.clock_start == "wall"


def test_realistic_takes_part_bs_presets_and_the_seeds_own_keys_win() -> None:
    realistic = load_seed(None)
    assert realistic.venue == realistic_venue_rules()
    assert realistic.clock_start == "tradingHours"
    seeded = config_from_dict(
        {"execution": {"slippageShare": 0}, "marketHours": {"preset": "fast"}, "clockStart": "wall"}
    )
    assert seeded.venue.execution == replace(realistic_execution(), slippage_share=0.0)
    assert seeded.venue.hours == fast_market_hours()
    assert seeded.venue.accounts == realistic_account_rules()  # untouched: the profile's
    assert seeded.clock_start == "wall"
    fast = config_from_dict({"accountRules": {"stopOut": True}}, profile="fast")
    assert fast.venue.accounts.stop_out and fast.venue.execution == fast_execution()


async def test_the_realistic_profile_trades_against_a_depth_ladder_over_rest() -> None:
    seed = {
        "clockStart": "2025-01-08T10:00Z",  # a Wednesday morning: every market trades
        "instruments": [{"base": "EURUSD", "depth": [1, 2]}],
        # Only the ladder and the IOC remainder under test; the random shares set to none.
        "execution": {"slippageShare": 0, "partialFillShare": 0, "rejectAfterAcceptShare": 0},
    }
    async with Sandbox(config_from_dict(seed), price_interval_ms=0) as sb:
        async with aiohttp.ClientSession() as http:
            wire = Wire(sb, http)
            await wire.login()
            sb.state.set_price(EURUSD, bid=1.10000, ask=1.10010)
            quote = {"tradableInstrumentId": EURUSD, "routeId": 9101}
            _, before = await wire.call("GET", "/trade/quotes", params=quote)
            order_id = await wire.place_ok(qty="5.00")
            _, after = await wire.call("GET", "/trade/quotes", params=quote)
            (row,) = [r for r in await wire.table("ordersHistory") if r["id"] == order_id]
    assert (before["d"]["as"], before["d"]["bs"]) == (1.0, 1.0)  # the ladder's touch level
    assert (after["d"]["as"], after["d"]["bs"]) == (0.0, 1.0)  # taken until the next quote
    assert (row["status"], row["filledQty"]) == ("Cancelled", "3.00")  # beyond the ladder


def test_every_profile_names_every_switch() -> None:
    keys = {frozenset(fragment) for fragment in PROFILES.values()}
    assert len(keys) == 1  # no profile leaves a switch to chance
    (names,) = keys
    assert {"rateLimits", "rateLimitScope", "accessTokenLifetimeS", "faults"} <= names
    assert {"execution", "marketHours", "accountRules", "clockStart"} <= names


def test_seed_keys_override_the_profile_and_the_caller_overrides_the_seeds_profile(
    tmp_path: Path,
) -> None:
    seed = tmp_path / "seed.json"
    seed.write_bytes(
        orjson.dumps(
            {
                "profile": "realistic",
                "accessTokenLifetimeS": 300,
                "rateLimits": {"PLACE_ORDER": 7},
                "rateLimitScope": "per_login",
                "faults": {"streamAck": "event"},
            }
        )
    )
    config = load_seed(seed)
    assert config.profile == "realistic"
    assert config.access_token_lifetime_s == 300
    assert config.rate_limits["PLACE_ORDER"].limit == 7
    assert config.rate_limits["MODIFY_ORDER"].limit == 5  # the rest stays realistic
    assert config.rate_limit_scope == "per_login"
    fast = load_seed(seed, profile="fast")
    assert fast.profile == "fast" and fast.rate_limits["MODIFY_ORDER"].limit == 100
    assert fast.access_token_lifetime_s == 300  # the seed's explicit key still wins


def test_an_unknown_profile_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown sandbox profile 'slow'; choose one of"):
        load_seed(None, profile="slow")
    seed = tmp_path / "seed.json"
    seed.write_bytes(orjson.dumps({"rateLimitScope": "per_ip"}))
    with pytest.raises(ConfigError, match="rateLimitScope must be one of per_account, per_login"):
        load_seed(seed)
    with pytest.raises(ConfigError, match="load_seed"):
        Sandbox(load_seed(None, profile="fast"), profile="realistic")


async def test_posted_faults_override_the_profile_and_delete_returns_to_it() -> None:
    async with Sandbox(price_interval_ms=0) as sb, aiohttp.ClientSession() as http:
        url = sb.base_url + "/sandbox/faults"
        async with http.post(url, json={"latency": {"*": 0}, "streamAck": "ack"}) as r:
            posted = await r.json()
        assert posted["latency"]["*"] == [0.0, 0.0] and posted["streamAck"] == "ack"
        assert sb.faults.latency_for("PLACE_ORDER") == 0.0
        async with http.delete(url) as r:
            cleared = await r.json()
        assert cleared["latency"]["*"]["ms"] == [50.0, 100.0]  # the profile's, tail and all
        assert cleared["streamAck"] == "event"


async def test_the_cli_takes_a_profile_and_flags_over_it(tmp_path: Path) -> None:
    log = tmp_path / "sim.log"
    proc, url = launch_sandbox_process(log)  # --profile fast
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "/sandbox/state") as r:
                assert (await r.json())["profile"] == "fast"
    finally:
        stop_process(proc)
    seed = tmp_path / "seed.json"
    seed.write_bytes(orjson.dumps({"profile": "fast"}))
    proc, url = launch_sandbox_process(
        log,
        seed_file=seed,
        profile="realistic",
        extra=[
            "--latency-ms", "1-2", "--latency-tail", "0.5:3-4",
            "--rate-limit-scope", "per_login", "--stream-ack", "ack",
            "--clock-start", "2025-01-08T09:00Z",
        ],
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "/sandbox/state") as r:
                state = await r.json()
    finally:
        stop_process(proc)
    assert state["profile"] == "realistic" and state["rateLimitScope"] == "per_login"
    assert state["faults"]["latency"]["*"] == {
        "ms": [1.0, 2.0],
        "tail": {"share": 0.5, "ms": [3.0, 4.0]},
    }
    assert state["faults"]["streamAck"] == "ack"  # the flag over the profile's "event"
    assert at(8, 9) <= state["clock"]["nowMs"] < at(9, 9)  # running from the flag's instant
    assert state["clock"]["frozen"] is False
