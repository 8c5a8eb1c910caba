"""Operator settings in the config reach the TradeLocker adapter the daemon builds."""

from __future__ import annotations

from pathlib import Path

import orjson

from engine.app.config import parse_config
from engine.app.daemon import build_engine
from engine.model.delivery import Delivery
from engine.model.events import OutcomeEvent
from sandbox import Sandbox
from tests.fixtures.engine import demo_secrets, engine_config_data


async def test_order_timeouts_and_connections_from_the_config_reach_every_account(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    data = engine_config_data(sandbox.base_url, tmp_path, order_connections=3)
    data["timeouts"] = {**data["timeouts"], "order_s": 1.5, "query_s": 2.5}
    eng = await build_engine(
        parse_config(data), secrets=await demo_secrets(), with_control=False, sources=[]
    )
    outcomes: list[OutcomeEvent] = []
    eng.bus.subscribe(
        lambda topic, ev: outcomes.append(ev) if isinstance(ev, OutcomeEvent) else None
    )
    try:
        for alias in ("a1", "a2"):
            client = eng.venue.client(alias)
            assert (client.timeouts.order_total, client.timeouts.query_total) == (1.5, 2.5)
            assert client.orders_transport is not None
            assert client.orders_transport.size == 3
        signal = {"id": "cfg-1", "account": "a1", "action": "place", "symbol": "EURUSD",
                  "side": "buy", "type": "market", "qty": 0.01}  # fmt: skip
        eng.pipeline.submit(Delivery(orjson.dumps(signal), 0))
        await eng.pipeline.drain()
        assert [o.status for o in outcomes if o.id == "cfg-1"] == ["accepted"]
    finally:
        await eng.stop()
