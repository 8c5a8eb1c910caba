"""The injectable clock: live methods are the time functions; the manual clock moves on demand."""

from __future__ import annotations

import asyncio
import time

from engine.model.clock import LIVE, ManualClock


def test_live_clock_methods_are_the_time_functions_themselves() -> None:
    assert LIVE.monotonic_ns is time.monotonic_ns
    assert LIVE.time is time.time


async def test_manual_clock_wakes_sleepers_in_deadline_order_only_when_advanced() -> None:
    clock = ManualClock(start_s=10.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.monotonic()))

    tasks = [asyncio.create_task(sleeper("late", 5.0)), asyncio.create_task(sleeper("soon", 1.0))]
    await clock.until_sleeping(2)
    assert woke == []
    await clock.advance(0.5)
    assert woke == []
    await clock.advance(4.5)
    assert woke == [("soon", 11.0), ("late", 15.0)]
    assert clock.monotonic() == 15.0
    await asyncio.gather(*tasks)


async def test_manual_clock_wall_time_moves_with_monotonic() -> None:
    clock = ManualClock(start_s=0.0, wall_offset_s=1_700_000_000.0)
    await clock.advance(2.0)
    assert clock.time() == 1_700_000_002.0
    assert clock.time_ns() == 1_700_000_002 * 10**9
