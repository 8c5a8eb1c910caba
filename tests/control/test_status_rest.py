"""/status for accounts whose login has no stream: balances, positions and working orders read
over REST from the real sandbox (in process, over loopback HTTP), at most once per refresh
period; and the kill switch's flatten on the same engine."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import orjson

from engine.app.config import parse_config
from engine.app.daemon import build_engine
from engine.model.delivery import Delivery
from sandbox import Sandbox
from tests.fixtures.engine import demo_secrets
from tests.fixtures.sim import DEMO_SERVER

KEY = "ctl-4e6a0c2b8d1f3957"
AUTH = {"Authorization": f"Bearer {KEY}"}


def _signal(**fields: object) -> Delivery:
    return Delivery(orjson.dumps(fields), 0)


async def test_status_reads_accounts_without_a_stream_over_rest_and_flatten_clears_them(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    cfg = parse_config(
        {
            "engine": {
                "journal_path": str(tmp_path / "j.sqlite"),
                "control_port": 0,
                "control_token": "env:CTRL",
            },
            "logins": {
                "sb": {
                    "base_url": sandbox.base_url,
                    "server": DEMO_SERVER,
                    "email": "env:SB_EMAIL",
                    "password": "env:SB_PASSWORD",
                }
            },
            "accounts": {"a1": {"login": "sb", "acc_num": 1}},
        }
    )
    engine = await build_engine(cfg, secrets=await demo_secrets(CTRL=KEY))
    try:
        common = {"account": "a1", "action": "place", "symbol": "EURUSD", "side": "buy"}
        engine.pipeline.submit(_signal(id="m1", type="market", qty=0.02, **common))
        engine.pipeline.submit(_signal(id="l1", type="limit", qty=0.01, price=0.5, **common))
        await engine.pipeline.drain()
        async with aiohttp.ClientSession() as http:
            url = engine.control.url
            async with http.get(url + "/status", headers=AUTH) as resp:
                assert resp.status == 200
                a1 = (await resp.json())["engine"]["accounts"]["a1"]
            assert a1["source"] == "rest"
            assert a1["balance"] > 0 and a1["equity"] is not None
            [position] = a1["positions"]
            assert position["symbol"] == "EURUSD" and position["side"] == "buy"
            assert position["lots"] == 0.02
            [order] = a1["orders"]
            assert order["price"] == 0.5 and order["side"] == "buy"
            assert a1["day_pnl"] is not None
            assert any(r["route"] == "PLACE_ORDER" for r in a1["rate_budget"])

            async with http.post(url + "/kill", json={"flatten": True}, headers=AUTH) as resp:
                body = await resp.json()
            assert resp.status == 200
            assert body["cancelled"]["a1"] == {"orders": "cancelled", "positions": "closed"}
        account = next(a for a in sandbox.state.accounts.values() if a.acc_num == 1)
        assert account.orders == {}
        assert not account.positions
    finally:
        await engine.stop()
