"""The kill switch stops orders that were already waiting for rate budget when it was engaged:
they expire unsent instead of going out once the budget frees up."""

from __future__ import annotations

from pathlib import Path

from engine.io.control import KillSwitch
from sandbox import Sandbox
from sandbox.seed import RateLimit
from tests.fixtures.engine import start_engine
from tests.fixtures.sim import realistic_config
from tests.fixtures.waiting import eventually

BURST = 6


async def test_orders_queued_for_rate_budget_expire_when_the_kill_switch_is_engaged(
    tmp_path: Path,
) -> None:
    config = realistic_config()
    config.rate_limits["PLACE_ORDER"] = RateLimit(2)  # per second: most of the burst must queue
    sandbox = Sandbox(config, price_interval_ms=0)
    await sandbox.start()
    try:
        live = await start_engine(sandbox, tmp_path)
        kill = KillSwitch()
        live.engine.pipeline.kill_switch = kill
        gate = live.engine.accounts["a1"].gate
        assert gate is not None
        for i in range(BURST):
            live.send(id=f"k{i}", account="a1", action="place", symbol="EURUSD", type="limit",
                      side="buy", qty=0.01, price=0.9)  # fmt: skip
        await eventually(lambda: gate.queued() >= 3, "orders queued for PLACE_ORDER budget")
        kill.engage("test: stop trading")
        await live.engine.pipeline.drain()
        await live.engine.stop()
        at_venue = [o for o in live.sim_orders() if o.strategy_id]
    finally:
        await sandbox.stop()

    assert len(live.outcomes) == BURST
    accepted = [o for o in live.outcomes if o.status == "accepted"]
    stopped = [o for o in live.outcomes if o.status == "expired"]
    assert len(accepted) + len(stopped) == BURST
    assert len(stopped) >= 3, live.outcomes
    for o in stopped:
        assert "kill switch engaged while it waited for rate budget" in str(o.reason), o
    # Nothing that expired reached the venue.
    assert len(at_venue) == len(accepted)
