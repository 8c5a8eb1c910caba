"""A late order seen on the stream: recognised by its tag, corrected exactly once.

The venue is the in-process PaperVenue with one condition added that neither it nor the sandbox
produces on demand (so a small subclass here, not a mock of the engine): the first placement gets
no reply and the venue keeps it, to finish it later; and its REST reads lag the stream (the tag is
hidden from ``find_by_tag``), so only the stream can reveal the late order. The venue's stream
events reach the tracker the way the daemon feeds them (``OrderTracker.apply``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Collection
from pathlib import Path

import pytest

from engine.model.domain import OrderRequest, OutcomeStatus
from engine.model.errors import OutcomeUnknown
from engine.model.events import OutcomeCorrection
from engine.venue.paper import PaperVenue
from engine.venue.protocol import PlaceResult, TagMatches
from tests.execution.conftest import Harness, build
from tests.fixtures.waiting import eventually


class HangingUpVenue(PaperVenue):
    """The first placement: no reply, kept for :meth:`finish_late`; REST blind to its tag."""

    def __init__(self) -> None:
        super().__init__(("a1", "a2"))
        self.kept: OrderRequest | None = None
        self.hidden: set[str] = set()

    async def place_order(self, request: OrderRequest) -> PlaceResult:
        if self.kept is None:
            self.kept = request
            self.hidden.add(request.strategy_tag)
            raise OutcomeUnknown(
                "no reply within 2 s", account=request.account, route="PLACE_ORDER"
            )
        return await super().place_order(request)

    async def finish_late(self) -> PlaceResult:
        assert self.kept is not None
        return await PaperVenue.place_order(self, self.kept)

    async def find_by_tags(
        self, account: str, tags: Collection[str] | None = None, since_ms: int | None = None
    ) -> dict[str, TagMatches]:
        found = await super().find_by_tags(account, tags, since_ms)
        return {tag: m for tag, m in found.items() if tag not in self.hidden}


@pytest.fixture
async def late(tmp_path: Path) -> AsyncIterator[tuple[Harness, HangingUpVenue]]:
    async with fed(tmp_path) as both:
        yield both


@contextlib.asynccontextmanager
async def fed(
    tmp_path: Path, settle_s: float = 0.05
) -> AsyncIterator[tuple[Harness, HangingUpVenue]]:
    venue = HangingUpVenue()
    h = await build(tmp_path, venue=venue, settle_s=settle_s)

    async def feed() -> None:
        async for event in venue.events():
            h.pipeline.tracker.apply(event)

    feeding = asyncio.create_task(feed())
    try:
        yield h, venue
    finally:
        await h.pipeline.close()
        feeding.cancel()
        await asyncio.gather(feeding, return_exceptions=True)
        await h.book.close()
        await h.journal.close()


def corrections(h: Harness) -> list[OutcomeCorrection]:
    return [o for o in h.outcomes if isinstance(o, OutcomeCorrection)]


async def test_a_late_order_on_the_stream_is_corrected_once(
    late: tuple[Harness, HangingUpVenue],
) -> None:
    h, venue = late
    first = await h.run(
        id="x", account="a1", action="place", symbol="EURUSD", type="limit", side="buy",
        qty=0.01, price=0.9,
    )  # fmt: skip
    assert first.status == "rejected" and "not placed" in (first.reason or "")
    assert h.pipeline.late_watches, "the tag is watched after it was called absent"

    placed = await venue.finish_late()
    await eventually(lambda: corrections(h), "a correction from the stream")
    (fix,) = corrections(h)
    assert fix.id == "x" and fix.tag == first.tag
    assert fix.status == "accepted" and fix.corrects == "rejected"
    assert fix.order_id == placed.order_id and fix.late_order == "reported"
    assert "seen on the stream" in (fix.reason or "")
    record = h.pipeline.tracker.by_signal("x")
    assert record is not None and record.status is OutcomeStatus.ACCEPTED
    assert record.order_id == placed.order_id
    journalled = h.journal.decided("x")
    assert journalled is not None and journalled.status is OutcomeStatus.ACCEPTED

    # More stream events of the same order (it fills, a position opens) correct nothing again.
    venue.set_quote(eurusd(h), bid=0.8999, ask=0.9)
    await eventually(lambda: venue._book("a1").positions, "the late order filled")
    await eventually(lambda: h.pipeline.tracker.by_position(fix_position(h)), "the fill applied")
    assert len(corrections(h)) == 1
    assert not h.pipeline.late_watches, "the watch ended with its correction"


async def test_cancel_or_close_cancels_a_late_working_order_seen_on_the_stream(
    late: tuple[Harness, HangingUpVenue],
) -> None:
    h, venue = late
    h.pipeline.late_order = "cancel_or_close"
    first = await h.run(
        id="y", account="a1", action="place", symbol="EURUSD", type="limit", side="buy",
        qty=0.01, price=0.9,
    )  # fmt: skip
    assert first.status == "rejected"
    placed = await venue.finish_late()
    await eventually(lambda: corrections(h), "a correction from the stream")
    (fix,) = corrections(h)
    assert fix.late_order == "cancelled", fix.reason
    assert placed.order_id not in {o.order_id for o in await venue.orders("a1")}
    history = {o.order_id: o.status for o in await venue.orders_history("a1")}
    assert history[placed.order_id] == "Cancelled"


def eurusd(h: Harness) -> int:
    return h.pipeline.accounts["a1"].instruments_by_name["EURUSD"].tradable_instrument_id


def fix_position(h: Harness) -> str:
    record = h.pipeline.tracker.by_signal("x")
    return (record.position_id if record is not None else None) or "none yet"


async def test_an_unknown_outcome_is_resolved_by_the_stream_while_lookups_see_nothing(
    tmp_path: Path,
) -> None:
    # REST is blind to the tag and the settle time is long: lookups alone would end "unknown"
    # when the reconciler gives up (max_s 2 s here), never "accepted".
    async with fed(tmp_path, settle_s=30.0) as (h, venue):
        h.send(
            id="z", account="a1", action="place", symbol="EURUSD", type="limit", side="buy",
            qty=0.01, price=0.9,
        )  # fmt: skip
        await eventually(lambda: venue.kept is not None, "the placement went unanswered")
        placed = await venue.finish_late()
        await h.pipeline.drain()
        out = h.outcome("z")
        assert out.status == "accepted" and out.resolved_from_unknown, out.reason
        assert out.order_id == placed.order_id
        assert corrections(h) == [] and not h.pipeline.late_watches
