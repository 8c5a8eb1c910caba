"""In-flight orders, tracked BEFORE they are sent.

An order is registered under its strategy tag before the POST leaves, so a stream event that races
the HTTP reply, or an ambiguous failure, always finds its record. Finished records are kept for
``linger_s`` so late stream events (a fill after the cancel reply, a position opened by the order)
still apply. Signals reference earlier ones by id (``ref``): :meth:`by_signal` answers that.

A tag can be watched (:meth:`watch_tag`): the first stream event carrying it resolves the watch's
future with what the stream says of the order. Reconciliation watches the tag of an unknown
outcome (the stream may show the order before a lookup does), and a tag called absent is watched
for a late order (engine.execution.late).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass

from engine.model.domain import Action, OutcomeStatus
from engine.venue.events import StreamOrder, StreamPosition, VenueEvent

# What the stream said of a watched tag: (order id, position id, the venue's status; a position
# is reported "FILLED").
Sighting = tuple[str | None, str | None, str]


@dataclass(slots=True)
class SignalRecord:
    """One signal's journey. Stamps are ``time.monotonic_ns()``; 0 = stage not reached."""

    signal_id: str
    account: str
    action: Action
    tag: str | None = None
    order_id: str | None = None
    position_id: str | None = None
    instrument_id: int | None = None
    status: OutcomeStatus | None = None  # None while in flight
    # Fills, where known: lots filled so far (grows with each stream update or history row),
    # their average price, and the lots still open (of the order; for a close, reverse or
    # close-all, of the position(s) it closes). None: not known.
    filled_qty: float | None = None
    avg_price: float | None = None
    remaining_qty: float | None = None
    # The venue's final status of the record's order as the stream reported it (upper case;
    # None until final): an order accepted, then refused, is corrected from it
    # (engine.execution.pending).
    venue_final: str | None = None
    ts_ns: int = 0  # generation time (epoch ns, from the signal)
    arrived_ns: int = 0
    decoded_ns: int = 0
    validated_ns: int = 0
    gated_ns: int = 0
    on_wire_ns: int = 0
    acked_ns: int = 0
    arrived_wall_ns: int = 0  # epoch ns at arrival, to relate ts to the monotonic stamps
    finished_at: float = 0.0  # monotonic seconds, for lingering
    # Futures of signals waiting for this one (a ``ref`` to it, a duplicate delivery); created
    # only when someone waits, so the common path allocates nothing.
    waiters: list[asyncio.Future[None]] | None = None

    def wait(self) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.status is not None:
            fut.set_result(None)
        else:
            if self.waiters is None:
                self.waiters = []
            self.waiters.append(fut)
        return fut

    @property
    def stamps(self) -> tuple[int, ...]:
        return (
            self.arrived_ns,
            self.decoded_ns,
            self.validated_ns,
            self.gated_ns,
            self.on_wire_ns,
            self.acked_ns,
        )


