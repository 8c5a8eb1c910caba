"""Orders meet the market: placing, triggering, filling, modifying, cancelling and closing, under
the venue's rules (market hours, account rules, liquidity).

How an order fills is set by ``VenueRules`` (``sandbox.venue_rules``). With the ``fast`` preset
liquidity is unlimited at the touch (a buy fills at the ask, a sell at the bid, in full), closes
are instant, markets trade 24/7 and accounts are hedging without stop-out: the sandbox as it always
was. The ``realistic`` preset walks a depth ladder (fills in parts at worse prices; an IOC's
remainder is cancelled, a resting order's stays working), slips market orders, rejects a share of
accepted orders, closes through an IOC then a GTC closing order, keeps sessions, and liquidates at
the stop-out level. Faults (``partialFill``, ``rejectAfterAccept``, ``slippage`` per operation;
``marketStatus`` and ``ruleBreach``) switch each behaviour on for one test.

Working orders are checked against every quote change of their instrument, so moving a price
(timer or admin) triggers them. Fills that no request caused count as operation ``QUOTE_FILL``
for the per-operation faults. Every change is reported, synchronously and in order, through
``emit(account_id, message)`` in the Streams API vocabulary (``sandbox.messages``).
"""

from __future__ import annotations

import random
from typing import Any

from sandbox import valuation
from sandbox.clock import VenueClock
from sandbox.errors import NotFound, Rejected
from sandbox.faults import Faults
from sandbox.instruments import InstrumentSpec
from sandbox.ledger import Emit, Ledger, opposite
from sandbox.liquidity import CLOSE_IOC_THEN_GTC, Slice, partial_part
from sandbox.models import CLOSE, ENTRY, STOP_LOSS, TAKE_PROFIT, SimAccount, SimOrder, SimPosition
from sandbox.order_checks import EPS, apply_change, check_qty, check_tick, validate_protection
from sandbox.order_rules import MISSING, OrderChange, PlaceRequest, PositionChange
from sandbox.prices import PriceBook, Quote
from sandbox.risk import RiskDesk
from sandbox.rules import RuleKeeper
from sandbox.sessions import OPEN, Market
from sandbox.venue_rules import VenueRules, fast_venue_rules

QUOTE_FILL = "QUOTE_FILL"  # the operation name of fills caused by the market, not a request


