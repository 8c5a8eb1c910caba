"""A lane's bulk action (close_all / cancel_all) waits for every send before it, including a
send started inside ``submit`` itself (the eager start of an idle lane)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from engine.model.domain import OrderRequest
from engine.venue.paper import PaperVenue
from engine.venue.protocol import PlaceResult
from tests.execution.conftest import build


class _HeldPaperVenue(PaperVenue):
    """The paper venue with order entry held until released. Not a mock: the real paper venue
    does the work; the hold only keeps the order in flight, as a venue's round trip would (the
    paper venue otherwise answers before the next signal can arrive)."""

    def __init__(self, accounts: tuple[str, ...]) -> None:
        super().__init__(accounts)
        self.release = asyncio.Event()

    async def place_order(self, request: OrderRequest) -> PlaceResult:
        await self.release.wait()
        return await super().place_order(request)


async def test_close_all_waits_for_an_order_sent_from_submit_before_closing(
    tmp_path: Path,
) -> None:
    venue = _HeldPaperVenue(("a1", "a2"))
    h = await build(tmp_path, venue=venue)
    try:
        market = {"account": "a1", "action": "place", "symbol": "EURUSD", "type": "market"}
        h.send(id="p1", side="buy", qty=0.1, **market)
        # The idle lane ran p1 inside submit up to the venue call: its intent is journalled.
        assert h.journal.decided("p1") is not None
        h.send(id="x1", account="a1", action="close_all")
        for _ in range(5):
            await asyncio.sleep(0)
        assert h.outcomes == []  # close_all is held behind the order still in flight
        venue.release.set()
        await h.pipeline.drain()
        assert [(o.id, o.status) for o in h.outcomes] == [
            ("p1", "accepted"),
            ("x1", "accepted"),
        ]
        assert await venue.positions("a1") == []  # the order's position was closed too
    finally:
        await h.pipeline.close()
        await h.book.close()
        await h.journal.close()
