"""The market of :class:`engine.venue.paper.PaperVenue`: its accounts' books and the matching
(market orders at the touch, limit and stop orders when the price crosses, at most
``liquidity`` lots per execution, SL/TP legs, positions opened, grown, reduced and closed with
their realised P&L), every change reported as a typed stream event. ``paper.py`` holds the
``Venue`` protocol's surface on top of it."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterable

from engine.model.domain import Instrument, Order, Position, ProtectionType, Side
from engine.model.errors import ConfigError, OrderRejected
from engine.venue.events import StreamMessage, StreamPositionClosed, VenueEvent, event_kind
from engine.venue.paper_book import Book, Leg, default_instruments, order_event, position_event

__all__ = ["EPS", "PaperMarket"]

EPS = 1e-9


class PaperMarket:
    """The books of ``accounts`` (each starting with ``balance``), the instruments and the
    quotes ((bid, ask) per instrument id), and the matching that moves them."""

    def __init__(
        self,
        accounts: Iterable[str],
        *,
        instruments: Iterable[Instrument] | None,
        quotes: dict[int, tuple[float, float]] | None,
        balance: float,
        liquidity: float | None,
    ) -> None:
        self._liquidity = liquidity
        self._books = {alias: Book(balance) for alias in accounts}
        if not self._books:
            raise ConfigError("PaperVenue needs at least one account alias")
        self._instruments = {
            i.tradable_instrument_id: i for i in instruments or default_instruments()
        }
        self._quotes: dict[int, tuple[float, float]] = dict(quotes or {})
        for tid, instrument in self._instruments.items():
            self._quotes.setdefault(
                tid, (1.10000, 1.10010) if instrument.type == "FOREX" else (60_000.0, 60_010.0)
            )
        self._ids = itertools.count(7_277_816_997_907_673_000)
        self._events: asyncio.Queue[VenueEvent] = asyncio.Queue(maxsize=100_000)

    def _book(self, account: str) -> Book:
        book = self._books.get(account)
        if book is None:
            raise ConfigError(f"unknown account alias {account!r}; known: {sorted(self._books)}")
        return book

    def _new_id(self) -> str:
        return str(next(self._ids))

    def _now_ms(self) -> int:
        return int(time.time() * 1000)

    def _check_qty(self, account: str, instrument: Instrument, qty: float) -> None:
        steps = qty / instrument.lot_step
        if qty < instrument.min_lot - EPS or qty > instrument.max_lot + EPS:
            raise OrderRejected(
                f"qty {qty} is outside [{instrument.min_lot}, {instrument.max_lot}] lots",
                "Invalid quantity",
                account=account,
                status=200,
            )
        if abs(steps - round(steps)) > 1e-6:
            raise OrderRejected(
                f"qty {qty} is not a multiple of the lot step {instrument.lot_step}",
                "Invalid lot step",
                account=account,
                status=200,
            )

    def _crossed(self, leg: Leg) -> float | None:
        """The fill price if the market crosses this working order now, else None."""
        order = leg.order
        bid, ask = self._quotes[order.instrument_id]
        touch = ask if order.side is Side.BUY else bid
        if order.type == "market":
            return touch
        if order.type == "limit" and order.price is not None:
            ok = touch <= order.price if order.side is Side.BUY else touch >= order.price
            return touch if ok else None
        if order.type == "stop" and order.stop_price is not None:
            ok = touch >= order.stop_price if order.side is Side.BUY else touch <= order.stop_price
            return touch if ok else None
        return None

    def _maybe_fire(self, account: str, book: Book, leg: Leg) -> None:
        price = self._crossed(leg)
        if price is None:
            return
        order = leg.order
        if leg.role == "close" and order.position_id not in book.positions:
            book.working.pop(order.order_id, None)  # its position is gone: nothing left to do
            self._finish(account, book, order, "Cancelled")
            return
        qty = self._executable(round(order.qty - order.filled_qty, 8))
        filled = round(order.filled_qty + qty, 8)
        order.avg_price = (
            price
            if order.avg_price is None or not order.filled_qty
            else (order.avg_price * order.filled_qty + price * qty) / filled
        )
        order.filled_qty = filled
        order.last_modified_ms = self._now_ms()
        done = filled >= order.qty - EPS
        if leg.role == "entry":
            grown = book.positions.get(order.position_id or "")
            if grown is None:
                self._open_position(account, book, order, price, leg.trail, qty)
            else:
                self._grow(account, book, grown, qty, price)
        elif order.position_id in book.positions:
            self._reduce(account, book, book.positions[order.position_id], qty, price)
        if done or order.validity == "IOC":
            book.working.pop(order.order_id, None)
            order.status = "Filled" if done else "Cancelled"  # an IOC's rest: cancelled
            order.is_open = False
            book.history.append(order)
        self._order_changed(account, order)

    def _executable(self, qty: float) -> float:
        """What one execution of ``qty`` lots fills (all of it, or the venue's liquidity)."""
        if self._liquidity is None or qty <= self._liquidity + EPS:
            return qty
        return self._liquidity

    def _grow(self, account: str, book: Book, position: Position, qty: float, price: float) -> None:
        """Another part of the order that opened ``position`` filled: the position grows."""
        total = round(position.qty + qty, 8)
        position.avg_price = (position.avg_price * position.qty + price * qty) / total
        position.qty = total
        self._position_changed(account, book, position)

    def _open_position(
        self,
        account: str,
        book: Book,
        order: Order,
        price: float,
        trail: float | None,
        qty: float | None = None,
    ) -> None:
        position = Position(
            position_id=self._new_id(),
            instrument_id=order.instrument_id,
            side=order.side,
            qty=order.qty if qty is None else qty,
            avg_price=price,
            open_ms=self._now_ms(),
            strategy_id=order.strategy_id,
        )
        order.position_id = position.position_id
        book.positions[position.position_id] = position
        book.opened_by[position.position_id] = order.order_id
        self._position_changed(account, book, position)
        sl_type = ProtectionType.parse(order.stop_loss_type) if order.stop_loss_type else None
        tp_type = ProtectionType.parse(order.take_profit_type) if order.take_profit_type else None
        self._set_protection(
            account, book, position, order.stop_loss, sl_type, trail, order.take_profit, tp_type
        )

    def _reduce(
        self, account: str, book: Book, position: Position, qty: float, price: float
    ) -> None:
        qty = min(qty, position.qty)
        sign = 1.0 if position.side is Side.BUY else -1.0
        instrument = self._instruments[position.instrument_id]
        book.realized += sign * (price - position.avg_price) * qty * instrument.lot_size
        position.qty = round(position.qty - qty, 8)
        if position.qty <= EPS:
            del book.positions[position.position_id]
            self._emit(
                account,
                StreamPositionClosed(position.position_id, account, price, self._now_ms()),
            )
            for leg_id in (position.stop_loss_id, position.take_profit_id):
                leg = book.working.pop(leg_id, None) if leg_id else None
                if leg is not None:
                    self._finish(account, book, leg.order, "Cancelled")
            self._cancel_closing(account, book, position.position_id)
        else:
            for leg_id in (position.stop_loss_id, position.take_profit_id):
                leg = book.working.get(leg_id) if leg_id else None
                if leg is not None:
                    leg.order.qty = position.qty
            self._position_changed(account, book, position)

    def _cancel_closing(self, account: str, book: Book, position_id: str) -> None:
        """Closing orders still working for a position that is gone, or that a new close
        replaces."""
        for leg in list(book.working.values()):
            if leg.role == "close" and leg.order.position_id == position_id:
                del book.working[leg.order.order_id]
                self._finish(account, book, leg.order, "Cancelled")

    def _finish(self, account: str, book: Book, order: Order, status: str) -> None:
        order.status, order.is_open = status, False
        order.last_modified_ms = self._now_ms()
        book.history.append(order)
        self._order_changed(account, order)

    def _emit(self, account: str, payload: StreamMessage) -> None:
        if self._events.full():
            self._events.get_nowait()  # nobody reads: the oldest goes, as on a real stream
        self._events.put_nowait(VenueEvent(account, event_kind(payload), payload))

    def _order_changed(self, account: str, order: Order) -> None:
        self._emit(account, order_event(account, order, self._instruments[order.instrument_id]))

    def _position_changed(self, account: str, book: Book, position: Position) -> None:
        instrument = self._instruments[position.instrument_id]
        self._emit(account, position_event(account, book, position, instrument))

    def _set_protection(
        self,
        account: str,
        book: Book,
        position: Position,
        stop_loss: float | None,
        stop_loss_type: ProtectionType | None,
        trailing: float | None,
        take_profit: float | None,
        take_profit_type: ProtectionType | None,
    ) -> None:
        instrument = self._instruments[position.instrument_id]
        pip = instrument.tick_for(position.avg_price) * 10
        changed = False
        for role, value, kind in (
            ("sl", stop_loss, stop_loss_type),
            ("tp", take_profit, take_profit_type),
        ):
            old_id = position.stop_loss_id if role == "sl" else position.take_profit_id
            if old_id:
                changed = True
                if old_id in book.working:
                    self._finish(account, book, book.working.pop(old_id).order, "Cancelled")
            _set_leg(position, role, None)
            if value is None:
                continue
            price = value
            direction = -1.0 if (role == "sl") == (position.side is Side.BUY) else 1.0
            if kind in (ProtectionType.OFFSET, ProtectionType.TRAILING_OFFSET):
                price = position.avg_price + direction * value * pip
            now = self._now_ms()
            leg_order = Order(
                order_id=self._new_id(),
                instrument_id=position.instrument_id,
                side=position.side.opposite,
                type="stop" if role == "sl" else "limit",
                qty=position.qty,
                status="New",
                price=price if role == "tp" else None,
                stop_price=price if role == "sl" else None,
                validity="GTC",
                created_ms=now,
                last_modified_ms=now,
                position_id=position.position_id,
                strategy_id=position.strategy_id,
            )
            leg = Leg(
                leg_order,
                role=role,
                trail=trailing if kind is ProtectionType.TRAILING_OFFSET else None,
            )
            book.working[leg_order.order_id] = leg
            _set_leg(position, role, leg_order.order_id)
            self._order_changed(account, leg_order)
            changed = True
            self._maybe_fire(account, book, leg)
        if changed and position.position_id in book.positions:
            self._position_changed(account, book, position)


def _set_leg(position: Position, role: str, order_id: str | None) -> None:
    if role == "sl":
        position.stop_loss_id = order_id
    else:
        position.take_profit_id = order_id
