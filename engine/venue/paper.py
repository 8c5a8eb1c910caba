"""``PaperVenue``: an in-process :class:`engine.venue.protocol.Venue` with no network at all.

A second, independent implementation of the venue protocol: it lets the execution layer run
without a sandbox server, and, run through the same suite as the TradeLocker adapter
(``tests/venue_suite``), keeps the protocol honest about what every venue must do.

It models TradeLocker's visible behaviour: hedging accounts (every entry fill opens its own
position), market orders filled at once at the touch, limit and stop orders resting until the
price crosses (with ``liquidity``, at most that many lots per execution: a market order's rest is
cancelled, a resting order fills in parts, a close's rest becomes a working GTC closing order),
SL/TP as separate working orders referenced by the position, partial closes, final orders moving
to history, ``strategyId`` tags everywhere. Prices move only when
:meth:`PaperVenue.set_quote` is called, which also fires whatever the new price crosses and tells
the quote source's watchers (:mod:`engine.venue.paper_quotes`). Every change is reported on
:meth:`PaperVenue.events` as it happens. Rate limits are whatever the constructor is given
(none by default), on two routes: ``orders`` and ``positions``.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Collection, Iterable
from dataclasses import replace

from engine.model.domain import (
    AccountState,
    Action,
    Instrument,
    Order,
    OrderModification,
    OrderRequest,
    OrderType,
    Position,
    Priority,
    ProtectionType,
    RateLimit,
    RouteKey,
    Side,
    Validity,
)
from engine.model.errors import ConfigError, NotFound, OrderRejected, ValidationError
from engine.venue.events import StreamMessage, StreamPositionClosed, VenueEvent, event_kind
from engine.venue.paper_book import (
    ROUTES,
    Book,
    Leg,
    default_instruments,
    order_event,
    position_event,
)
from engine.venue.paper_quotes import PaperQuotes
from engine.venue.protocol import (
    Capabilities,
    PlaceResult,
    RateGate,
    ReverseResult,
    TagMatches,
    group_by_tag,
)

_EPS = 1e-9


class PaperVenue:
    """Every account starts with ``balance``; quotes are (bid, ask) per instrument id."""

    capabilities = Capabilities(
        native_stop_limit=False,
        hedging=True,
        trailing_stop=True,
        partial_close=True,
        client_order_id=False,
        max_tag_length=31,
        streaming=True,
    )

    def __init__(
        self,
        accounts: Iterable[str],
        *,
        instruments: Iterable[Instrument] | None = None,
        quotes: dict[int, tuple[float, float]] | None = None,
        balance: float = 100_000.0,
        rate_limits: Iterable[RateLimit] = (),
        liquidity: float | None = None,
    ) -> None:
        """``liquidity``: the lots one execution fills at most (None: all of it). What an
        execution leaves: a market order's rest is cancelled (IOC), a limit or stop order's
        stays working, a close's becomes a working GTC closing order that fills at the next
        quote (TradeLocker's IOC-then-GTC close)."""
        self._liquidity = liquidity
        self._rate_limits = list(rate_limits)
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
        self._quote_source = PaperQuotes(self._quotes.get)

    # -- protocol: life cycle and instruments --------------------------------------------------

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def _book(self, account: str) -> Book:
        book = self._books.get(account)
        if book is None:
            raise ConfigError(f"unknown account alias {account!r}; known: {sorted(self._books)}")
        return book

    async def instruments(self, account: str) -> list[Instrument]:
        self._book(account)
        return list(self._instruments.values())

    async def instrument(self, account: str, symbol: str) -> Instrument:
        self._book(account)
        for instrument in self._instruments.values():
            if instrument.name.upper() == symbol.upper():
                return instrument
        raise NotFound(f"account {account}: no tradable instrument named {symbol!r}")

    async def quote(self, account: str, instrument: Instrument) -> tuple[float, float] | None:
        self._book(account)
        return self._quotes.get(instrument.tradable_instrument_id)

    def quotes(self, account: str) -> PaperQuotes:
        self._book(account)
        return self._quote_source

    def set_quote(self, tradable_instrument_id: int, bid: float, ask: float) -> None:
        """Move the market; resting orders and SL/TP legs the new price crosses fire, then the
        quote source's watchers hear of it."""
        if bid <= 0 or ask < bid:
            raise ValueError(f"quote needs 0 < bid <= ask, got bid={bid} ask={ask}")
        self._quotes[tradable_instrument_id] = (bid, ask)
        for account, book in self._books.items():
            for leg in list(book.working.values()):
                if leg.order.instrument_id == tradable_instrument_id:
                    self._maybe_fire(account, book, leg)
        self._quote_source.moved(tradable_instrument_id)

    # -- protocol: rate limits ----------------------------------------------------------------

    def rate_limits(self, account: str) -> list[RateLimit]:
        self._book(account)
        return list(self._rate_limits)

    def route_for(self, action: Action) -> tuple[RouteKey, ...]:
        return ROUTES[action]

    def use_gate(self, account: str, gate: RateGate) -> None:
        """In process: its reads send no request and spend no budget, so none is gated."""
        self._book(account)

    # -- protocol: orders -------------------------------------------------------------------

    def _new_id(self) -> str:
        return str(next(self._ids))

    def _now_ms(self) -> int:
        return int(time.time() * 1000)

    def _check_qty(self, account: str, instrument: Instrument, qty: float) -> None:
        steps = qty / instrument.lot_step
        if qty < instrument.min_lot - _EPS or qty > instrument.max_lot + _EPS:
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

    async def place_order(self, request: OrderRequest) -> PlaceResult:
        account = request.account
        book = self._book(account)
        if request.type is OrderType.STOP_LIMIT:
            raise ValidationError("stop-limit is not native: the engine emulates it", account)
        if len(request.strategy_tag) > self.capabilities.max_tag_length:
            raise ValidationError("strategy tag longer than the venue allows", account)
        instrument = self._instruments.get(request.instrument.tradable_instrument_id)
        if instrument is None:
            raise NotFound(f"account {account}: unknown instrument", account=account)
        self._check_qty(account, instrument, request.qty)
        if request.type is OrderType.LIMIT and request.price is None:
            raise OrderRejected("a limit order needs a price", "Price required", account=account)
        if request.type is OrderType.STOP and request.stop_price is None:
            raise OrderRejected(
                "a stop order needs a stop price", "Stop price required", account=account
            )
        now = self._now_ms()
        order = Order(
            order_id=self._new_id(),
            instrument_id=instrument.tradable_instrument_id,
            side=request.side,
            type=request.type.wire,
            qty=request.qty,
            status="New",
            price=request.price if request.type is OrderType.LIMIT else None,
            stop_price=request.stop_price if request.type is OrderType.STOP else None,
            validity="IOC" if request.type is OrderType.MARKET else "GTC",
            created_ms=now,
            last_modified_ms=now,
            stop_loss=request.stop_loss,
            stop_loss_type=(request.stop_loss_type or ProtectionType.ABSOLUTE).wire
            if request.stop_loss is not None
            else None,
            take_profit=request.take_profit,
            take_profit_type=(request.take_profit_type or ProtectionType.ABSOLUTE).wire
            if request.take_profit is not None
            else None,
            strategy_id=request.strategy_tag,
        )
        leg = Leg(order, trail=request.trailing_offset)
        book.working[order.order_id] = leg
        self._order_changed(account, order)
        self._maybe_fire(account, book, leg)
        return PlaceResult(order.order_id)

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
        done = filled >= order.qty - _EPS
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
        if self._liquidity is None or qty <= self._liquidity + _EPS:
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
        if position.qty <= _EPS:
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

    # -- events -------------------------------------------------------------------------------

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

    def _working(self, account: str, order_id: str) -> tuple[Book, Leg]:
        book = self._book(account)
        leg = book.working.get(order_id)
        if leg is None:
            if any(o.order_id == order_id for o in book.history):
                raise OrderRejected(
                    f"order {order_id} is final and cannot change",
                    "Order is not active",
                    account=account,
                    status=200,
                )
            raise NotFound(f"account {account}: no order {order_id}", account=account)
        return book, leg

    async def modify_order(self, account: str, order_id: str, change: OrderModification) -> None:
        book, leg = self._working(account, order_id)
        order = leg.order
        if change.qty is not None:
            self._check_qty(account, self._instruments[order.instrument_id], change.qty)
            order.qty = change.qty
        if change.price is not None:
            order.price = change.price
        if change.stop_price is not None:
            order.stop_price = change.stop_price
        if change.stop_loss is not None:
            order.stop_loss = change.stop_loss
            order.stop_loss_type = (change.stop_loss_type or ProtectionType.ABSOLUTE).wire
        if change.take_profit is not None:
            order.take_profit = change.take_profit
            order.take_profit_type = (change.take_profit_type or ProtectionType.ABSOLUTE).wire
        order.last_modified_ms = max(order.last_modified_ms + 1, self._now_ms())
        self._maybe_fire(account, book, leg)

    async def cancel_order(self, account: str, order_id: str) -> None:
        book, leg = self._working(account, order_id)
        del book.working[order_id]
        self._finish(account, book, leg.order, "Cancelled")
        position = book.positions.get(leg.order.position_id or "")
        if position is not None:
            if position.stop_loss_id == order_id:
                position.stop_loss_id = None
            if position.take_profit_id == order_id:
                position.take_profit_id = None

    async def cancel_all_orders(self, account: str, instrument_id: int | None = None) -> None:
        book = self._book(account)
        for order_id, leg in list(book.working.items()):
            if leg.role == "entry" and instrument_id in (None, leg.order.instrument_id):
                del book.working[order_id]
                self._finish(account, book, leg.order, "Cancelled")

    # -- protocol: positions ----------------------------------------------------------------

    def _position(self, account: str, position_id: str) -> tuple[Book, Position]:
        book = self._book(account)
        position = book.positions.get(position_id)
        if position is None:
            raise NotFound(f"account {account}: no open position {position_id}", account=account)
        return book, position

    async def modify_position(
        self,
        account: str,
        position_id: str,
        stop_loss: float | None,
        take_profit: float | None,
        stop_loss_type: ProtectionType | None = None,
        trailing_offset: float | None = None,
    ) -> None:
        book, position = self._position(account, position_id)
        if stop_loss_type is ProtectionType.TRAILING_OFFSET and trailing_offset is None:
            raise ValidationError("a trailing stop-loss needs trailing_offset", account)
        self._set_protection(
            account,
            book,
            position,
            stop_loss,
            stop_loss_type or ProtectionType.ABSOLUTE,
            trailing_offset,
            take_profit,
            ProtectionType.ABSOLUTE,
        )

    async def close_position(self, account: str, position_id: str, qty: float = 0.0) -> None:
        book, position = self._position(account, position_id)
        if qty < 0 or qty > position.qty + _EPS:
            raise OrderRejected(
                f"close qty {qty} is not within the position's {position.qty}",
                "Invalid quantity",
                account=account,
                status=200,
            )
        close_qty = position.qty if qty == 0 else qty
        if qty:
            self._check_qty(account, self._instruments[position.instrument_id], qty)
        self._cancel_closing(account, book, position_id)  # a new close replaces a working one
        bid, ask = self._quotes[position.instrument_id]
        price = bid if position.side is Side.BUY else ask
        now = self._now_ms()
        # An IOC closing order first; what the market does not give it goes GTC.
        first = self._executable(close_qty)
        closing = Order(
            self._new_id(),
            position.instrument_id,
            position.side.opposite,
            "market",
            close_qty,
            "Filled" if first >= close_qty - _EPS else "Cancelled",
            filled_qty=first,
            avg_price=price,
            validity="IOC",
            created_ms=now,
            last_modified_ms=now,
            is_open=False,
            position_id=position_id,
            strategy_id=position.strategy_id,
        )
        book.history.append(closing)
        self._order_changed(account, closing)
        self._reduce(account, book, position, first, price)
        rest = round(close_qty - first, 8)
        if rest > _EPS and position_id in book.positions:
            gtc = Order(
                self._new_id(),
                position.instrument_id,
                position.side.opposite,
                "market",
                rest,
                "New",
                validity="GTC",
                created_ms=now,
                last_modified_ms=now,
                position_id=position_id,
                strategy_id=position.strategy_id,
            )
            book.working[gtc.order_id] = Leg(gtc, role="close")
            self._order_changed(account, gtc)

    async def reverse_position(self, account: str, position_id: str, tag: str) -> ReverseResult:
        _, position = self._position(account, position_id)
        side, qty, tid = position.side, position.qty, position.instrument_id
        await self.close_position(account, position_id, 0.0)
        placed = await self.place_order(
            OrderRequest(
                account,
                self._instruments[tid],
                side.opposite,
                OrderType.MARKET,
                qty,
                Validity.IOC,
                tag,
            )
        )
        return ReverseResult(position_id, placed.order_id)

    async def close_all_positions(self, account: str, instrument_id: int | None = None) -> None:
        book = self._book(account)
        for position in list(book.positions.values()):
            if instrument_id in (None, position.instrument_id):
                await self.close_position(account, position.position_id, 0.0)

    # -- protocol: snapshots ----------------------------------------------------------------

    async def orders(self, account: str, *, priority: Priority = Priority.QUERY) -> list[Order]:
        # In process: no request, no budget, so the priority changes nothing.
        return [replace(leg.order) for leg in self._book(account).working.values()]

    async def orders_history(
        self, account: str, from_ms: int | None = None, to_ms: int | None = None
    ) -> list[Order]:
        lo = from_ms if from_ms is not None else 0
        hi = to_ms if to_ms is not None else 1 << 62
        return [replace(o) for o in self._book(account).history if lo <= o.created_ms <= hi]

    async def positions(
        self, account: str, *, priority: Priority = Priority.QUERY
    ) -> list[Position]:
        book = self._book(account)
        result = []
        for position in book.positions.values():
            bid, ask = self._quotes[position.instrument_id]
            mark = bid if position.side is Side.BUY else ask
            sign = 1.0 if position.side is Side.BUY else -1.0
            lot = self._instruments[position.instrument_id].lot_size
            result.append(
                replace(
                    position, unrealized_pl=sign * (mark - position.avg_price) * position.qty * lot
                )
            )
        return result

    async def account_state(
        self, account: str, *, priority: Priority = Priority.QUERY
    ) -> AccountState:
        book = self._book(account)
        open_pl = sum(p.unrealized_pl for p in await self.positions(account))
        balance = book.balance + book.realized
        return AccountState(
            account=account,
            balance=balance,
            equity=balance + open_pl,
            available_funds=balance + open_pl,
            margin_used=0.0,
            positions_count=len(book.positions),
            orders_count=len(book.working),
            details={"balance": balance, "projectedBalance": balance + open_pl},
        )

    async def find_by_tag(self, account: str, tag: str, since_ms: int | None = None) -> TagMatches:
        """Working orders, final orders (created from ``since_ms``) and positions carrying
        ``tag``."""
        return (await self.find_by_tags(account, (tag,), since_ms)).get(tag, TagMatches())

    async def find_by_tags(
        self, account: str, tags: Collection[str] | None = None, since_ms: int | None = None
    ) -> dict[str, TagMatches]:
        """The three views read once, grouped by tag (every tag of ``tags`` found; None: all)."""
        history = await self.orders_history(account, since_ms)
        working = await self.orders(account)
        return group_by_tag(tags, working, history, await self.positions(account))

    async def events(self) -> AsyncIterator[VenueEvent]:
        while True:
            yield await self._events.get()


def _set_leg(position: Position, role: str, order_id: str | None) -> None:
    if role == "sl":
        position.stop_loss_id = order_id
    else:
        position.take_profit_id = order_id
