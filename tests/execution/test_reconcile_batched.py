"""Reconciliation lookups on one account share their reads (engine/execution/reconcile.py;
docs/kafka.md, "Catch-up"): a backlog of lookups with one settle time (signals taken over from
another engine) is decided after a couple of rounds, each tag still found or proven absent on the
evidence its own reads would have needed. Driven by a ManualClock on the in-process paper venue
(its find_by_tags counted: how many rounds the reconciler reads is the subject)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection

from engine.execution.reconcile import Reconciler, Resolution, Verdict
from engine.model.clock import ManualClock
from engine.model.domain import OrderRequest, OrderType, Side, Validity
from engine.venue.paper import PaperVenue
from engine.venue.protocol import TagMatches

WALL_S = time.time()  # the paper venue stamps orders with the real wall clock


class CountingVenue(PaperVenue):
    def __init__(self) -> None:
        super().__init__(["a1", "a2"])
        self.rounds: list[tuple[str, int | None]] = []

    async def find_by_tags(
        self, account: str, tags: Collection[str] | None = None, since_ms: int | None = None
    ) -> dict[str, TagMatches]:
        self.rounds.append((account, since_ms))
        return await super().find_by_tags(account, tags, since_ms)

    async def place(self, account: str, tag: str) -> str:
        instrument = await self.instrument(account, "EURUSD")
        placed = await self.place_order(
            OrderRequest(
                account=account,
                instrument=instrument,
                side=Side.BUY,
                type=OrderType.MARKET,
                qty=instrument.min_lot,
                validity=Validity.required_for(OrderType.MARKET),
                strategy_tag=tag,
            )
        )
        return placed.order_id


async def drive(clock: ManualClock, task: asyncio.Future[list[Resolution]]) -> list[Resolution]:
    while not task.done():
        if clock.sleepers:
            await clock.advance(0.25)
        else:
            await asyncio.sleep(0)
    return await task


async def test_a_backlog_in_one_lane_is_decided_on_two_rounds_of_reads() -> None:
    """Forty signals taken over at one moment, looked up one after another (as an account's lane
    does): the ones the earlier owner placed are found, the others proven absent, on the rounds
    one of them alone needs, not two or more rounds each."""
    clock = ManualClock(start_s=1_000.0, wall_offset_s=WALL_S)
    venue = CountingVenue()
    rec = Reconciler(venue, settle_s=3.0, max_s=30.0, clock=clock)
    placed = {f"t{i}": await venue.place("a1", f"t{i}") for i in range(0, 40, 3)}
    taken_over = clock.monotonic()

    async def lane() -> list[Resolution]:
        return [await rec.resolve("a1", f"t{i}", taken_over) for i in range(40)]

    results = await drive(clock, asyncio.ensure_future(lane()))
    for i, res in enumerate(results):
        if f"t{i}" in placed:
            assert res.verdict is Verdict.FOUND, (i, res)
            assert res.order_id == placed[f"t{i}"]
        else:
            assert res.verdict is Verdict.ABSENT, (i, res)
    # As many rounds as one absent tag alone needs (reads before the settle time, then two of
    # the whole history), for all forty.
    alone = CountingVenue()
    single = Reconciler(alone, settle_s=3.0, max_s=30.0, clock=clock)
    sent = clock.monotonic()
    [res] = await drive(clock, asyncio.ensure_future(_one(single, "a1", "t1", sent)))
    assert res.verdict is Verdict.ABSENT
    assert len(venue.rounds) == len(alone.rounds), (venue.rounds, alone.rounds)
    assert [since for _, since in venue.rounds][-2:] == [None, None]  # absence: whole history


async def test_concurrent_lookups_wait_for_one_round_instead_of_reading_their_own() -> None:
    clock = ManualClock(start_s=1_000.0, wall_offset_s=WALL_S)
    venue = CountingVenue()
    rec = Reconciler(venue, settle_s=1.0, max_s=30.0, clock=clock)
    await venue.place("a1", "here")
    sent = clock.monotonic()
    lookups = asyncio.gather(*(rec.resolve("a1", t, sent) for t in ("here", "x", "y", "z")))
    found, *absent = await drive(clock, lookups)
    assert found.verdict is Verdict.FOUND
    assert all(r.verdict is Verdict.ABSENT for r in absent)
    assert len(venue.rounds) <= 3, venue.rounds


async def test_rounds_read_before_a_later_send_never_prove_its_order_absent() -> None:
    """Rounds kept from an earlier lookup were read before this order was sent: they cannot
    prove it absent, and the order placed after them is found by a read of its own."""
    clock = ManualClock(start_s=1_000.0, wall_offset_s=WALL_S)
    venue = CountingVenue()
    rec = Reconciler(venue, settle_s=1.0, max_s=30.0, clock=clock)
    first = await drive(clock, asyncio.ensure_future(_one(rec, "a1", "early", None)))
    assert first[0].verdict is Verdict.ABSENT
    kept = len(venue.rounds)
    await clock.advance(5.0)
    sent = clock.monotonic()
    order_id = await venue.place("a1", "late")
    second = await drive(clock, asyncio.ensure_future(_one(rec, "a1", "late", sent)))
    assert second[0].verdict is Verdict.FOUND
    assert second[0].order_id == order_id
    assert len(venue.rounds) > kept


async def test_a_lookup_without_a_send_time_wants_a_round_read_after_it_began() -> None:
    """The late-order watch asks without a send time: the order as it is now. A round read
    before it began is not its evidence, not even to find the tag."""
    clock = ManualClock(start_s=1_000.0, wall_offset_s=WALL_S)
    venue = CountingVenue()
    rec = Reconciler(venue, settle_s=0.5, max_s=30.0, clock=clock)
    await venue.place("a1", "seen")
    await drive(clock, asyncio.ensure_future(_one(rec, "a1", "seen", None)))
    before = len(venue.rounds)
    await clock.advance(1.0)
    await drive(clock, asyncio.ensure_future(_one(rec, "a1", "seen", None)))
    assert len(venue.rounds) == before + 1


async def test_accounts_keep_their_own_rounds() -> None:
    clock = ManualClock(start_s=1_000.0, wall_offset_s=WALL_S)
    venue = CountingVenue()
    rec = Reconciler(venue, settle_s=0.0, max_s=30.0, clock=clock)
    await venue.place("a2", "only-on-a2")
    sent = clock.monotonic()
    a1 = await drive(clock, asyncio.ensure_future(_one(rec, "a1", "only-on-a2", sent)))
    a2 = await drive(clock, asyncio.ensure_future(_one(rec, "a2", "only-on-a2", sent)))
    assert a1[0].verdict is Verdict.ABSENT
    assert a2[0].verdict is Verdict.FOUND
    assert {account for account, _ in venue.rounds} == {"a1", "a2"}


async def _one(rec: Reconciler, account: str, tag: str, sent: float | None) -> list[Resolution]:
    return [await rec.resolve(account, tag, sent)]
