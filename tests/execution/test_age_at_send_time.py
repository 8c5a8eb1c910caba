"""max_signal_age_ms holds until the bytes leave: a placement that waited past it for a connection
(not for rate budget) ends ``expired`` with its age and its wait in the reason, and the venue
never receives it. The whole engine (build_engine) on the real sandbox, its PLACE_ORDER slowed by
the latency fault, the account's order pool held at one connection."""

from __future__ import annotations

import re
import time
from pathlib import Path

import aiohttp

from sandbox import Sandbox
from tests.fixtures.engine import sandbox_with, start_engine

MAX_AGE_MS = 600
STALE_REASON = re.compile(
    r"^expired unsent: \d+\.\d s old at send time \(waited \d+\.\d s for a connection\); "
    rf"max_signal_age_ms = {MAX_AGE_MS}$"
)


async def slow_orders(sandbox: Sandbox, latency_ms: int) -> None:
    async with aiohttp.ClientSession() as http:
        faults = {"latency": {"PLACE_ORDER": latency_ms}}
        async with http.post(sandbox.base_url + "/sandbox/faults", json=faults) as reply:
            assert reply.status == 200, await reply.text()


async def test_a_placement_that_waits_past_its_age_for_a_connection_expires_unsent(
    tmp_path: Path,
) -> None:
    sandbox = sandbox_with()
    await sandbox.start()
    try:
        live = await start_engine(
            sandbox,
            tmp_path,
            max_signal_age_ms=MAX_AGE_MS,
            order_connections=1,
            order_connections_max=1,
        )
        try:
            await slow_orders(sandbox, 1_500)  # the first order holds the only connection
            now_ms = int(time.time() * 1000)
            for name in ("first", "second"):
                live.place(name, ts=now_ms)
            await live.engine.pipeline.drain()
        finally:
            await live.engine.stop()
        at_venue = live.sim_orders()
    finally:
        await sandbox.stop()

    outcomes = {o.id: o for o in live.outcomes}
    assert outcomes["first"].status == "accepted", outcomes["first"]
    second = outcomes["second"]
    assert second.status == "expired", second
    assert STALE_REASON.match(str(second.reason)), second.reason
    # Counted by tag: the venue holds the first order and nothing of the second.
    assert second.tag is not None
    assert [o for o in at_venue if o.strategy_id == second.tag] == []
    assert len([o for o in at_venue if o.strategy_id == outcomes["first"].tag]) == 1
