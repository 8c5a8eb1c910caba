"""The sandbox's bookkeeping: ids and timestamps, working orders, executions, positions and their
stop-loss / take-profit legs, and every change reported in order through ``emit``.

The matching (which orders fill, at what prices, in how many parts) is ``sandbox.book``; this
module only records what the matching decided. A fill of an entry order opens a position (one per
order on a hedging account; one per instrument on a netting account, where an opposite fill
reduces, closes or reverses it); a fill of a leg or a closing order reduces its position.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from sandbox import messages, valuation
from sandbox.clock import VenueClock
from sandbox.instruments import InstrumentSpec
from sandbox.models import STOP_LOSS, TAKE_PROFIT, Execution, SimAccount, SimOrder, SimPosition
from sandbox.order_checks import EPS, protection_prices
from sandbox.prices import PriceBook

Emit = Callable[[str, dict[str, Any]], None]


def opposite(side: str) -> str:
    return "sell" if side == "buy" else "buy"


class Ledger:
    def __init__(
        self,
        accounts: dict[str, SimAccount],
        prices: PriceBook,
        rng_seed: int,
        emit: Emit,
        clock: VenueClock,
        stop_out_level: float,
    ) -> None:
        self.accounts = accounts
        self.prices = prices
        self.emit = emit
        self.clock = clock
        self.stop_out_level = stop_out_level
        self._id_rng = random.Random(f"ids:{rng_seed}")
        self._used_ids: set[str] = set()
        self._last_ms = 0
        # Working orders by instrument, so a price change looks only at what it can trigger.
        self.working: dict[int, dict[str, SimOrder]] = {}

    # -- ids, clock, messages -------------------------------------------------------------------

    def new_id(self) -> str:
        while True:
            candidate = str(self._id_rng.randrange(10**18, 2**63))
            if candidate not in self._used_ids:
                self._used_ids.add(candidate)
                return candidate

    def now_ms(self) -> int:
        """The venue clock in ms, strictly increasing so lastModified always moves forward."""
        self._last_ms = max(self.clock.now_ms(), self._last_ms + 1)
        return self._last_ms

    def spec(self, tid: int) -> InstrumentSpec:
        return self.prices.spec(tid)

    def details(self, account: SimAccount) -> dict[str, float]:
        return valuation.account_details(self.prices, account, self.stop_out_level)

    def account_status_message(self, account: SimAccount) -> dict[str, Any]:
        return messages.account_status(account, self.details(account))

    def position_message(self, position: SimPosition) -> dict[str, Any]:
        account = self.accounts[position.account_id]
        maint = valuation.margin(self.prices, position) / 2
        return messages.position(self.spec(position.tid), account, position, maint)

    def open_order_message(self, order: SimOrder, status: str) -> dict[str, Any]:
        return messages.open_order(self.spec(order.tid), order, status)

    def emit_status(self, account: SimAccount) -> None:
        self.emit(account.id, self.account_status_message(account))

    # -- working orders -------------------------------------------------------------------------

    def rest(self, account: SimAccount, order: SimOrder) -> None:
        account.orders[order.id] = order
        self.working.setdefault(order.tid, {})[order.id] = order
        self.emit(account.id, self.open_order_message(order, "PENDING"))

    def finish(self, account: SimAccount, order: SimOrder, status: str) -> None:
        order.status = status
        order.last_modified_ms = self.now_ms()
        account.orders.pop(order.id, None)
        self.working.get(order.tid, {}).pop(order.id, None)
        account.history.append(order)

    def cancel(self, account: SimAccount, order: SimOrder) -> None:
        self.finish(account, order, "Cancelled")
        self.emit(account.id, self.open_order_message(order, "CANCELLED"))

    # -- fills ----------------------------------------------------------------------------------

    def record(
        self, account: SimAccount, order: SimOrder, position_id: str, price: float, qty: float
    ) -> None:
        """One execution of ``order``; an order filled in full becomes Filled (EXECUTED)."""
        spec = self.spec(order.tid)
        before = order.filled_qty
        filled = round(before + qty, 10)
        if before <= 0 or order.avg_price is None:
            order.avg_price = price
        else:
            vwap = (order.avg_price * before + price * qty) / filled
            order.avg_price = round(vwap, spec.price_decimals + 3)
        order.filled_qty = filled
        order.position_id = position_id
        complete = filled >= order.qty - EPS
        if complete:
            self.finish(account, order, "Filled")
        else:
            order.last_modified_ms = self.now_ms()
        account.executions.append(
            Execution(
                self.new_id(),
                account.id,
                order.tid,
                order.id,
                position_id,
                order.side,
                qty,
                price,
                order.last_modified_ms,
            )
        )
        account.today_volume += qty * spec.lot_size * price
        account.today_trades += 1
        if complete:
            self.emit(account.id, self.open_order_message(order, "EXECUTED"))

    def fill_entry(self, account: SimAccount, order: SimOrder, price: float, qty: float) -> None:
        if account.netting:
            self._fill_netting(account, order, price, qty)
            return
        position = account.positions.get(order.position_id or "") if order.filled_qty else None
        if position is None:
            self.open_position(account, order, price, qty)
        else:
            self.grow_position(account, position, order, price, qty)

    def _fill_netting(self, account: SimAccount, order: SimOrder, price: float, qty: float) -> None:
        position = next((p for p in account.positions.values() if p.tid == order.tid), None)
        if position is None:
            self.open_position(account, order, price, qty)
        elif position.side == order.side:
            self.grow_position(account, position, order, price, qty)
        else:
            reduced = min(qty, position.qty)
            self.reduce_position(account, position, order, price, reduced)
            rest = round(qty - reduced, 10)
            if rest > EPS:  # the fill reverses the position: the rest opens the other side
                self.open_position(account, order, price, rest)

    def open_position(self, account: SimAccount, order: SimOrder, price: float, qty: float) -> None:
        position = SimPosition(
            id=self.new_id(),
            account_id=account.id,
            tid=order.tid,
            route_id=order.route_id,
            side=order.side,
            qty=qty,
            avg_price=price,
            open_ms=self.now_ms(),
            open_order_id=order.id,
            strategy_id=order.strategy_id,
        )
        account.positions[position.id] = position
        self.record(account, order, position.id, price, qty)
        self._protect(account, position, order, price)
        self.emit(account.id, self.position_message(position))
        self.emit_status(account)

    def grow_position(
        self,
        account: SimAccount,
        position: SimPosition,
        order: SimOrder,
        price: float,
        qty: float,
    ) -> None:
        spec = self.spec(position.tid)
        total = round(position.qty + qty, 10)
        vwap = (position.avg_price * position.qty + price * qty) / total
        position.avg_price = round(vwap, spec.price_decimals + 3)
        position.qty = total
        first_fill = order.filled_qty <= 0
        self.record(account, order, position.id, price, qty)
        if first_fill and (order.stop_loss is not None or order.take_profit is not None):
            # A netting order with its own SL/TP replaces the position's protection.
            for role in (STOP_LOSS, TAKE_PROFIT):
                self.set_leg(account, position, role, None, None)
            self._protect(account, position, order, price)
        self._resize_legs(account, position, skip=order)
        self.emit(account.id, self.position_message(position))
        self.emit_status(account)

    def reduce_position(
        self,
        account: SimAccount,
        position: SimPosition,
        order: SimOrder,
        price: float,
        qty: float,
    ) -> None:
        spec = self.spec(position.tid)
        sign = 1.0 if position.side == "buy" else -1.0
        realised = (price - position.avg_price) * qty * spec.lot_size * sign
        account.balance += realised
        account.today_gross += realised
        self.record(account, order, position.id, price, qty)
        position.qty = round(position.qty - qty, 10)
        if position.qty <= EPS:
            del account.positions[position.id]
            for leg_id in (position.stop_loss_id, position.take_profit_id):
                leg = account.orders.get(leg_id or "")
                if leg is not None:
                    self.cancel(account, leg)
            self.emit(
                account.id,
                messages.close_position(
                    spec, account.id, position.id, price, order.last_modified_ms
                ),
            )
        else:
            self._resize_legs(account, position, skip=order)
            self.emit(account.id, self.position_message(position))
        self.emit_status(account)

    # -- stop-loss and take-profit legs ---------------------------------------------------------

    def _protect(
        self, account: SimAccount, position: SimPosition, order: SimOrder, price: float
    ) -> None:
        sl, tp, trail = protection_prices(
            self.prices,
            self.spec(order.tid),
            order.side,
            price,
            order.stop_loss,
            order.stop_loss_type,
            order.tr_stop_offset,
            order.take_profit,
            order.take_profit_type,
        )
        if sl is not None:
            position.stop_loss_id = self.add_leg(account, position, STOP_LOSS, sl, trail).id
        if tp is not None:
            position.take_profit_id = self.add_leg(account, position, TAKE_PROFIT, tp, None).id

    def _resize_legs(self, account: SimAccount, position: SimPosition, skip: SimOrder) -> None:
        for leg_id in (position.stop_loss_id, position.take_profit_id):
            leg = account.orders.get(leg_id or "")
            if leg is not None and leg is not skip:
                leg.qty = round(leg.filled_qty + position.qty, 10)  # what is left = the position
                leg.last_modified_ms = self.now_ms()
                self.emit(account.id, self.open_order_message(leg, "PENDING"))

    def add_leg(
        self,
        account: SimAccount,
        position: SimPosition,
        role: str,
        price: float,
        trail: float | None,
    ) -> SimOrder:
        now = self.now_ms()
        leg = SimOrder(
            id=self.new_id(),
            account_id=account.id,
            tid=position.tid,
            route_id=position.route_id,
            qty=position.qty,
            side=opposite(position.side),
            type="stop" if role == STOP_LOSS else "limit",
            validity="GTC",
            created_ms=now,
            last_modified_ms=now,
            role=role,
            position_id=position.id,
            strategy_id=position.strategy_id,
            price=price if role == TAKE_PROFIT else None,
            stop_price=price if role == STOP_LOSS else None,
            trail_distance=trail,
        )
        self.rest(account, leg)
        return leg

    def set_leg(
        self,
        account: SimAccount,
        position: SimPosition,
        role: str,
        price: float | None,
        trail: float | None,
    ) -> None:
        """Add, move or (price None) remove a position's stop-loss or take-profit leg."""
        leg_id = position.stop_loss_id if role == STOP_LOSS else position.take_profit_id
        leg = account.orders.get(leg_id or "")
        if price is None:
            if leg is not None:
                self.cancel(account, leg)
            new_id = None
        elif leg is None:
            new_id = self.add_leg(account, position, role, price, trail).id
        else:
            if role == STOP_LOSS:
                leg.stop_price = price
                leg.trail_distance = trail
            else:
                leg.price = price
            leg.last_modified_ms = self.now_ms()
            self.emit(account.id, self.open_order_message(leg, "PENDING"))
            new_id = leg.id
        if role == STOP_LOSS:
            position.stop_loss_id = new_id
        else:
            position.take_profit_id = new_id
