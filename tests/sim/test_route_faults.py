"""Faults that act only on the routes named: reply latency with its tail, token invalidation; and
the rate-limit scope (per account or per login)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from sandbox import Sandbox
from sandbox.errors import ConfigError
from sandbox.faults import Faults, parse_delay
from sandbox.seed import AccountSpec, UserSpec, default_users, load_seed
from tests.sim.client import ACCOUNT, Wire


async def test_latency_waits_only_on_the_routes_named(wire: Wire) -> None:
    waited: list[float] = []

    async def record(seconds: float) -> None:
        waited.append(seconds)

    wire.sb.faults.sleep = record
    wire.sb.faults.update({"latency": {"PLACE_ORDER": 40, "CLOSE_POSITION": "10-20"}})
    assert (await wire.call("GET", f"/trade/accounts/{ACCOUNT}/positions"))[0] == 200
    assert waited == []
    await wire.place_ok()
    assert waited == [pytest.approx(0.04)]
    (position,) = await wire.table("positions")
    status, _ = await wire.call("DELETE", f"/trade/positions/{position['id']}", json={"qty": "0"})
    assert status == 200 and 0.01 <= waited[1] <= 0.02


def test_the_tail_takes_its_share_of_replies_from_its_own_range() -> None:
    faults = Faults(rng_seed=7)
    faults.update({"latency": {"*": {"ms": "50-100", "tail": {"share": 0.01, "ms": "300-1500"}}}})
    draws = [faults.latency_for("PLACE_ORDER") for _ in range(20_000)]
    tail = [d for d in draws if d >= 0.3]
    assert all(0.05 <= d <= 0.1 or 0.3 <= d <= 1.5 for d in draws)
    assert 100 < len(tail) < 300  # about 1 % of 20,000 (a seeded draw: the count is fixed)
    faults.update({"latency": {"*": {"ms": 5, "tail": {"share": 1.0, "ms": "7-8"}}}})
    assert all(0.007 <= faults.latency_for("QUOTES") <= 0.008 for _ in range(100))


@pytest.mark.parametrize(
    "spec",
    [
        {"ms": "100-50"},
        {"ms": "5", "tail": {"share": 2, "ms": "1-2"}},
        {"ms": "5", "tail": {"ms": "1-2"}},
        {"tail": {"share": 0.1, "ms": "1-2"}},
    ],
)
def test_a_bad_latency_spec_is_one_clear_error(spec: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="latency"):
        parse_delay(spec)


async def _login(sb: Sandbox, http: aiohttp.ClientSession, email: str) -> Wire:
    wire = Wire(sb, http)
    await wire.login(email=email)
    return wire


async def test_invalidated_tokens_answer_401_from_the_call_named_until_a_refresh() -> None:
    config = load_seed(None, profile="fast")
    other_user = UserSpec(
        "other@sandbox.local", "demo-password", "SANDBOX", "100002", [AccountSpec("700003", "O")]
    )
    config.users = [*default_users(), other_user]
    async with Sandbox(config, price_interval_ms=0) as sb, aiohttp.ClientSession() as http:
        demo = await _login(sb, http, "demo@sandbox.local")
        other = await _login(sb, http, "other@sandbox.local")
        sb.faults.update({"invalidateTokens": {"PLACE_ORDER": 1}})
        assert (await demo.call("GET", f"/trade/accounts/{ACCOUNT}/positions"))[0] == 200
        status, body = await demo.place()
        assert status == 401 and "expired" in body["errmsg"]
        assert sb.state.accounts[ACCOUNT].history == []  # refused before anything was done
        assert (await demo.call("GET", f"/trade/accounts/{ACCOUNT}/positions"))[0] == 401
        status, _ = await other.call("GET", "/trade/accounts/700003/positions")
        assert status == 200  # another user's tokens are untouched
        status, fresh = await demo.call(
            "POST", "/auth/jwt/refresh", json={"refreshToken": demo.refresh_token}, auth=False
        )
        assert status == 201
        demo.token = fresh["accessToken"]
        assert await demo.place_ok()  # the fault was one-shot and the new token works


async def test_limits_counted_per_login_are_shared_by_the_logins_accounts(wire: Wire) -> None:
    limiter = wire.sb.state.rate_limiter
    async with wire.http.post(
        wire.sb.base_url + "/sandbox/rate-limits",
        json={"scope": "per_login", "GET_POSITIONS": {"limit": 1, "intervalNum": 60}},
    ) as r:
        assert r.status == 200
    assert limiter.scope == "per_login"
    assert (await wire.call("GET", f"/trade/accounts/{ACCOUNT}/positions"))[0] == 200
    wire.acc_num = "2"
    status, body = await wire.call("GET", "/trade/accounts/700002/positions")
    assert status == 429 and "GET_POSITIONS" in body["errmsg"]
    limiter.set_scope("per_account")
    assert (await wire.call("GET", "/trade/accounts/700002/positions"))[0] == 200


async def test_a_bad_scope_is_refused_with_a_reason(wire: Wire) -> None:
    async with wire.http.post(
        wire.sb.base_url + "/sandbox/rate-limits", json={"scope": "per_ip"}
    ) as r:
        assert r.status == 400 and "per_account, per_login" in (await r.json())["errmsg"]
    assert wire.sb.state.rate_limiter.scope == "per_account"


async def test_per_login_scope_from_the_seed_counts_both_accounts_together() -> None:
    config = load_seed(None, profile="fast")
    config.rate_limit_scope = "per_login"
    async with Sandbox(config, price_interval_ms=0) as sb, aiohttp.ClientSession() as http:
        sb.state.rate_limiter.limits["GET_ORDERS"].limit = 3
        sb.state.rate_limiter.limits["GET_ORDERS"].interval_num = 60
        wire = await _login(sb, http, "demo@sandbox.local")
        calls = []
        for acc_num, account in (("1", "700001"), ("2", "700002")) * 2:
            wire.acc_num = acc_num
            calls.append((await wire.call("GET", f"/trade/accounts/{account}/orders"))[0])
        assert calls == [200, 200, 200, 429]