class OrderTracker:
    """tag → record, order id → record, signal id → record. Not thread-safe: one event loop."""

    __slots__ = (
        "_by_order",
        "_by_position",
        "_by_signal",
        "_by_tag",
        "_early",
        "_finished",
        "_watched",
        "linger_s",
    )

    def __init__(self, linger_s: float = 600.0) -> None:
        self.linger_s = linger_s
        self._by_tag: dict[str, SignalRecord] = {}
        self._by_order: dict[str, SignalRecord] = {}
        self._by_position: dict[str, SignalRecord] = {}
        self._by_signal: dict[str, SignalRecord] = {}
        self._finished: OrderedDict[str, SignalRecord] = OrderedDict()
        self._watched: dict[str, asyncio.Future[Sighting]] = {}
        # The latest stream update of orders no record is bound to yet: the stream can report
        # an order's fills before the venue's reply names its id (the stream carries no tag).
        self._early: OrderedDict[str, StreamOrder] = OrderedDict()

    def track(self, record: SignalRecord) -> None:
        """Register before sending. The signal id key is the leg key (``id`` or ``id@alias``)."""
        self._by_signal[record.signal_id] = record
        if record.tag is not None:
            self._by_tag[record.tag] = record

    def track_tag(self, record: SignalRecord, tag: str) -> None:
        """Register the tag of a record tracked already (its tag derived after :meth:`track`)."""
        self._by_tag[tag] = record

    def forget(self, record: SignalRecord) -> None:
        """Drop a record never sent (withdrawn at a handover: engine.execution.handover)."""
        if self._by_signal.get(record.signal_id) is record:
            del self._by_signal[record.signal_id]
        if record.tag is not None and self._by_tag.get(record.tag) is record:
            del self._by_tag[record.tag]

    def bind_order(self, record: SignalRecord, order_id: str) -> None:
        record.order_id = order_id
        self._by_order[order_id] = record
        if self._early:
            early = self._early.pop(order_id, None)
            if early is not None:
                fill(record, early)

    def bind_position(self, record: SignalRecord, position_id: str) -> None:
        record.position_id = position_id
        self._by_position[position_id] = record

    def finish(self, record: SignalRecord, status: OutcomeStatus) -> None:
        record.status = status
        record.finished_at = time.monotonic()
        if record.waiters:
            for fut in record.waiters:
                if not fut.done():
                    fut.set_result(None)
            record.waiters = None
        self._finished[record.signal_id] = record
        self._finished.move_to_end(record.signal_id)
        self._expire(record.finished_at)

    def by_tag(self, tag: str) -> SignalRecord | None:
        return self._by_tag.get(tag)

    def by_order(self, order_id: str) -> SignalRecord | None:
        return self._by_order.get(order_id)

    def by_position(self, position_id: str) -> SignalRecord | None:
        return self._by_position.get(position_id)

    def by_signal(self, signal_id: str) -> SignalRecord | None:
        return self._by_signal.get(signal_id)

    def watch_tag(self, tag: str) -> asyncio.Future[Sighting]:
        """A future resolved by the first stream event carrying ``tag`` (an order whose outcome
        is unknown, or one the engine called absent). The watcher ends it with
        :meth:`unwatch_tag`; one watch per tag at a time."""
        fut: asyncio.Future[Sighting] = asyncio.get_running_loop().create_future()
        self._watched[tag] = fut
        return fut

    def unwatch_tag(self, tag: str, fut: asyncio.Future[Sighting]) -> None:
        if self._watched.get(tag) is fut:
            del self._watched[tag]
        if not fut.done():
            fut.cancel()

    def in_flight(self) -> list[SignalRecord]:
        return [r for r in self._by_signal.values() if r.status is None]

    def apply(self, event: VenueEvent) -> SignalRecord | None:
        """Fold a stream event into the record it belongs to (by order id, then by tag).

        Orders opened by a filled market order get their position id here, so a later
        ``close`` with ``ref`` finds the position without a REST call.
        """
        payload = event.payload
        if isinstance(payload, StreamOrder):
            order_id: str | None = payload.order_id
            tag, position_id = payload.strategy_id, payload.position_id
        elif isinstance(payload, StreamPosition):
            order_id, tag, position_id = (
                payload.open_order_id,
                payload.strategy_id,
                payload.position_id,
            )
        else:
            return None
        if tag and self._watched:
            watch = self._watched.pop(tag, None)
            if watch is not None and not watch.done():
                status = payload.status if isinstance(payload, StreamOrder) else "FILLED"
                watch.set_result((order_id, position_id, status))
        record = self._by_order.get(order_id) if order_id else None
        if record is None and tag:
            record = self._by_tag.get(tag)
            if record is not None and order_id and record.order_id is None:
                self.bind_order(record, order_id)
        if record is None:
            if isinstance(payload, StreamOrder) and order_id:
                self._early[order_id] = payload
                self._early.move_to_end(order_id)
                if len(self._early) > _EARLY_KEPT:
                    self._early.popitem(last=False)
            return None
        if position_id and record.position_id is None:
            self.bind_position(record, position_id)
        if isinstance(payload, StreamOrder) and order_id == record.order_id:
            fill(record, payload)
        return record

    def filled(self, order_id: str, filled_qty: float, avg_price: float | None,
               qty: float | None = None) -> SignalRecord | None:  # fmt: skip
        """A history row or snapshot says how much of a tracked order filled: fold it in (the
        filled quantity only grows). None when the order is not tracked."""
        record = self._by_order.get(order_id)
        if record is not None:
            grow(record, filled_qty, avg_price, qty)
        return record

    def _expire(self, now: float) -> None:
        horizon = now - self.linger_s
        while self._finished:
            key, rec = next(iter(self._finished.items()))
            if rec.finished_at > horizon:
                break
            del self._finished[key]
            self._by_signal.pop(key, None)
            if rec.tag is not None:
                self._by_tag.pop(rec.tag, None)
            if rec.order_id is not None:
                self._by_order.pop(rec.order_id, None)
            if rec.position_id is not None:
                self._by_position.pop(rec.position_id, None)


# Stream updates of not-yet-bound orders kept (the newest; orders placed elsewhere pass through).
_EARLY_KEPT = 256

# The venue's final status of an order filled in full (the stream: EXECUTED; history: Filled).
_FILLED = frozenset({"EXECUTED", "FILLED"})


def fill(record: SignalRecord, order: StreamOrder) -> None:
    """Fold what a stream update says of the record's order into its fills: a partly filled
    order carries ``filled_qty``; one reported filled in full filled all of its amount; a
    final update without a fill (an IOC's rest cancelled before any fill, a rejection) leaves
    nothing filled."""
    if order.filled_qty is not None:
        grow(record, order.filled_qty, order.avg_price, order.amount)
    elif order.status in _FILLED:
        grow(record, order.amount, order.price, order.amount)
    elif record.filled_qty is None and order.status in _NOTHING_FILLED:
        grow(record, 0.0, None, order.amount)
    if order.status in _FILLED or order.status in _NOTHING_FILLED:
        record.remaining_qty = 0.0  # final: what did not fill (an IOC's rest) is cancelled
        record.venue_final = order.status


_NOTHING_FILLED = frozenset({"CANCELLED", "REJECTED", "REFUSED", "EXPIRED", "REMOVED", "UNPLACED"})


def grow(record: SignalRecord, filled_qty: float, avg_price: float | None,
         qty: float | None) -> None:  # fmt: skip
    """Set the record's fills from a report of ``filled_qty`` lots of an order of ``qty``: the
    filled quantity never shrinks (reports can arrive out of order)."""
    if record.filled_qty is not None and filled_qty < record.filled_qty - 1e-9:
        return
    record.filled_qty = filled_qty
    if avg_price is not None:
        record.avg_price = avg_price
    if qty is not None:
        record.remaining_qty = max(0.0, round(qty - filled_qty, 8))
