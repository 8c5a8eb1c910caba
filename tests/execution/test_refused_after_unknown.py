"""An unknown outcome that reconciliation finds REFUSED at the venue is a rejection, not an
acceptance: the venue holds the order tagged for the signal, but in history as Rejected."""

from __future__ import annotations

from pathlib import Path

from engine.model.domain import Order, OrderRequest
from engine.model.errors import OutcomeUnknown
from engine.venue.paper import PaperVenue
from engine.venue.protocol import PlaceResult
from tests.execution.conftest import build


class RefusingAfterTheFactVenue(PaperVenue):
    """Fault injection on a real venue (no real TradeLocker can be made to do this here): the
    order POST reaches the venue, which records it as Rejected in history (as TradeLocker's
    history statuses allow), and the reply is lost, so the engine only sees an unknown outcome."""

    async def place_order(self, request: OrderRequest) -> PlaceResult:
        self._book(request.account).history.append(
            Order(
                order_id="9000000000000000001",
                instrument_id=request.instrument.tradable_instrument_id,
                side=request.side,
                type=request.type.wire,
                qty=request.qty,
                status="Rejected",
                is_open=False,
                created_ms=self._now_ms(),
                strategy_id=request.strategy_tag,
            )
        )
        raise OutcomeUnknown("reply lost", account=request.account, strategy_tag="x")


async def test_an_unknown_order_found_rejected_in_history_is_reported_rejected(
    tmp_path: Path,
) -> None:
    h = await build(tmp_path, venue=RefusingAfterTheFactVenue(("a1", "a2")))
    try:
        out = await h.run(
            id="u1",
            account="a1",
            action="place",
            symbol="EURUSD",
            side="buy",
            type="market",
            qty=0.1,
        )
        assert out.status == "rejected", out
        assert "status Rejected" in out.reason
        assert out.order_id == "9000000000000000001"
    finally:
        await h.pipeline.close()
        await h.book.close()
