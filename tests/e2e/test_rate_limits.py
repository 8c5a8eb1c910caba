"""The rate-limit proof: a burst of 10x an account's PLACE_ORDER limit meets no 429, every
signal gets an outcome, and market orders overtake the pending ones waiting for budget."""

from __future__ import annotations

from pathlib import Path

from sandbox import Sandbox
from sandbox.seed import RateLimit
from tests.fixtures.engine import start_engine
from tests.fixtures.sim import count_limiter, realistic_config

LIMIT = 5  # PLACE_ORDER per second on the sandbox
PENDING, MARKET = 40, 10


async def test_burst_of_ten_times_the_limit_gets_no_429_and_markets_go_first(
    tmp_path: Path,
) -> None:
    config = realistic_config()
    config.rate_limits["PLACE_ORDER"] = RateLimit(LIMIT)
    sandbox = Sandbox(config, price_interval_ms=0)
    await sandbox.start()
    limiter = count_limiter(sandbox)  # its own refusals (each an HTTP 429), observation only
    try:
        live = await start_engine(sandbox, tmp_path)  # the default margin: 90 % of the limit
        for i in range(PENDING):
            live.place(f"p{i}", type="limit", price=0.9)
        for i in range(MARKET):
            live.place(f"m{i}")
        await live.engine.pipeline.drain()
        await live.engine.stop()
        orders = [o for o in live.sim_orders() if o.strategy_id]
    finally:
        await sandbox.stop()

    assert limiter.refused["PLACE_ORDER"] == 0, limiter.refused
    assert len(live.outcomes) == PENDING + MARKET
    assert all(o.status == "accepted" for o in live.outcomes), [
        o for o in live.outcomes if o.status != "accepted"
    ]
    assert len(orders) == PENDING + MARKET
    # The market orders were sent after all 40 pending ones, yet the venue received every one of
    # them while at least half of the pending ones were still waiting: they overtook the queue.
    last_market_ms = max(o.created_ms for o in orders if o.type == "market")
    pending_after = [o for o in orders if o.type == "limit" and o.created_ms > last_market_ms]
    assert len(pending_after) >= PENDING // 2, sorted((o.created_ms, o.type) for o in orders)
