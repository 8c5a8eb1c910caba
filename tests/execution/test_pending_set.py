"""The pending set's pacing and resolution, on an injected clock (engine.execution.pending).

The venue is the in-process PaperVenue with one condition added that it has no switch for (so a
small subclass, not a mock of the engine): its reads fail (503) while ``down``, as in an outage.
Time is a ManualClock: the test moves it a second at a time and counts the venue's reads. The same
behaviour against the realistic sandbox over HTTP: tests/e2e/test_corrections.py.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Collection
from pathlib import Path

import pytest

from engine.execution.intake import Latch
from engine.execution.pending import MAX_PAUSE_S, Entry
from engine.model.clock import ManualClock
from engine.model.domain import (
    Action,
    Order,
    OrderRequest,
    OrderType,
    OutcomeStatus,
    Position,
    Side,
    Validity,
)
from engine.model.errors import VenueUnavailable
from engine.model.events import OutcomeCorrection
from engine.venue.paper import PaperVenue
from engine.venue.protocol import TagMatches, group_by_tag
from tests.execution.conftest import Harness, build
from tests.fixtures.waiting import eventually


class OutageVenue(PaperVenue):
    """Reads answer 503 while ``down``; every read is counted per account."""

    def __init__(self) -> None:
        super().__init__(("a1", "a2"))
        self.down = False
        self.reads: Counter[str] = Counter()

    def _read(self, account: str) -> None:
        self.reads[account] += 1
        if self.down:
            raise VenueUnavailable("HTTP 503 from the venue", account=account, route="ORDERS")

    async def orders(self, account: str) -> list[Order]:
        self._read(account)
        return await super().orders(account)

    async def orders_history(
        self, account: str, from_ms: int | None = None, to_ms: int | None = None
    ) -> list[Order]:
        self._read(account)
        return await super().orders_history(account, from_ms, to_ms)

    async def positions(self, account: str) -> list[Position]:
        self._read(account)
        return await super().positions(account)

    async def find_by_tags(
        self, account: str, tags: Collection[str] | None = None, since_ms: int | None = None
    ) -> dict[str, TagMatches]:
        # One round: the three views read together, as the TradeLocker venue does (all three
        # are sent even when one fails), so a round costs three reads up or down.
        self.reads[account] += 3
        if self.down:
            raise VenueUnavailable("HTTP 503 from the venue", account=account, route="ORDERS")
        return group_by_tag(
            tags,
            await PaperVenue.orders(self, account),
            await PaperVenue.orders_history(self, account, since_ms),
            await PaperVenue.positions(self, account),
        )


@pytest.fixture
async def outage(tmp_path: Path) -> AsyncIterator[tuple[Harness, OutageVenue, ManualClock]]:
    venue = OutageVenue()
    clock = ManualClock()
    h = await build(tmp_path, venue=venue, settle_s=1.0, clock=clock)
    try:
        yield h, venue, clock
    finally:
        await h.pipeline.close()
        await h.book.close()
        await h.journal.close()


async def seconds(clock: ManualClock, n: int, then_asleep: bool = True) -> None:
    """Move time ``n`` seconds, one at a time; ``then_asleep``: the runner sleeps again after
    each (false once the set may be empty: the runner has ended)."""
    for _ in range(n):
        await clock.advance(1.0)
        if then_asleep:
            await clock.until_sleeping()
        else:
            for _ in range(50):
                await asyncio.sleep(0)


def corrections(h: Harness) -> dict[str, OutcomeCorrection]:
    return {o.id: o for o in h.outcomes if isinstance(o, OutcomeCorrection)}


async def test_undecided_orders_are_looked_up_in_paced_rounds_then_corrected_once(
    outage: tuple[Harness, OutageVenue, ManualClock],
) -> None:
    h, venue, clock = outage
    eurusd = h.pipeline.accounts["a1"].instruments_by_name["EURUSD"]
    placed = await venue.place_order(
        OrderRequest("a1", eurusd, Side.BUY, OrderType.LIMIT, 0.01, Validity.GTC, "tag-made",
                     price=0.9)
    )  # fmt: skip
    venue.down = True
    pending = h.pipeline.pending
    sent_at = clock.monotonic()
    for sid, alias, tag in (("made", "a1", "tag-made"), ("never", "a1", "tag-never"),
                            ("other", "a2", "tag-other")):  # fmt: skip
        pending.add(Entry(sid, sid, alias, tag, Action.PLACE, sent_at))
    await clock.until_sleeping()

    # 60 s of outage: one round (3 reads) per account, the pause doubling from 1 s to 10 s:
    # rounds at 0, 1, 3, 7, 15, 25, 35, 45 and 55 s, whatever the number of orders pending.
    await seconds(clock, 60)
    assert MAX_PAUSE_S == 10.0
    assert venue.reads == {"a1": 9 * 3, "a2": 9 * 3}
    assert len(pending) == 3 and not corrections(h)

    venue.down = False  # back: the next round is at 65 s, then one every second
    await seconds(clock, 4)
    assert not corrections(h)
    await seconds(clock, 1)
    fixed = corrections(h)
    assert set(fixed) == {"made"}, "found in the first round the venue answers"
    assert fixed["made"].status == "accepted" and fixed["made"].corrects == "unknown"
    assert fixed["made"].order_id == placed.order_id
    await seconds(clock, 1, then_asleep=False)
    fixed = corrections(h)
    assert set(fixed) == {"made", "never", "other"}, "absent in two complete rounds"
    for sid in ("never", "other"):
        assert fixed[sid].status == "rejected" and "not placed" in (fixed[sid].reason or "")
    assert len(pending) == 0
    # Each is journalled (real I/O) before it counts as resolved.
    await eventually(lambda: pending.resolved == 3, "the three corrections journalled")
    reads = dict(venue.reads)
    await seconds(clock, 30, then_asleep=False)
    assert venue.reads == reads, "an empty set reads nothing"
    assert len([o for o in h.outcomes if isinstance(o, OutcomeCorrection)]) == 3
    for sid, status in (("made", OutcomeStatus.ACCEPTED), ("never", OutcomeStatus.REJECTED)):
        row = h.journal.decided(sid)
        assert row is not None and not row.pending and row.status is status


async def test_a_failed_round_between_two_absent_ones_does_not_prove_absence(
    outage: tuple[Harness, OutageVenue, ManualClock],
) -> None:
    h, venue, clock = outage
    pending = h.pipeline.pending
    acked: list[str] = []

    async def ack() -> None:
        acked.append("x")

    # The delivery's ack, held since its unknown outcome, is given with the correction.
    pending.add(Entry("x", "x", "a1", "tag-x", Action.PLACE, None, latch=Latch(ack, 1)))
    await clock.until_sleeping()  # round 1 at 0 s: absent (1)
    venue.down = True
    await seconds(clock, 1)  # round 2 at 1 s: failed, the count starts again
    venue.down = False
    await seconds(clock, 1)  # round 3 at 2 s: absent (1)
    assert "tag-x" in pending and not corrections(h) and not acked
    await seconds(clock, 1, then_asleep=False)  # round 4 at 3 s: absent (2)
    assert corrections(h)["x"].status == "rejected"
    await eventually(lambda: acked == ["x"], "the ack, once the correction is journalled")


async def test_a_journal_row_recovery_cannot_read_joins_the_set_and_is_decided_once(
    outage: tuple[Harness, OutageVenue, ManualClock],
) -> None:
    h, venue, clock = outage
    # An earlier run journalled the intent and stopped before the outcome; the venue is down at
    # the start (the reconciler gives up after its max_s, 2 s here, on the live clock).
    await h.journal.begin("old", "a1", "tag-old")
    venue.down = True
    assert await h.pipeline.recover() == 0
    assert "tag-old" in h.pipeline.pending
    row = h.journal.decided("old")
    assert row is not None and row.pending
    await clock.until_sleeping()

    venue.down = False
    await seconds(clock, 1)  # absent (1), a settle time after the send
    assert not corrections(h)
    await seconds(clock, 1, then_asleep=False)  # absent (2)
    fix = corrections(h)["old"]
    assert fix.status == "rejected" and fix.corrects == "unknown" and fix.tag == "tag-old"
    await eventually(lambda: not h.journal.pending(), "the row decided")
    row = h.journal.decided("old")
    assert row is not None and row.status is OutcomeStatus.REJECTED
