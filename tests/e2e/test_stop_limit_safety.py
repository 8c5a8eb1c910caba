"""Stop-limit emulation never places its limit order twice on an ambiguous trigger."""

from __future__ import annotations

from pathlib import Path

from engine.model.events import OrderUpdate
from sandbox import Sandbox
from tests.fixtures.engine import start_engine

EUR = {"account": "a1", "symbol": "EURUSD"}


async def test_a_trigger_whose_placement_is_proven_absent_fails_and_is_never_resent(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    live = await start_engine(sandbox, tmp_path, stop_limit_poll_ms=20)
    updates: list[OrderUpdate] = []
    live.engine.bus.subscribe(
        lambda topic, ev: updates.append(ev) if isinstance(ev, OrderUpdate) else None
    )
    try:
        out = await live.run(
            id="sl-503",
            action="place",
            type="stop_limit",
            side="buy",
            qty=0.1,
            stop_price=1.2,
            price=1.2002,
            **EUR,
        )
        assert out.status == "accepted" and out.order_id.startswith("emu-"), out.reason
        # Every order POST now fails with a 503 before the venue acts: the placement is
        # ambiguous to the engine, and reconciliation proves nothing exists under the tag.
        sandbox.faults.update({"error5xx": {"PLACE_ORDER": 1.0}})
        sandbox.state.set_price("EURUSD", bid=1.2000, ask=1.2001)
        await live.engine.stop_limits.check_once()
        failed = [u for u in updates if u.kind == "stop_limit_failed"]
        assert [u.emulated_id for u in failed] == [out.order_id]
        assert "not resent" in failed[0].reason
        assert live.engine.stop_limits.held() == []
        # The venue recovers and the market stays through the stop: still nothing is placed.
        sandbox.faults.clear()
        sandbox.state.set_price("EURUSD", bid=1.2003, ask=1.2004)
        assert await live.engine.stop_limits.check_once() == 0
        assert [o for o in live.sim_orders() if o.strategy_id == out.tag] == []
    finally:
        await live.engine.stop()


async def test_a_failed_stop_limit_stays_failed_after_a_restart(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    first = await start_engine(sandbox, tmp_path, stop_limit_poll_ms=20)
    out = await first.run(
        id="sl-r",
        action="place",
        type="stop_limit",
        side="sell",
        qty=0.1,
        stop_price=1.0,
        price=0.9998,
        **EUR,
    )
    sandbox.faults.update({"error5xx": {"PLACE_ORDER": 1.0}})
    sandbox.state.set_price("EURUSD", bid=0.9999, ask=1.0000)
    await first.engine.stop_limits.check_once()
    await first.engine.stop()
    sandbox.faults.clear()
    second = await start_engine(sandbox, tmp_path, stop_limit_poll_ms=20)
    try:
        assert second.engine.stop_limits.held() == []
        assert await second.engine.stop_limits.check_once() == 0
        assert [o for o in second.sim_orders() if o.strategy_id == out.tag] == []
    finally:
        await second.engine.stop()
