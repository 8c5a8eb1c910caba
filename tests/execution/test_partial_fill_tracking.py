"""The tracker follows a partly filled order: the sandbox's own OpenOrder messages (built by its
``sandbox.messages.open_order``, the Streams API vocabulary) decoded by the engine's stream
decoder and folded into the order's record, and the live state's ``order_updates`` carrying the
fills. No venue runs here: these are the exact wire messages, fed in order."""

from __future__ import annotations

from typing import Any

from engine.execution.publish import STATUS_NAME
from engine.execution.tracker import OrderTracker, SignalRecord
from engine.model.domain import Action, OutcomeStatus
from engine.model.events import Event, OrderUpdate, OutcomeEvent, Topic, decode, encode
from engine.state.live import LiveState
from engine.tradelocker.stream import decode_message
from engine.venue.events import StreamOrder, VenueEvent
from sandbox.instruments import default_instruments
from sandbox.messages import open_order
from sandbox.models import SimOrder

SPEC = next(s for s in default_instruments() if s.name == "EURUSD")


def sim_order(qty: float, validity: str = "GTC") -> SimOrder:
    return SimOrder(
        id="9001",
        account_id="700001",
        tid=SPEC.tradable_instrument_id,
        route_id=1,
        qty=qty,
        side="buy",
        type="limit",
        validity=validity,
        created_ms=0,
        last_modified_ms=0,
        price=1.1,
    )


def wire(order: SimOrder, status: str, filled: float, avg: float | None) -> StreamOrder:
    order.filled_qty, order.avg_price = filled, avg
    msg = decode_message(open_order(SPEC, order, status))
    assert isinstance(msg, StreamOrder)
    return msg


def tracked() -> tuple[OrderTracker, SignalRecord]:
    tracker = OrderTracker()
    rec = SignalRecord("s1", "a1", Action.PLACE, tag="t1")
    tracker.track(rec)
    tracker.bind_order(rec, "9001")
    return tracker, rec


def test_filled_qty_grows_with_each_update_and_the_full_fill_ends_it() -> None:
    tracker, rec = tracked()
    order = sim_order(1.0)
    tracker.apply(VenueEvent("a1", "order", wire(order, "PENDING", 0.0, None)))
    assert rec.filled_qty is None  # nothing said yet
    tracker.apply(VenueEvent("a1", "order", wire(order, "PENDING", 0.3, 1.1)))
    assert (rec.filled_qty, rec.avg_price, rec.remaining_qty) == (0.3, 1.1, 0.7)
    tracker.apply(VenueEvent("a1", "order", wire(order, "PENDING", 0.6, 1.09995)))
    assert (rec.filled_qty, rec.remaining_qty) == (0.6, 0.4)
    # An older update arriving late does not shrink what is known.
    tracker.apply(VenueEvent("a1", "order", wire(order, "PENDING", 0.3, 1.1)))
    assert rec.filled_qty == 0.6
    tracker.apply(VenueEvent("a1", "order", wire(order, "EXECUTED", 1.0, 1.09997)))
    assert (rec.filled_qty, rec.remaining_qty) == (1.0, 0.0)


def test_an_ioc_remainder_cancelled_is_final_with_the_filled_part() -> None:
    tracker, rec = tracked()
    order = sim_order(1.0, "IOC")
    tracker.apply(VenueEvent("a1", "order", wire(order, "CANCELLED", 0.4, 1.1)))
    assert (rec.filled_qty, rec.avg_price, rec.remaining_qty) == (0.4, 1.1, 0.0)


def test_an_order_cancelled_unfilled_reports_nothing_filled() -> None:
    tracker, rec = tracked()
    tracker.apply(VenueEvent("a1", "order", wire(sim_order(1.0, "IOC"), "CANCELLED", 0.0, None)))
    assert (rec.filled_qty, rec.remaining_qty) == (0.0, 0.0)


def test_the_outcome_event_carries_the_fills() -> None:
    _, rec = tracked()
    rec.filled_qty, rec.avg_price, rec.remaining_qty = 0.4, 1.1, 0.0
    ev = OutcomeEvent(
        id="s1",
        status=STATUS_NAME[OutcomeStatus.ACCEPTED],
        filled_qty=rec.filled_qty,
        avg_price=rec.avg_price,
        remaining_qty=rec.remaining_qty,
    )
    back = decode(Topic.OUTCOMES, encode(ev))
    assert isinstance(back, OutcomeEvent)
    assert (back.filled_qty, back.avg_price, back.remaining_qty) == (0.4, 1.1, 0.0)


class _Bus:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def publish(self, event: Event, key: str | None = None) -> None:
        self.events.append(event)

    async def flush(self) -> None: ...
    async def close(self) -> None: ...


class _Connection:
    """Stands in for the stream connection only (accounts followed, listener registered): the
    messages are handed to the live state directly, in wire order; tests/stream runs the real
    connection against the sandbox."""

    accounts = {"a1": "700001"}

    def listen(self, listener: object) -> None:
        pass


async def test_order_updates_carry_the_fills_of_a_partly_filled_order() -> None:
    bus = _Bus()
    stream: Any = _Connection()
    live = LiveState(stream, bus)
    order = sim_order(1.0)
    live.on_message(wire(order, "PENDING", 0.0, None))
    live.on_message(wire(order, "PENDING", 0.5, 1.1))
    live.on_message(wire(order, "EXECUTED", 1.0, 1.1))
    updates = [e for e in bus.events if isinstance(e, OrderUpdate)]
    assert [(u.event, u.filled_qty, u.remaining_qty) for u in updates] == [
        ("new", None, 1.0),
        ("changed", 0.5, 0.5),
        ("executed", 1.0, 0.0),
    ]


def test_fills_reported_before_the_reply_names_the_order_are_kept_for_it() -> None:
    # The stream carries no tag: an update that beats the venue's reply waits for the order id.
    tracker = OrderTracker()
    rec = SignalRecord("s1", "a1", Action.PLACE, tag="t1")
    tracker.track(rec)
    order = sim_order(1.0, "IOC")
    assert tracker.apply(VenueEvent("a1", "order", wire(order, "CANCELLED", 0.4, 1.1))) is None
    assert rec.filled_qty is None
    tracker.bind_order(rec, "9001")
    assert (rec.filled_qty, rec.avg_price, rec.remaining_qty) == (0.4, 1.1, 0.0)
