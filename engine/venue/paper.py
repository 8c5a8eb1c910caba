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
from engine.model.errors import NotFound, OrderRejected, ValidationError
from engine.venue.events import VenueEvent
from engine.venue.paper_book import (
    ROUTES,
    Book,
    Leg,
)
from engine.venue.paper_matching import EPS, PaperMarket
from engine.venue.paper_quotes import PaperQuotes
from engine.venue.protocol import (
    Capabilities,
    PlaceResult,
    RateGate,
    ReverseResult,
    TagMatches,
    group_by_tag,
)


class PaperVenue(PaperMarket):
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
        super().__init__(
            accounts,
            instruments=instruments,
            quotes=quotes,
            balance=balance,
            liquidity=liquidity,
        )
        self._rate_limits = list(rate_limits)
        self._quote_source = PaperQuotes(self._quotes.get)

    # -- protocol: life cycle and instruments --------------------------------------------------

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

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
        if qty < 0 or qty > position.qty + EPS:
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
            "Filled" if first >= close_qty - EPS else "Cancelled",
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
        if rest > EPS and position_id in book.positions:
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
