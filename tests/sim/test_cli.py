"""``tl-engine sim`` as a process: first line is the base URL, it serves, SIGTERM ends it."""

from __future__ import annotations

import aiohttp

from tests.sim.client import EMAIL, PASSWORD, SERVER


async def test_sim_subprocess_prints_its_url_and_serves_the_api(sandbox_process: str) -> None:
    assert sandbox_process.startswith("http://127.0.0.1:")
    async with aiohttp.ClientSession() as http:
        async with http.post(
            sandbox_process + "/backend-api/auth/jwt/token",
            json={"email": EMAIL, "password": PASSWORD, "server": SERVER},
        ) as r:
            assert r.status == 201
            token = (await r.json())["accessToken"]
        async with http.get(
            sandbox_process + "/backend-api/trade/config",
            headers={"Authorization": f"Bearer {token}", "accNum": "1"},
        ) as r:
            assert r.status == 200 and (await r.json())["s"] == "ok"


async def test_seed_file_with_generated_users_gives_many_accounts(tmp_path: object) -> None:
    from pathlib import Path

    import orjson

    from sandbox import Sandbox
    from sandbox.seed import load_seed

    seed = Path(str(tmp_path)) / "seed.json"
    seed.write_bytes(
        orjson.dumps(
            {
                "generatedUsers": {"count": 10, "accountsPerUser": 3, "balance": 5000},
                "rateLimits": {"PLACE_ORDER": 5},
            }
        )
    )
    config = load_seed(seed)
    assert len(config.users) == 11
    assert sum(len(u.accounts) for u in config.users) == 32
    async with Sandbox(config, price_interval_ms=0) as sb, aiohttp.ClientSession() as http:
        async with http.post(
            sb.rest_url + "/auth/jwt/token",
            json={
                "email": "trader7@sandbox.local",
                "password": "demo-password",
                "server": "SANDBOX",
            },
        ) as r:
            token = (await r.json())["accessToken"]
        async with http.get(
            sb.rest_url + "/auth/jwt/all-accounts", headers={"Authorization": f"Bearer {token}"}
        ) as r:
            accounts = (await r.json())["accounts"]
    assert [a["accNum"] for a in accounts] == ["1", "2", "3"]
    assert {a["accountBalance"] for a in accounts} == {"5000.00"}
    assert sb.state.rate_limiter.limits["PLACE_ORDER"].limit == 5


async def test_prices_move_on_the_timer_while_serving() -> None:
    import asyncio

    from sandbox import Sandbox

    async with Sandbox(price_interval_ms=5) as sb:
        first = sb.state.prices.quote(278).bid
        for _ in range(2000):  # polled, not timed: the assertion is that it moves at all
            await asyncio.sleep(0.01)
            if sb.state.prices.quote(278).bid != first:
                break
        assert sb.state.prices.quote(278).bid != first


def test_the_committed_seed_file_loads() -> None:
    from pathlib import Path

    from sandbox.seed import load_seed

    path = Path(__file__).resolve().parents[2] / "config" / "sandbox-seed.json"
    config = load_seed(path)
    assert config.users[0].email == "demo@sandbox.local"
    assert [a.id for a in config.users[0].accounts] == ["700001", "700002"]
    # The seed users run is realistic and leaves every switch to the profile, so --profile fast
    # over it (micro-benchmarks, tests of the engine's mechanics) is the fast profile whole.
    realistic, fast = load_seed(None), load_seed(None, profile="fast")
    assert config.profile == "realistic" and config.rate_limits == realistic.rate_limits
    assert config.venue == realistic.venue and config.faults == realistic.faults
    over = load_seed(path, profile="fast")
    assert over.rate_limits == fast.rate_limits and over.venue == fast.venue
    assert over.access_token_lifetime_s == fast.access_token_lifetime_s
