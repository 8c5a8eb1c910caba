"""The daemon's control surface and stream wiring against the sandbox: the kill switch cancels
working orders and expires what is still queued; /health reports every account's parts; with a
stream_url the Streams API session feeds live events to the engine."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from engine.app.config import parse_config
from engine.app.daemon import Engine, build_engine
from engine.model.delivery import Delivery
from engine.model.events import Event, OutcomeEvent, Topic
from sandbox import Sandbox
from tests.fixtures.engine import demo_secrets
from tests.fixtures.sim import DEMO_PASSWORD, DEMO_SERVER

KEY = "test-control-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


async def _engine(sandbox: Sandbox, tmp_path: Path, **login: Any) -> Engine:
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
                    **login,
                }
            },
            "accounts": {"a1": {"login": "sb", "acc_num": 1}, "a2": {"login": "sb", "acc_num": 2}},
            # An http source: POST /signals is refused below because of the kill switch, not
            # because nothing would take the signal.
            "sources": [{"kind": "http"}],
        }
    )
    secrets = await demo_secrets(CTRL=KEY, DEV_KEY=sandbox.state.config.developer_api_key)
    return await build_engine(cfg, secrets=secrets)


def _limit(signal_id: str) -> Delivery:
    return Delivery(
        orjson.dumps(
            {
                "id": signal_id,
                "account": "a1",
                "action": "place",
                "symbol": "EURUSD",
                "type": "limit",
                "side": "buy",
                "qty": 0.01,
                "price": 0.9,
            }
        ),
        0,
    )


async def test_kill_switch_cancels_working_orders_and_expires_queued_signals(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    engine = await _engine(sandbox, tmp_path)
    outcomes: list[OutcomeEvent] = []
    engine.bus.subscribe(lambda t, e: outcomes.append(e) if isinstance(e, OutcomeEvent) else None)
    try:
        engine.pipeline.submit(_limit("w1"))
        await engine.pipeline.drain()
        account = next(a for a in sandbox.state.accounts.values() if a.acc_num == 1)
        assert len(account.orders) == 1
        async with aiohttp.ClientSession() as http:
            url = engine.control.url
            async with http.post(url + "/kill", json={"cancel_orders": True}, headers=AUTH) as resp:
                body = await resp.json()
                assert resp.status == 200 and body["cancelled"]["a1"] == "cancelled"
            engine.pipeline.submit(_limit("late"))  # already queued when the switch is on
            await engine.pipeline.drain()
            async with http.post(url + "/signals", data=b"{}", headers=AUTH) as refused:
                assert refused.status == 503
                assert "kill switch engaged" in (await refused.text())
        assert account.orders == {}
        late = next(o for o in outcomes if o.id == "late")
        assert late.status == "expired" and "kill switch" in late.reason
    finally:
        await engine.stop()


async def test_health_reports_each_account_and_the_stream_feeds_the_engine(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    ws = sandbox.base_url.replace("http://", "ws://")
    engine = await _engine(sandbox, tmp_path, stream_url=ws, developer_api_key="env:DEV_KEY")
    updates: list[tuple[Topic, Event]] = []
    engine.bus.subscribe(lambda t, e: updates.append((t, e)) if t != "outcomes" else None)
    try:
        [live] = engine.streams
        await asyncio.wait_for(live.wait_live(), 30)
        engine.pipeline.submit(
            Delivery(
                orjson.dumps(
                    {
                        "id": "s1",
                        "account": "a1",
                        "action": "place",
                        "symbol": "EURUSD",
                        "type": "market",
                        "side": "buy",
                        "qty": 0.01,
                    }
                ),
                0,
            )
        )
        await engine.pipeline.drain()
        rec = engine.pipeline.tracker.by_signal("s1")
        assert rec is not None and rec.order_id
        for _ in range(500):  # the fill arrives on the stream; wait for it (hang guard only)
            if rec.position_id:
                break
            await asyncio.sleep(0.01)
        assert rec.position_id, "the stream bound the position the order opened"
        assert any(t == "position_updates" for t, _ in updates)
        text = ""
        async with aiohttp.ClientSession() as http:
            for _ in range(100):  # until the health task has reported (hang guard only)
                async with http.get(engine.control.url + "/health", headers=AUTH) as resp:
                    text = orjson.dumps(await resp.json()).decode()
                if "live" in text:
                    break
                await asyncio.sleep(0.05)
        assert "a1" in text and "a2" in text and "live" in text
        assert DEMO_PASSWORD not in text and KEY not in text
    finally:
        await engine.stop()
