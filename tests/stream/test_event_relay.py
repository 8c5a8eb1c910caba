"""The relay from a login's stream to the venue's events(): typed payloads under the engine's
alias (pure code: it is fed the decoded messages a LoginStream would hand it)."""

from __future__ import annotations

from engine.model.domain import Side
from engine.tradelocker.stream_session import VenueEventRelay
from engine.venue.events import (
    StreamConnectionStatus,
    StreamOrder,
    StreamPosition,
    StreamPositionClosed,
    StreamSyncEnd,
    VenueEvent,
)


def test_messages_become_typed_events_named_by_alias_even_a_close_without_an_account() -> None:
    got: list[VenueEvent] = []
    relay = VenueEventRelay({"acc1": "700001", "acc2": "700002"}, got.append)
    position = StreamPosition(
        "700002", "P1", "EURUSD", Side.BUY, 0.01, 100_000.0, 1_000.0, 1.1, 0, open_order_id="O1"
    )
    order = StreamOrder("700001", "O2", "EURUSD", Side.SELL, 0.02, 100_000.0, 1.2, "PENDING")
    relay.subscribing("700002")
    relay.on_message(position)
    relay.on_message(order)
    relay.on_message(StreamPositionClosed("P1", None, 1.2, 5))  # the venue may omit the account
    relay.on_message(StreamSyncEnd("700001"))
    relay.on_message(StreamConnectionStatus("error", "bad key"))
    relay.disconnected()
    assert [(e.account, e.kind) for e in got] == [
        ("acc2", "position"),
        ("acc1", "order"),
        ("acc2", "position_closed"),
        ("acc1", "sync_end"),
        ("", "connection"),
    ]
    assert got[0].payload is position and got[1].payload is order
