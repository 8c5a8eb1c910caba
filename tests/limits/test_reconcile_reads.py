"""Reconciliation's reads: the order history is read from the send time less the skew allowance,
and the read that would prove an order absent reads all of it. Driven by a ManualClock on the
in-process paper venue (its find_by_tags recorded: what the reconciler asks is the subject)."""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from engine.execution.reconcile import Reconciler, Resolution, Verdict
from engine.model.clock import ManualClock
from engine.venue.paper import PaperVenue
from engine.venue.protocol import TagMatches

WALL_S = 1_800_000_000.0  # the wall clock at the ManualClock's start


class RecordingVenue(PaperVenue):
    def __init__(self) -> None:
        super().__init__(["a1"])
        self.windows: list[int | None] = []

    async def find_by_tags(
        self, account: str, tags: Collection[str] | None = None, since_ms: int | None = None
    ) -> dict[str, TagMatches]:
        self.windows.append(since_ms)
        return await super().find_by_tags(account, tags, since_ms)


async def drive(clock: ManualClock, task: asyncio.Task[Resolution]) -> Resolution:
    """Move the clock whenever the reconciler sleeps on it, until it decides."""
    while not task.done():
        if clock.sleepers:
            await clock.advance(0.5)
        else:
            await asyncio.sleep(0)
    return await task


async def test_history_is_read_from_the_send_time_and_absence_is_proven_on_all_of_it() -> None:
    clock = ManualClock(start_s=1_000.0, wall_offset_s=WALL_S)
    venue = RecordingVenue()
    rec = Reconciler(venue, settle_s=1.0, max_s=30.0, history_skew_s=120.0, clock=clock)
    sent_at = clock.monotonic()
    await clock.advance(0.5)
    task = asyncio.create_task(rec.resolve("a1", "s-never-placed", sent_at))
    res = await drive(clock, task)
    assert res.verdict is Verdict.ABSENT
    narrowed = int((WALL_S - 120.0) * 1000)  # the send time on the wall clock, less the skew
    assert venue.windows[0] == narrowed
    assert venue.windows[-1] is None  # the proving read: the whole history
    assert set(venue.windows) == {narrowed, None}


async def test_without_a_send_time_the_whole_history_is_read() -> None:
    clock = ManualClock(wall_offset_s=WALL_S)
    venue = RecordingVenue()
    rec = Reconciler(venue, settle_s=0.0, clock=clock)
    task = asyncio.create_task(rec.resolve("a1", "s-after-restart", None))
    assert (await drive(clock, task)).verdict is Verdict.ABSENT
    assert set(venue.windows) == {None}
