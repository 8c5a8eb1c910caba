"""Start-up recovery of signals left in flight, and the small parts: tags, reconciliation's
settle rule, the local source, allocation arithmetic."""

from __future__ import annotations

import asyncio
from pathlib import Path

from engine.execution.accounts import scale_qty
from engine.execution.reconcile import Reconciler, Resolution, Verdict
from engine.execution.tags import TAG_LENGTH, TagMint
from engine.io.sources.local import LocalSignalSource
from engine.model.clock import ManualClock
from engine.model.domain import OrderRequest, OrderType, OutcomeStatus, Side, Validity
from engine.state.journal import Journal
from engine.venue.paper import PaperVenue
from tests.execution.conftest import build
from tests.fixtures.clock import drive


async def test_pending_rows_from_a_crash_are_reconciled_before_new_signals(
    tmp_path: Path,
) -> None:
    venue = PaperVenue(["a1", "a2"])
    journal = Journal(tmp_path / "journal.sqlite", synchronous="NORMAL")
    # The last run began two orders and died: one reached the venue, one never left.
    await journal.begin("sent", "a1", "tagsent")
    await journal.begin("lost", "a1", "taglost")
    inst = (await venue.instruments("a1"))[0]
    await venue.place_order(
        OrderRequest("a1", inst, Side.BUY, OrderType.MARKET, 0.1, Validity.IOC, "tagsent")
    )
    await journal.close()

    h = await build(tmp_path, venue=venue)
    assert await h.pipeline.recover() == 2
    sent = h.journal.decided("sent")
    lost = h.journal.decided("lost")
    assert sent is not None and sent.status is OutcomeStatus.ACCEPTED
    assert lost is not None and lost.status is OutcomeStatus.REJECTED
    assert "not placed" in (lost.reason or "")
    # A re-delivery of either is answered from the journal, never executed.
    again = await h.run(
        id="sent", account="a1", action="place", symbol="EURUSD", type="market", side="buy", qty=0.1
    )
    assert again.replayed and len(await venue.positions("a1")) == 1
    await h.pipeline.close()
    await h.journal.close()


async def test_absent_is_only_believed_after_the_settle_time() -> None:
    venue = PaperVenue(["a1"])
    clock = ManualClock()
    rec = Reconciler(venue, settle_s=0.3, max_s=5.0, first_delay_s=0.01, clock=clock)
    sent_at = clock.monotonic()
    res = await drive(clock, rec.resolve("a1", "nothing-here", sent_at))
    assert res.verdict is Verdict.ABSENT
    # Two complete reads without the tag, the later one after the settle time.
    assert res.attempts >= 2
    assert res.waited_s >= 0.3


async def test_an_order_that_appears_late_is_found_not_declared_absent() -> None:
    venue = PaperVenue(["a1"])
    inst = (await venue.instruments("a1"))[0]
    clock = ManualClock()
    rec = Reconciler(venue, settle_s=0.3, max_s=5.0, first_delay_s=0.01, clock=clock)

    async def place_late() -> None:
        await clock.sleep(0.1)
        await venue.place_order(
            OrderRequest("a1", inst, Side.SELL, OrderType.MARKET, 0.1, Validity.IOC, "late")
        )

    async def both() -> tuple[None, Resolution]:
        return await asyncio.gather(place_late(), rec.resolve("a1", "late", clock.monotonic()))

    _, res = await drive(clock, both())
    assert res.verdict is Verdict.FOUND and res.position_id


def test_tags_are_short_unique_per_signal_and_the_same_in_every_run() -> None:
    first, second = TagMint(), TagMint()
    tags = {first.mint(f"s{i}", 1_700_000_000_000_000_000) for i in range(1000)}
    assert len(tags) == 1000
    assert all(len(t) == TAG_LENGTH <= 31 for t in tags)
    # Another run (or another engine of the group) derives the same tag for the same signal...
    assert second.mint("s1", 1_700_000_000_000_000_000) in tags
    # ... but a reused id with another ts, another leg, or a resubmission gets its own.
    assert first.mint("s1", 1_700_000_000_000_000_001) not in tags
    assert first.mint("s1@a2", 1_700_000_000_000_000_000) not in tags
    assert first.mint("s1", 1_700_000_000_000_000_000, attempt=1) not in tags


def test_allocation_rounds_down_to_the_lot_step() -> None:
    assert scale_qty(0.3, 2 * 0.5, 0.01) == 0.3
    assert scale_qty(0.1, 1 / 3, 0.01) == 0.03
    assert scale_qty(0.01, 0.5, 0.01) == 0.0


async def test_local_source_skips_blank_and_comment_lines(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_bytes(b'# header\n\n{"id":"a"}\n  {"id":"b"}  \n')
    got = [d.payload async for d in LocalSignalSource(path).deliveries()]
    assert got == [b'{"id":"a"}', b'{"id":"b"}']


async def test_a_stop_limit_held_before_a_crash_is_recovered_as_accepted_not_absent(
    tmp_path: Path,
) -> None:
    venue = PaperVenue(["a1", "a2"])
    h = await build(tmp_path, venue=venue)
    inst = (await venue.instruments("a1"))[0]
    # The stop is far above the market: the book holds the order, the venue has nothing yet.
    request = OrderRequest(
        "a1", inst, Side.BUY, OrderType.STOP_LIMIT, 0.1, Validity.GTC, "tagheld",
        price=2.0, stop_price=1.9,
    )  # fmt: skip
    await h.journal.begin("held", "a1", "tagheld")
    emulated = await h.book.hold("held", request)
    # The engine dies here: the hold is durable, the signal's outcome was never recorded.
    await h.book.close()
    await h.pipeline.close()
    await h.journal.close()

    again = await build(tmp_path, venue=venue)
    assert await again.pipeline.recover() == 1
    rec = again.journal.decided("held")
    assert rec is not None and rec.status is OutcomeStatus.ACCEPTED, rec
    assert rec.order_id == emulated and "not placed" not in (rec.reason or "")
    assert again.book.get(emulated) is not None  # still held, and watched again
    assert await venue.orders("a1") == []
    await again.pipeline.close()
    await again.book.close()
    await again.journal.close()
