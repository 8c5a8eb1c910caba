"""The daemon's health pass on the engine as build_engine wires it, against the sandbox: every
account's components on the board and every budgeted route's use in the gauges, in slices that
yield to the loop, and a spent budget seen on the next pass."""

from __future__ import annotations

from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from engine.app.health_pass import health_pass
from engine.observability.health import HEALTH_COMPONENTS
from sandbox import Sandbox
from tests.fixtures.engine import start_engine


def drive(coro: Coroutine[Any, Any, None]) -> int:
    """Run a pass to its end without the loop, one slice per step; returns how often it yielded."""
    yields = 0
    while True:
        try:
            coro.send(None)
        except StopIteration:
            return yields
        yields += 1


async def test_a_pass_reports_every_account_in_slices_and_follows_the_gate(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    live = await start_engine(sandbox, tmp_path)
    eng = live.engine
    try:
        aliases = sorted(eng.accounts.sessions)
        assert aliases == ["a1", "a2"]
        # One account per slice: the pass yields after each of them.
        assert drive(health_pass(eng.accounts, {}, eng.metrics, slice_accounts=1)) == 2
        board = eng.metrics.health
        util = eng.metrics.rate_limit_utilisation.values
        near = eng.metrics.rate_limit_near.values
        for alias in aliases:
            assert set(board.account(alias)) == set(HEALTH_COMPONENTS)
            gate = eng.accounts[alias].gate
            assert gate is not None
            routes = [route for route, _ in gate.bucket_use()]
            assert "PLACE_ORDER" in routes
            for route in routes:
                assert util[(alias, route)] < 0.8, route  # nothing spent yet
                assert near[(alias, route)] == 0.0

        # a2's whole budget spent (as after a Kafka handover): the next pass shows it, a1 not.
        gate2 = eng.accounts["a2"].gate
        assert gate2 is not None
        gate2.spend_window()
        assert drive(health_pass(eng.accounts, {}, eng.metrics)) == 0  # 2 accounts: one slice
        for route, _ in gate2.bucket_use():
            assert util[("a2", route)] >= 0.8, route
            assert near[("a2", route)] == 1.0
            assert eng.metrics.rate_limit_alerts.values[("a2", route)] == 1.0
            assert near[("a1", route)] == 0.0
        assert "a2" in eng.metrics.render_prometheus()
    finally:
        await eng.stop()
