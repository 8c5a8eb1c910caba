"""A quiet lookup (``Reconciler.resolve(..., quiet=True)``: what another engine or an earlier run
may have sent before a takeover or a restart) reads one round, nothing more before the settle
time, then the two rounds that prove absence back to back: the account's read budget is not
spent just before the proving rounds (docs/kafka.md, "Catch-up"). The verdicts are the same as a
lookup that keeps reading. ManualClock on the in-process paper venue, its rounds counted with
the clock's time of each."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection

from engine.execution.reconcile import Reconciler, Resolution, Verdict
from engine.model.clock import ManualClock
from engine.venue.protocol import TagMatches
from tests.execution.test_reconcile_batched import CountingVenue

WALL_S = time.time()  # the paper venue stamps orders with the real wall clock
SETTLE_S = 4.0


class TimedVenue(CountingVenue):
    """CountingVenue that also notes the clock's monotonic() of every round."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__()
        self.clock = clock
        self.read_at: list[float] = []

    async def find_by_tags(
        self, account: str, tags: Collection[str] | None = None, since_ms: int | None = None
    ) -> dict[str, TagMatches]:
        self.read_at.append(self.clock.monotonic())
        return await super().find_by_tags(account, tags, since_ms)


async def lane(
    clock: ManualClock, rec: Reconciler, tags: list[str], quiet: bool
) -> list[Resolution]:
    sent = clock.monotonic()

    async def one_by_one() -> list[Resolution]:
        return [await rec.resolve("a1", tag, sent, quiet=quiet) for tag in tags]

    task = asyncio.ensure_future(one_by_one())
    while not task.done():
        if clock.sleepers:
            await clock.advance(0.05)
        else:
            await asyncio.sleep(0)
    return await task


async def test_a_quiet_lookup_reads_once_then_proves_absence_right_after_the_settle() -> None:
    clock = ManualClock(start_s=1_000.0, wall_offset_s=WALL_S)
    venue = TimedVenue(clock)
    rec = Reconciler(venue, settle_s=SETTLE_S, max_s=30.0, clock=clock)
    placed = {tag: await venue.place("a1", tag) for tag in ("t0", "t3")}
    start = clock.monotonic()
    tags = [f"t{i}" for i in range(6)]
    results = await lane(clock, rec, tags, quiet=True)
    for tag, res in zip(tags, results, strict=True):
        if tag in placed:
            assert res.verdict is Verdict.FOUND and res.order_id == placed[tag], (tag, res)
        else:
            assert res.verdict is Verdict.ABSENT, (tag, res)
    offsets = [round(t - start, 2) for t in venue.read_at]
    # One round at once (t0 found on it), none until the settle time, then the two proving
    # rounds one back-off step apart; every later tag answered from those.
    assert len(offsets) == 3, offsets
    assert offsets[0] == 0.0
    assert SETTLE_S <= offsets[1] < offsets[2] <= SETTLE_S + 0.5, offsets


async def test_without_quiet_the_same_lane_reads_between_and_proves_absence_later() -> None:
    """The comparison: a lookup that keeps reading before the settle time reads more rounds, and
    its second proving round comes a longer back-off step after the first."""
    clock = ManualClock(start_s=1_000.0, wall_offset_s=WALL_S)
    venue = TimedVenue(clock)
    rec = Reconciler(venue, settle_s=SETTLE_S, max_s=30.0, clock=clock)
    start = clock.monotonic()
    results = await lane(clock, rec, ["x0", "x1"], quiet=False)
    assert [r.verdict for r in results] == [Verdict.ABSENT, Verdict.ABSENT]
    offsets = [round(t - start, 2) for t in venue.read_at]
    assert len(offsets) > 3, offsets
    assert offsets[-1] - offsets[-2] > 0.1, offsets


async def test_a_round_kept_from_before_the_send_does_not_keep_a_quiet_lookup_from_reading() -> (
    None
):
    """Rounds of the account read before this takeover (an earlier lookup) cannot show what the
    other engine sent since: the quiet lookup reads its own first round at once and finds the
    order there, before the settle time."""
    clock = ManualClock(start_s=1_000.0, wall_offset_s=WALL_S)
    venue = TimedVenue(clock)
    rec = Reconciler(venue, settle_s=SETTLE_S, max_s=30.0, clock=clock)
    [early] = await lane(clock, rec, ["old"], quiet=True)
    assert early.verdict is Verdict.ABSENT
    await clock.advance(60.0)
    order_id = await venue.place("a1", "new")
    before = len(venue.read_at)
    start = clock.monotonic()
    [res] = await lane(clock, rec, ["new"], quiet=True)
    assert res.verdict is Verdict.FOUND and res.order_id == order_id
    assert [round(t - start, 2) for t in venue.read_at[before:]] == [0.0]


class EarlyClock(ManualClock):
    """A timer that wakes a sleep up to 1 ms early, as an event loop's timer granularity may."""

    async def sleep(self, seconds: float) -> None:
        await super().sleep(max(0.0, seconds - 0.001))


async def test_timers_waking_early_neither_read_a_round_nor_stretch_the_back_off() -> None:
    """Woken a moment before the settle time, a quiet lookup neither reads (that round could not
    prove absence) nor lets its back-off grow while it waits: the second proving round still
    comes a step or two of the first delay after the first (0.8 s here before the fix, up to the
    longest step, 2 s, in a run)."""
    clock = EarlyClock(start_s=1_000.0, wall_offset_s=WALL_S)
    venue = TimedVenue(clock)
    rec = Reconciler(venue, settle_s=SETTLE_S, max_s=30.0, clock=clock)
    start = clock.monotonic()
    [res] = await lane(clock, rec, ["x"], quiet=True)
    assert res.verdict is Verdict.ABSENT
    offsets = [round(t - start, 3) for t in venue.read_at]
    assert len(offsets) == 3, offsets
    assert offsets[1] >= SETTLE_S and offsets[2] - offsets[1] <= 0.2, offsets


async def test_with_the_settle_time_near_a_quiet_lookup_reads_first_at_the_settle_time() -> None:
    """A settle time within the longest back-off step (1 s here): a round read before it would
    wait for read budget (a newly owned account's first window is spent) and end after the
    settle time without counting as read after it; the lookup reads first at the settle time."""
    clock = ManualClock(start_s=1_000.0, wall_offset_s=WALL_S)
    venue = TimedVenue(clock)
    rec = Reconciler(venue, settle_s=1.0, max_s=30.0, clock=clock)
    order_id = await venue.place("a1", "sent")
    start = clock.monotonic()
    found, absent = await lane(clock, rec, ["sent", "never"], quiet=True)
    assert found.verdict is Verdict.FOUND and found.order_id == order_id
    assert absent.verdict is Verdict.ABSENT
    offsets = [round(t - start, 2) for t in venue.read_at]
    assert len(offsets) == 2 and offsets[0] >= 1.0, offsets