class OrderBook:
    def __init__(
        self,
        accounts: dict[str, SimAccount],
        prices: PriceBook,
        rng_seed: int,
        emit: Emit,
        *,
        venue: VenueRules | None = None,
        faults: Faults | None = None,
        clock: VenueClock | None = None,
    ) -> None:
        self.accounts = accounts
        self.prices = prices
        self.venue = venue or fast_venue_rules()
        self.execution = self.venue.execution
        self.clock = clock or prices.clock
        self.ledger = Ledger(
            accounts, prices, rng_seed, emit, self.clock, self.venue.accounts.stop_out_level
        )
        self.rules = RuleKeeper(self.venue.accounts, accounts)
        self.risk = RiskDesk(self.rules, prices, self.ledger, self.clock, self._liquidate)
        self._faults = faults
        self.market = Market(prices.specs, self.venue.hours, self.clock, self._forced_status)
        self._rng = random.Random(f"execution:{rng_seed}")
        self.clock.subscribe(self._on_change)
        if faults is not None:
            refs = {s.name for s in prices.specs.values()} | {str(t) for t in prices.specs}
            faults.market.bind(refs, set(accounts), self._on_change)
            self._on_change()  # what the seed's faults ask for happens now

    # -- the old surface: ids, lookups, valuation, stream vocabulary ----------------------------

    def new_id(self) -> str:
        return self.ledger.new_id()

    def now_ms(self) -> int:
        return self.ledger.now_ms()

    def spec(self, tid: int) -> InstrumentSpec:
        return self.prices.spec(tid)

    def find_order(self, account: SimAccount, order_id: str) -> SimOrder:
        order = account.orders.get(order_id)
        if order is not None:
            return order
        for old in account.history:
            if old.id == order_id:
                return old
        raise NotFound(f"Order {order_id} not found")

    def find_position(self, account: SimAccount, position_id: str) -> SimPosition:
        position = account.positions.get(position_id)
        if position is None:
            raise NotFound(f"Position {position_id} not found")
        return position

    def unrealized(self, position: SimPosition) -> float:
        return valuation.unrealized(self.prices, position)

    def margin(self, position: SimPosition) -> float:
        return valuation.margin(self.prices, position)

    def account_details(self, account: SimAccount) -> dict[str, float]:
        return self.ledger.details(account)

    def account_status_message(self, account: SimAccount) -> dict[str, Any]:
        return self.ledger.account_status_message(account)

    def position_message(self, position: SimPosition) -> dict[str, Any]:
        return self.ledger.position_message(position)

    def open_order_message(self, order: SimOrder, status: str) -> dict[str, Any]:
        return self.ledger.open_order_message(order, status)

    # -- gates ----------------------------------------------------------------------------------

    def _forced_status(self, spec: InstrumentSpec) -> str | None:
        if self._faults is None:
            return None
        return self._faults.market.status_for(spec.name, spec.tradable_instrument_id)

    def _gate_market(self, spec: InstrumentSpec) -> None:
        """Refuse while the instrument does not trade (sessions, halts, symbolStatus)."""
        if self.venue.hours.enabled:
            self._catch_up()
        status = self.market.status(spec.tradable_instrument_id)
        if status != OPEN:
            raise Rejected(f"Market is closed for {spec.name} ({status})")

    def _gate(self, account: SimAccount, spec: InstrumentSpec) -> None:
        """Refuse while the instrument does not trade or the account is restricted."""
        self._gate_market(spec)
        if account.restriction is not None:
            raise Rejected(
                f"Account {account.id} is {account.status}: {account.restriction}; "
                "trading is disabled on this account"
            )
        if self.rules.watching:
            self.rules.new_day(account, self.clock.now_ms())

    def _fires(self, kind: str, op: str, share: float) -> bool:
        if self._faults is not None and self._faults.fires(kind, op):
            return True
        return share > 0.0 and self._rng.random() < share

    # -- placing --------------------------------------------------------------------------------

    def place(self, account: SimAccount, req: PlaceRequest) -> SimOrder:
        try:
            spec = self.spec(req.tid)
        except KeyError:
            raise Rejected(f"Instrument {req.tid} not found") from None
        if req.route_id != spec.trade_route_id:
            raise Rejected(f"Route {req.route_id} is not a TRADE route of {spec.name}")
        self._gate(account, spec)
        expected = "IOC" if req.type == "market" else "GTC"
        if req.validity != expected:
            raise Rejected(
                f"Invalid TimeInForce {req.validity} for a {req.type} order: use {expected}"
            )
        check_qty(spec, req.qty)
        quote = self.prices.quote(req.tid)
        if req.type == "limit":
            if req.price is None:
                raise Rejected("price is required for a limit order")
            check_tick(spec, "price", req.price)
            ref = req.price
        elif req.type == "stop":
            if req.stop_price is None:
                raise Rejected("stopPrice is required for a stop order")
            check_tick(spec, "stopPrice", req.stop_price)
            ref = req.stop_price
        else:
            ref = quote.ask if req.side == "buy" else quote.bid
        validate_protection(self.prices, spec, req.side, ref, req)
        needed = req.qty * spec.lot_size * ref / spec.leverage
        if needed > self.account_details(account)["availableFunds"] + EPS:
            raise Rejected(f"Not enough money: margin {needed:.2f} exceeds available funds")
        if self.rules.rules(account).max_lots is not None:
            refusal = self.rules.refuse_lots(account, self._open_lots(account), req.qty)
            if refusal is not None:
                raise Rejected(refusal)

        now = self.now_ms()
        order = SimOrder(
            id=self.new_id(),
            account_id=account.id,
            tid=req.tid,
            route_id=req.route_id,
            qty=req.qty,
            side=req.side,
            type=req.type,
            validity=req.validity,
            created_ms=now,
            last_modified_ms=now,
            price=req.price if req.type == "limit" else None,
            stop_price=req.stop_price if req.type == "stop" else None,
            stop_loss=req.stop_loss,
            stop_loss_type=req.stop_loss_type,
            take_profit=req.take_profit,
            take_profit_type=req.take_profit_type,
            tr_stop_offset=req.tr_stop_offset,
            strategy_id=req.strategy_id,
        )
        reject_share = self.execution.reject_after_accept_share
        if self._fires("rejectAfterAccept", "PLACE_ORDER", reject_share):
            # Accepted (the reply carries the order id), then refused by the venue.
            self.ledger.emit(account.id, self.open_order_message(order, "PENDING"))
            self.ledger.finish(account, order, "Rejected")
            self.ledger.emit(account.id, self.open_order_message(order, "REJECTED"))
            return order
        if req.type == "market" or self._triggered(order, quote):
            order.triggered = req.type == "stop"
            self._execute(account, order, "PLACE_ORDER")
        else:
            self.ledger.rest(account, order)
        self._after(account)
        return order

    @staticmethod
    def _open_lots(account: SimAccount) -> float:
        lots = sum(p.qty for p in account.positions.values())
        return lots + sum(o.qty - o.filled_qty for o in account.orders.values() if o.role == ENTRY)

    # -- matching -------------------------------------------------------------------------------

    @staticmethod
    def _triggered(order: SimOrder, quote: Quote) -> bool:
        if order.type == "market" or order.triggered:
            return True
        if order.type == "limit" and order.price is not None:
            return quote.ask <= order.price if order.side == "buy" else quote.bid >= order.price
        if order.type == "stop" and order.stop_price is not None:
            if order.side == "buy":
                return quote.ask >= order.stop_price
            return quote.bid <= order.stop_price
        return False

    def on_quote(self, tid: int) -> None:
        """A new quote: trail stops, then fill what it triggers (in creation order), then look
        at the accounts the price moved, all before returning. Nothing fills while closed."""
        if self.venue.hours.enabled:
            self._catch_up()
        if not self.market.is_open(tid):
            return
        self._match(tid, QUOTE_FILL)
        if self.rules.watching:
            for account in list(self.accounts.values()):
                if any(p.tid == tid for p in account.positions.values()):
                    self.risk.check(account)

    def _match(self, tid: int, op: str) -> None:
        working = self.ledger.working.get(tid)
        if not working:
            return
        quote = self.prices.quote(tid)
        for order in list(working.values()):
            if order.trail_distance is not None and order.stop_price is not None:
                if not order.triggered:
                    self._trail(order, quote)
        for order in sorted(working.values(), key=lambda o: (o.created_ms, o.id)):
            if order.is_open and order.id in working and self._triggered(order, quote):
                order.triggered = order.type == "stop"
                self._execute(self.accounts[order.account_id], order, op)

    def _trail(self, order: SimOrder, quote: Quote) -> None:
        assert order.trail_distance is not None and order.stop_price is not None
        # A leg of a buy position is a sell stop below the bid; it only ever moves up.
        if order.side == "sell":
            candidate = self.prices.round_to_tick(order.tid, quote.bid - order.trail_distance)
            better = candidate > order.stop_price
        else:
            candidate = self.prices.round_to_tick(order.tid, quote.ask + order.trail_distance)
            better = candidate < order.stop_price
        if better:
            order.stop_price = candidate
            order.last_modified_ms = self.now_ms()
            self.ledger.emit(order.account_id, self.open_order_message(order, "PENDING"))
            position = self.accounts[order.account_id].positions.get(order.position_id or "")
            if position is not None:
                self.ledger.emit(order.account_id, self.position_message(position))

    # -- execution ------------------------------------------------------------------------------

    def _execute(self, account: SimAccount, order: SimOrder, op: str, forced: bool = False) -> None:
        """Fill what the market gives ``order`` now; then the remainder of an IOC is cancelled
        (or, for a close under iocThenGtc, handed to a GTC closing order) and a GTC rests."""
        slipped = False
        if order.type == "market" and op != QUOTE_FILL and not forced:
            slipped = self._slip(order, op)
        position: SimPosition | None = None
        remaining = round(order.qty - order.filled_qty, 10)
        if order.role != ENTRY:
            position = account.positions.get(order.position_id or "")
            if position is None:  # its position is gone: the order has nothing left to do
                self.ledger.cancel(account, order)
                return
            remaining = min(remaining, position.qty)
        slices = self._slices(order, remaining, op, forced)
        for price, qty in slices:
            if order.role == ENTRY:
                self.ledger.fill_entry(account, order, price, qty)
                continue
            position = account.positions.get(order.position_id or "")
            if position is None:
                break
            self.ledger.reduce_position(account, position, order, price, min(qty, position.qty))
        if order.is_open:
            self._remainder(account, order, bool(slices))
        if slipped:  # the market moved: whatever else it triggers fills now
            self._match(order.tid, QUOTE_FILL)

    def _slip(self, order: SimOrder, op: str) -> bool:
        """Move the quote against a market order, as if it moved while the order travelled."""
        ticks = 0
        most, share = max(1, self.execution.slippage_ticks), self.execution.slippage_share
        if self._faults is not None and self._faults.fires("slippage", op):
            ticks = most
        elif share > 0.0 and self._rng.random() < share:
            ticks = self._rng.randint(1, most)
        if not ticks:
            return False
        quote = self.prices.quote(order.tid)
        move = ticks * self.spec(order.tid).tick_for(quote.bid)
        move = move if order.side == "buy" else -move
        self.prices.set_quote(order.tid, bid=quote.bid + move, ask=quote.ask + move)
        return True

    def _slices(self, order: SimOrder, qty: float, op: str, forced: bool) -> list[Slice]:
        spec = self.spec(order.tid)
        if not forced and self._fires("partialFill", op, self.execution.partial_fill_share):
            qty = partial_part(spec, qty, self.execution.partial_fill_fraction) or qty
        quote = self.prices.quote(order.tid)
        if not self.execution.depth:
            return [(quote.ask if order.side == "buy" else quote.bid, qty)]
        limit = order.price if order.type == "limit" else None
        return self.prices.liquidity.take(
            spec, quote.bid, quote.ask, order.side, qty, limit, forced
        )

    def _remainder(self, account: SimAccount, order: SimOrder, filled_now: bool) -> None:
        if order.role != ENTRY and order.position_id not in account.positions:
            self.ledger.cancel(account, order)
        elif order.validity != "IOC":
            if order.id not in account.orders:
                self.ledger.rest(account, order)
            elif filled_now:
                self.ledger.emit(account.id, self.open_order_message(order, "PENDING"))
        elif order.role == CLOSE and self.execution.close == CLOSE_IOC_THEN_GTC:
            self.ledger.cancel(account, order)
            gtc = self._closing_order(account, account.positions[order.position_id or ""])
            gtc.qty = round(order.qty - order.filled_qty, 10)
            gtc.validity = "GTC"
            self.ledger.rest(account, gtc)
        else:
            self.ledger.cancel(account, order)

    # -- modify and cancel ----------------------------------------------------------------------

    def modify(self, account: SimAccount, order_id: str, change: OrderChange) -> SimOrder:
        order = self.find_order(account, order_id)
        if not order.is_open:
            raise Rejected(f"Order {order_id} is {order.status} and can no longer be modified")
        spec = self.spec(order.tid)
        self._gate(account, spec)
        apply_change(self.prices, spec, order, change)
        order.last_modified_ms = self.now_ms()
        self.ledger.emit(account.id, self.open_order_message(order, "PENDING"))
        self._match(order.tid, "MODIFY_ORDER")
        self._after(account)
        return order

    def cancel(self, account: SimAccount, order_id: str) -> None:
        order = self.find_order(account, order_id)
        if not order.is_open:
            raise Rejected(f"Order {order_id} is {order.status} and cannot be cancelled")
        self.ledger.cancel(account, order)
        if order.role in (STOP_LOSS, TAKE_PROFIT):
            position = account.positions.get(order.position_id or "")
            if position is not None:
                if position.stop_loss_id == order.id:
                    position.stop_loss_id = None
                if position.take_profit_id == order.id:
                    position.take_profit_id = None
                self.ledger.emit(account.id, self.position_message(position))
        self.ledger.emit_status(account)

    def cancel_all(self, account: SimAccount, tid: int | None) -> int:
        """Cancel working entry orders (SL/TP legs stay with their positions); returns how many."""
        targets = [
            o for o in account.orders.values() if o.role == ENTRY and (tid is None or o.tid == tid)
        ]
        for order in targets:
            self.cancel(account, order.id)
        return len(targets)

    # -- positions ------------------------------------------------------------------------------

    def _closing_order(self, account: SimAccount, position: SimPosition) -> SimOrder:
        now = self.now_ms()
        return SimOrder(
            id=self.new_id(),
            account_id=account.id,
            tid=position.tid,
            route_id=position.route_id,
            qty=position.qty,
            side=opposite(position.side),
            type="market",
            validity="IOC",
            created_ms=now,
            last_modified_ms=now,
            role=CLOSE,
            position_id=position.id,
            strategy_id=position.strategy_id,
        )

    def close(
        self, account: SimAccount, position_id: str, qty: float, op: str = "CLOSE_POSITION"
    ) -> SimOrder:
        position = self.find_position(account, position_id)
        spec = self.spec(position.tid)
        self._gate_market(spec)  # a restricted account may still close what it holds
        close_qty = position.qty if qty <= EPS else qty
        if close_qty > position.qty + EPS:
            raise Rejected(
                f"Cannot close {close_qty:g} lots: position {position_id} has {position.qty:g}"
            )
        if qty > EPS and close_qty < position.qty - EPS:
            check_qty(spec, close_qty)
        # A new close supersedes a closing order still working for this position.
        for working in list(account.orders.values()):
            if working.role == CLOSE and working.position_id == position.id:
                self.ledger.cancel(account, working)
        # The venue closes with an IOC market order (what it leaves: see _remainder).
        order = self._closing_order(account, position)
        order.qty = close_qty
        self._execute(account, order, op)
        self._after(account)
        return order

    def close_all(self, account: SimAccount, tid: int | None, strategy_id: str | None) -> int:
        targets = [
            p
            for p in account.positions.values()
            if (tid is None or p.tid == tid)
            and (strategy_id is None or p.strategy_id == strategy_id)
        ]
        for position in targets:
            self.close(account, position.id, 0.0, "CLOSE_ALL_POSITIONS")
        return len(targets)

    def modify_position(
        self, account: SimAccount, position_id: str, change: PositionChange
    ) -> SimPosition:
        position = self.find_position(account, position_id)
        spec = self.spec(position.tid)
        self._gate(account, spec)
        quote = self.prices.quote(position.tid)
        # A protective price must be beyond the market on the right side, or it would fill now.
        exit_price = quote.bid if position.side == "buy" else quote.ask
        trail: float | None = None
        sl_price: float | None = None
        sl_given = change.stop_loss is not MISSING or change.trailing_offset is not MISSING
        if isinstance(change.trailing_offset, float):
            if change.trailing_offset <= 0:
                raise Rejected("trailingOffset must be a positive number of pips")
            trail = change.trailing_offset * spec.pip_size
            sign = 1.0 if position.side == "buy" else -1.0
            sl_price = self.prices.round_to_tick(position.tid, exit_price - sign * trail)
        elif isinstance(change.stop_loss, float):
            check_tick(spec, "stopLoss", change.stop_loss)
            sl_price = change.stop_loss
            if sl_price >= exit_price if position.side == "buy" else sl_price <= exit_price:
                raise Rejected(f"Invalid stop loss {sl_price:g}: the market is at {exit_price:g}")
        tp_price: float | None = None
        if isinstance(change.take_profit, float):
            check_tick(spec, "takeProfit", change.take_profit)
            tp_price = change.take_profit
            if tp_price <= exit_price if position.side == "buy" else tp_price >= exit_price:
                raise Rejected(f"Invalid take profit {tp_price:g}: the market is at {exit_price:g}")
        if sl_given:
            self.ledger.set_leg(account, position, STOP_LOSS, sl_price, trail)
        if change.take_profit is not MISSING:
            self.ledger.set_leg(account, position, TAKE_PROFIT, tp_price, None)
        self.ledger.emit(account.id, self.position_message(position))
        return position

    # -- account rules, sessions and forced changes ---------------------------------------------

    def _after(self, account: SimAccount) -> None:
        if self.rules.watching:
            self.risk.check(account)

    def _liquidate(self, account: SimAccount, position: SimPosition) -> None:
        """Close in full at whatever the market gives, beyond the ladder at its last level."""
        for working in list(account.orders.values()):
            if working.role == CLOSE and working.position_id == position.id:
                self.ledger.cancel(account, working)
        self._execute(account, self._closing_order(account, position), "LIQUIDATION", forced=True)

    def _catch_up(self) -> None:
        """Working orders of the markets that opened since the last look fill at the open."""
        for tid in self.market.newly_open():
            self._match(tid, QUOTE_FILL)

    def _on_change(self) -> None:
        """The clock moved or a market fault changed: sessions, then forced breaches."""
        self._catch_up()
        if self._faults is not None:
            for account_id, breach in self._faults.market.take_breaches().items():
                self.risk.force(self.accounts[account_id], breach)
