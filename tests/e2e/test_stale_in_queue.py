"""Issue 4: a placement that waits in the account's rate-limit queue is not sent once its signal is
older than max_signal_age_ms. A burst far over a low PLACE_ORDER limit on the sandbox: the first
ones go out, the rest expire in the queue with the wait in the reason, and none of those reaches
the venue."""

from __future__ import annotations

import time
from pathlib import Path

from sandbox import Sandbox
from sandbox.seed import RateLimit
from tests.fixtures.engine import start_engine
from tests.fixtures.sim import realistic_config

BURST = 8
MAX_AGE_MS = 400  # a 2-per-second budget sends about one more order within this


async def test_placements_queued_past_max_signal_age_expire_unsent(tmp_path: Path) -> None:
    config = realistic_config()
    config.rate_limits["PLACE_ORDER"] = RateLimit(2)  # per second
    sandbox = Sandbox(config, price_interval_ms=0)
    await sandbox.start()
    try:
        live = await start_engine(sandbox, tmp_path, max_signal_age_ms=MAX_AGE_MS)
        now_ms = int(time.time() * 1000)
        for i in range(BURST):
            live.place(f"s{i}", ts=now_ms, type="limit", price=0.9)
        await live.engine.pipeline.drain()
        await live.engine.stop()
        at_venue = [o for o in live.sim_orders() if o.strategy_id]
    finally:
        await sandbox.stop()

    by_status: dict[str, list[dict[str, object]]] = {}
    for outcome in live.outcomes:
        by_status.setdefault(str(outcome.status), []).append(outcome)
    accepted, expired = by_status.get("accepted", []), by_status.get("expired", [])
    assert len(live.outcomes) == BURST and len(accepted) + len(expired) == BURST
    assert accepted and expired, by_status
    for outcome in expired:
        reason = str(outcome.reason)
        assert "for PLACE_ORDER budget, over max_signal_age_ms: not sent" in reason, reason
        waited_ms = int(reason.split("waited ")[1].split(" ms")[0])
        assert waited_ms >= 0
    # Only what was accepted reached the venue: an expired placement was never sent.
    assert len(at_venue) == len(accepted)
