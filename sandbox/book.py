"""Orders, positions and fills: the sandbox's matching and bookkeeping.

Liquidity is unlimited at the touch: a buy fills at the ask, a sell at the bid, in full. Every
fill of an entry order opens a NEW position (the account is hedging); stop-loss and take-profit are
separate working orders (``stop`` and ``limit`` legs) referenced by the position. Working orders
are checked against every quote change, so moving a price (timer or admin) triggers them.

Every change is reported, synchronously and in order, through ``emit(account_id, message)`` in the
Streams API vocabulary (AccountStatus, Position, ClosePosition, OpenOrder).
"""

from __future__ import annotations

import datetime
import random
import time
from collections.abc import Callable
from typing import Any

from sandbox.columns import money_text, plain_text, price_text, qty_text
from sandbox.errors import NotFound, Rejected
from sandbox.models import (
    CLOSE,
    ENTRY,
    STOP_LOSS,
    TAKE_PROFIT,
    Execution,
    SimAccount,
    SimOrder,
    SimPosition,
)
from sandbox.order_rules import MISSING, OrderChange, PlaceRequest, PositionChange
from sandbox.prices import PriceBook, Quote
from sandbox.seed import InstrumentSpec

Emit = Callable[[str, dict[str, Any]], None]
_EPS = 1e-9


def _opposite(side: str) -> str:
    return "sell" if side == "buy" else "buy"


def _iso_ms(ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


class OrderBook:
    def __init__(
        self, accounts: dict[str, SimAccount], prices: PriceBook, rng_seed: int, emit: Emit
    ) -> None:
        self.accounts = accounts
        self.prices = prices
        self._emit = emit
        self._id_rng = random.Random(f"ids:{rng_seed}")
        self._used_ids: set[str] = set()
        self._last_ms = 0
        # Working orders by instrument, so a price change looks only at what it can trigger.
        self._working: dict[int, dict[str, SimOrder]] = {}

    # -- ids and clocks -------------------------------------------------------------------------

    def new_id(self) -> str:
        while True:
            candidate = str(self._id_rng.randrange(10**18, 2**63))
            if candidate not in self._used_ids:
                self._used_ids.add(candidate)
                return candidate

    def now_ms(self) -> int:
        """Wall-clock ms, strictly increasing so lastModified always moves forward."""
        now = int(time.time() * 1000)
        self._last_ms = max(now, self._last_ms + 1)
        return self._last_ms

    # -- lookups --------------------------------------------------------------------------------

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

    # -- valuation ------------------------------------------------------------------------------

    def unrealized(self, position: SimPosition) -> float:
        spec = self.spec(position.tid)
        quote = self.prices.quote(position.tid)
        if position.side == "buy":
            return (quote.bid - position.avg_price) * position.qty * spec.lot_size
        return (position.avg_price - quote.ask) * position.qty * spec.lot_size

    def margin(self, position: SimPosition) -> float:
        spec = self.spec(position.tid)
        return position.qty * spec.lot_size * position.avg_price / spec.leverage

    def account_details(self, account: SimAccount) -> dict[str, float]:
        gross = sum(self.unrealized(p) for p in account.positions.values())
        margin = sum(self.margin(p) for p in account.positions.values())
        projected = account.balance + gross
        available = projected - margin
        return {
            "balance": account.balance,
            "projectedBalance": projected,
            "availableFunds": available,
            "blockedBalance": 0.0,
            "cashBalance": account.balance,
            "unsettledCash": 0.0,
            "withdrawalAvailable": max(0.0, min(account.balance, available)),
            "stocksValue": 0.0,
            "optionValue": 0.0,
            "initialMarginReq": margin,
            "maintMarginReq": margin / 2,
            "marginWarningLevel": 100.0,
            "blockedForStocks": 0.0,
            "stockOrdersReq": 0.0,
            "stopOutLevel": 50.0,
            "warningMarginReq": margin,
            "marginBeforeWarning": projected - margin,
            "todayGross": account.today_gross,
            "todayNet": account.today_gross,
            "todayFees": 0.0,
            "todayVolume": account.today_volume,
            "todayTradesCount": float(account.today_trades),
            "openGrossPnL": gross,
            "openNetPnL": gross,
            "positionsCount": float(len(account.positions)),
            "ordersCount": float(len(account.orders)),
        }

    # -- placing --------------------------------------------------------------------------------

    def _check_qty(self, spec: InstrumentSpec, qty: float) -> None:
        if qty <= 0:
            raise Rejected(f"Invalid quantity {qty:g}: must be positive")
        if qty < spec.min_lot - _EPS:
            raise Rejected(f"Invalid quantity {qty:g}: below the minimum lot {spec.min_lot:g}")
        if qty > spec.max_lot + _EPS:
            raise Rejected(f"Invalid quantity {qty:g}: above the maximum lot {spec.max_lot:g}")
        steps = qty / spec.lot_step
        if abs(steps - round(steps)) > 1e-6:
            raise Rejected(
                f"Invalid quantity {qty:g}: must be a multiple of lot step {spec.lot_step:g}"
            )

    def _check_tick(self, spec: InstrumentSpec, name: str, price: float) -> None:
        if price <= 0:
            raise Rejected(f"Invalid {name} {price:g}: must be positive")
        tick = spec.tick_for(price)
        steps = price / tick
        if abs(steps - round(steps)) > 1e-6:
            raise Rejected(f"Invalid {name} {price:g}: not a multiple of tick size {tick:g}")

    def _protection_prices(
        self,
        spec: InstrumentSpec,
        side: str,
        ref: float,
        stop_loss: float | None,
        stop_loss_type: str | None,
        tr_stop_offset: float | None,
        take_profit: float | None,
        take_profit_type: str | None,
    ) -> tuple[float | None, float | None, float | None]:
        """(stop price, take-profit price, trailing distance) for a position opened at ``ref``."""
        sign = 1.0 if side == "buy" else -1.0
        sl_price = tp_price = trail = None
        if stop_loss_type == "trailingOffset":
            assert tr_stop_offset is not None
            trail = tr_stop_offset * spec.pip_size
            initial = (stop_loss if stop_loss is not None else tr_stop_offset) * spec.pip_size
            sl_price = ref - sign * initial
        elif stop_loss is not None:
            sl_price = (
                stop_loss
                if stop_loss_type == "absolute"
                else (ref - sign * stop_loss * spec.pip_size)
            )
        if take_profit is not None:
            tp_price = (
                take_profit
                if take_profit_type == "absolute"
                else (ref + sign * take_profit * spec.pip_size)
            )
        if sl_price is not None:
            sl_price = self.prices.round_to_tick(spec.tradable_instrument_id, sl_price)
        if tp_price is not None:
            tp_price = self.prices.round_to_tick(spec.tradable_instrument_id, tp_price)
        return sl_price, tp_price, trail

    def _validate_protection(
        self, spec: InstrumentSpec, side: str, ref: float, req: PlaceRequest
    ) -> None:
        if req.stop_loss is not None and req.stop_loss_type is None:
            raise Rejected("stopLossType is required when stopLoss is set")
        if req.stop_loss_type == "trailingOffset":
            if req.tr_stop_offset is None or req.tr_stop_offset <= 0:
                raise Rejected("trStopOffset (pips, > 0) is required for a trailingOffset stop")
        elif req.stop_loss_type is not None and req.stop_loss is None:
            raise Rejected("stopLoss is required when stopLossType is set")
        if req.take_profit is not None and req.take_profit_type is None:
            raise Rejected("takeProfitType is required when takeProfit is set")
        if req.take_profit_type is not None and req.take_profit is None:
            raise Rejected("takeProfit is required when takeProfitType is set")
        for name, value, kind in (
            ("stopLoss", req.stop_loss, req.stop_loss_type),
            ("takeProfit", req.take_profit, req.take_profit_type),
        ):
            if value is None:
                continue
            if kind == "absolute":
                self._check_tick(spec, name, value)
            elif value <= 0:
                raise Rejected(f"Invalid {name} offset {value:g}: must be positive")
        sl, tp, _ = self._protection_prices(
            spec,
            side,
            ref,
            req.stop_loss,
            req.stop_loss_type,
            req.tr_stop_offset,
            req.take_profit,
            req.take_profit_type,
        )
        if sl is not None and (sl >= ref if side == "buy" else sl <= ref):
            raise Rejected(f"Invalid stop loss {sl:g}: must be on the losing side of {ref:g}")
        if tp is not None and (tp <= ref if side == "buy" else tp >= ref):
            raise Rejected(f"Invalid take profit {tp:g}: must be on the winning side of {ref:g}")

    def place(self, account: SimAccount, req: PlaceRequest) -> SimOrder:
        try:
            spec = self.spec(req.tid)
        except KeyError:
            raise Rejected(f"Instrument {req.tid} not found") from None
        if req.route_id != spec.trade_route_id:
            raise Rejected(f"Route {req.route_id} is not a TRADE route of {spec.name}")
        if spec.symbol_status != "FULLY_OPEN":
            raise Rejected(f"Market is closed for {spec.name} ({spec.symbol_status})")
        expected = "IOC" if req.type == "market" else "GTC"
        if req.validity != expected:
            raise Rejected(
                f"Invalid TimeInForce {req.validity} for a {req.type} order: use {expected}"
            )
        self._check_qty(spec, req.qty)
        quote = self.prices.quote(req.tid)
        if req.type == "limit":
            if req.price is None:
                raise Rejected("price is required for a limit order")
            self._check_tick(spec, "price", req.price)
            ref = req.price
        elif req.type == "stop":
            if req.stop_price is None:
                raise Rejected("stopPrice is required for a stop order")
            self._check_tick(spec, "stopPrice", req.stop_price)
            ref = req.stop_price
        else:
            ref = quote.ask if req.side == "buy" else quote.bid
        self._validate_protection(spec, req.side, ref, req)
        needed = req.qty * spec.lot_size * ref / spec.leverage
        if needed > self.account_details(account)["availableFunds"] + _EPS:
            raise Rejected(f"Not enough money: margin {needed:.2f} exceeds available funds")

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
        if req.type == "market" or self._triggered(order, quote):
            self._fill(account, order, quote)
        else:
            self._rest(account, order)
        return order

    # -- working orders -------------------------------------------------------------------------

    def _rest(self, account: SimAccount, order: SimOrder) -> None:
        account.orders[order.id] = order
        self._working.setdefault(order.tid, {})[order.id] = order
        self._emit(account.id, self.open_order_message(order, "PENDING"))

    def _finish(self, account: SimAccount, order: SimOrder, status: str) -> None:
        order.status = status
        order.last_modified_ms = self.now_ms()
        account.orders.pop(order.id, None)
        self._working.get(order.tid, {}).pop(order.id, None)
        account.history.append(order)

    @staticmethod
    def _triggered(order: SimOrder, quote: Quote) -> bool:
        if order.type == "limit" and order.price is not None:
            return quote.ask <= order.price if order.side == "buy" else quote.bid >= order.price
        if order.type == "stop" and order.stop_price is not None:
            if order.side == "buy":
                return quote.ask >= order.stop_price
            return quote.bid <= order.stop_price
        return False

    def on_quote(self, tid: int) -> None:
        """Trail stops, then fill whatever the new quote triggers (in creation order)."""
        working = self._working.get(tid)
        if not working:
            return
        quote = self.prices.quote(tid)
        for order in list(working.values()):
            if order.trail_distance is not None and order.stop_price is not None:
                self._trail(order, quote)
        for order in sorted(working.values(), key=lambda o: (o.created_ms, o.id)):
            if order.is_open and order.id in working and self._triggered(order, quote):
                self._fill(self.accounts[order.account_id], order, quote)

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
            self._emit(order.account_id, self.open_order_message(order, "PENDING"))
            position = self.accounts[order.account_id].positions.get(order.position_id or "")
            if position is not None:
                self._emit(order.account_id, self.position_message(position))

    # -- fills ----------------------------------------------------------------------------------

    def _fill(self, account: SimAccount, order: SimOrder, quote: Quote) -> None:
        price = quote.ask if order.side == "buy" else quote.bid
        if order.role == ENTRY:
            self._open_position(account, order, price)
        else:
            position = account.positions.get(order.position_id or "")
            if position is None:  # its position is gone: the leg has nothing left to do
                self._finish(account, order, "Cancelled")
                self._emit(account.id, self.open_order_message(order, "CANCELLED"))
                return
            self._reduce_position(account, position, order, price, order.qty)

    def _record_fill(
        self, account: SimAccount, order: SimOrder, position_id: str, price: float, qty: float
    ) -> None:
        spec = self.spec(order.tid)
        order.filled_qty = qty
        order.avg_price = price
        order.position_id = position_id
        self._finish(account, order, "Filled")
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
        self._emit(account.id, self.open_order_message(order, "EXECUTED"))

    def _open_position(self, account: SimAccount, order: SimOrder, price: float) -> None:
        spec = self.spec(order.tid)
        position = SimPosition(
            id=self.new_id(),
            account_id=account.id,
            tid=order.tid,
            route_id=order.route_id,
            side=order.side,
            qty=order.qty,
            avg_price=price,
            open_ms=self.now_ms(),
            open_order_id=order.id,
            strategy_id=order.strategy_id,
        )
        account.positions[position.id] = position
        self._record_fill(account, order, position.id, price, order.qty)
        sl, tp, trail = self._protection_prices(
            spec,
            order.side,
            price,
            order.stop_loss,
            order.stop_loss_type,
            order.tr_stop_offset,
            order.take_profit,
            order.take_profit_type,
        )
        if sl is not None:
            position.stop_loss_id = self._add_leg(account, position, STOP_LOSS, sl, trail).id
        if tp is not None:
            position.take_profit_id = self._add_leg(account, position, TAKE_PROFIT, tp, None).id
        self._emit(account.id, self.position_message(position))
        self._emit(account.id, self.account_status_message(account))

    def _add_leg(
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
            side=_opposite(position.side),
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
        self._rest(account, leg)
        return leg

    def _reduce_position(
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
        self._record_fill(account, order, position.id, price, qty)
        position.qty = round(position.qty - qty, 10)
        if position.qty <= _EPS:
            del account.positions[position.id]
            for leg_id in (position.stop_loss_id, position.take_profit_id):
                leg = account.orders.get(leg_id or "")
                if leg is not None:
                    self._finish(account, leg, "Cancelled")
                    self._emit(account.id, self.open_order_message(leg, "CANCELLED"))
            self._emit(
                account.id,
                {
                    "type": "ClosePosition",
                    "accountId": account.id,
                    "positionId": position.id,
                    "closePrice": price_text(spec, price),
                    "closeDateTime": _iso_ms(order.last_modified_ms),
                },
            )
        else:
            for leg_id in (position.stop_loss_id, position.take_profit_id):
                leg = account.orders.get(leg_id or "")
                if leg is not None:
                    leg.qty = position.qty
                    leg.last_modified_ms = self.now_ms()
                    self._emit(account.id, self.open_order_message(leg, "PENDING"))
            self._emit(account.id, self.position_message(position))
        self._emit(account.id, self.account_status_message(account))

    # -- modify and cancel ----------------------------------------------------------------------

    def modify(self, account: SimAccount, order_id: str, change: OrderChange) -> SimOrder:
        order = self.find_order(account, order_id)
        if not order.is_open:
            raise Rejected(f"Order {order_id} is {order.status} and can no longer be modified")
        spec = self.spec(order.tid)
        if change.validity is not MISSING and change.validity is not None:
            expected = "IOC" if order.type == "market" else "GTC"
            if change.validity != expected:
                raise Rejected(f"Invalid TimeInForce {change.validity} for a {order.type} order")
        qty = change.qty if isinstance(change.qty, float) else order.qty
        self._check_qty(spec, qty)
        if order.role != ENTRY and abs(qty - order.qty) > _EPS:
            raise Rejected("The quantity of a stop-loss/take-profit order follows its position")
        price = order.price
        if isinstance(change.price, float):
            if order.type != "limit":
                raise Rejected(f"price cannot be set on a {order.type} order; use stopPrice")
            self._check_tick(spec, "price", change.price)
            price = change.price
        stop_price = order.stop_price
        if isinstance(change.stop_price, float):
            if order.type != "stop":
                raise Rejected(f"stopPrice cannot be set on a {order.type} order; use price")
            self._check_tick(spec, "stopPrice", change.stop_price)
            stop_price = change.stop_price
        sl, sl_type, tr = order.stop_loss, order.stop_loss_type, order.tr_stop_offset
        tp, tp_type = order.take_profit, order.take_profit_type
        if change.stop_loss is not MISSING:
            sl = change.stop_loss  # type: ignore[assignment]
            if sl is None:
                sl_type = None
        if change.stop_loss_type is not MISSING:
            sl_type = change.stop_loss_type  # type: ignore[assignment]
        if change.tr_stop_offset is not MISSING:
            tr = change.tr_stop_offset  # type: ignore[assignment]
        if change.take_profit is not MISSING:
            tp = change.take_profit  # type: ignore[assignment]
            if tp is None:
                tp_type = None
        if change.take_profit_type is not MISSING:
            tp_type = change.take_profit_type  # type: ignore[assignment]
        if order.role == ENTRY:
            ref = price if order.type == "limit" else stop_price
            assert ref is not None
            probe = PlaceRequest(
                order.tid,
                order.route_id,
                qty,
                order.side,
                order.type,
                order.validity,
                price,
                stop_price,
                sl,
                sl_type,
                tp,
                tp_type,
                tr,
                order.strategy_id,
            )
            self._validate_protection(spec, order.side, ref, probe)
        order.qty, order.price, order.stop_price = qty, price, stop_price
        order.stop_loss, order.stop_loss_type, order.tr_stop_offset = sl, sl_type, tr
        order.take_profit, order.take_profit_type = tp, tp_type
        order.last_modified_ms = self.now_ms()
        self._emit(account.id, self.open_order_message(order, "PENDING"))
        self.on_quote(order.tid)
        return order

    def cancel(self, account: SimAccount, order_id: str) -> None:
        order = self.find_order(account, order_id)
        if not order.is_open:
            raise Rejected(f"Order {order_id} is {order.status} and cannot be cancelled")
        self._finish(account, order, "Cancelled")
        self._emit(account.id, self.open_order_message(order, "CANCELLED"))
        if order.role in (STOP_LOSS, TAKE_PROFIT):
            position = account.positions.get(order.position_id or "")
            if position is not None:
                if position.stop_loss_id == order.id:
                    position.stop_loss_id = None
                if position.take_profit_id == order.id:
                    position.take_profit_id = None
                self._emit(account.id, self.position_message(position))
        self._emit(account.id, self.account_status_message(account))

    def cancel_all(self, account: SimAccount, tid: int | None) -> int:
        """Cancel working entry orders (SL/TP legs stay with their positions); returns how many."""
        targets = [
            o for o in account.orders.values() if o.role == ENTRY and (tid is None or o.tid == tid)
        ]
        for order in targets:
            self.cancel(account, order.id)
        return len(targets)

    # -- positions ------------------------------------------------------------------------------

    def close(self, account: SimAccount, position_id: str, qty: float) -> SimOrder:
        position = self.find_position(account, position_id)
        spec = self.spec(position.tid)
        close_qty = position.qty if qty <= _EPS else qty
        if close_qty > position.qty + _EPS:
            raise Rejected(
                f"Cannot close {close_qty:g} lots: position {position_id} has {position.qty:g}"
            )
        if qty > _EPS and close_qty < position.qty - _EPS:
            self._check_qty(spec, close_qty)
        now = self.now_ms()
        # The venue closes with an IOC market order; with unlimited liquidity it always fills.
        order = SimOrder(
            id=self.new_id(),
            account_id=account.id,
            tid=position.tid,
            route_id=position.route_id,
            qty=close_qty,
            side=_opposite(position.side),
            type="market",
            validity="IOC",
            created_ms=now,
            last_modified_ms=now,
            role=CLOSE,
            position_id=position.id,
            strategy_id=position.strategy_id,
        )
        quote = self.prices.quote(position.tid)
        price = quote.ask if order.side == "buy" else quote.bid
        self._reduce_position(account, position, order, price, close_qty)
        return order

    def close_all(self, account: SimAccount, tid: int | None, strategy_id: str | None) -> int:
        targets = [
            p
            for p in account.positions.values()
            if (tid is None or p.tid == tid)
            and (strategy_id is None or p.strategy_id == strategy_id)
        ]
        for position in targets:
            self.close(account, position.id, 0.0)
        return len(targets)

    def modify_position(
        self, account: SimAccount, position_id: str, change: PositionChange
    ) -> SimPosition:
        position = self.find_position(account, position_id)
        spec = self.spec(position.tid)
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
            self._check_tick(spec, "stopLoss", change.stop_loss)
            sl_price = change.stop_loss
            if sl_price >= exit_price if position.side == "buy" else sl_price <= exit_price:
                raise Rejected(f"Invalid stop loss {sl_price:g}: the market is at {exit_price:g}")
        tp_price: float | None = None
        if isinstance(change.take_profit, float):
            self._check_tick(spec, "takeProfit", change.take_profit)
            tp_price = change.take_profit
            if tp_price <= exit_price if position.side == "buy" else tp_price >= exit_price:
                raise Rejected(f"Invalid take profit {tp_price:g}: the market is at {exit_price:g}")
        if sl_given:
            self._set_leg(account, position, STOP_LOSS, sl_price, trail)
        if change.take_profit is not MISSING:
            self._set_leg(account, position, TAKE_PROFIT, tp_price, None)
        self._emit(account.id, self.position_message(position))
        return position

    def _set_leg(
        self,
        account: SimAccount,
        position: SimPosition,
        role: str,
        price: float | None,
        trail: float | None,
    ) -> None:
        leg_id = position.stop_loss_id if role == STOP_LOSS else position.take_profit_id
        leg = account.orders.get(leg_id or "")
        if price is None:
            if leg is not None:
                self._finish(account, leg, "Cancelled")
                self._emit(account.id, self.open_order_message(leg, "CANCELLED"))
            new_id = None
        elif leg is None:
            new_id = self._add_leg(account, position, role, price, trail).id
        else:
            if role == STOP_LOSS:
                leg.stop_price = price
                leg.trail_distance = trail
            else:
                leg.price = price
            leg.last_modified_ms = self.now_ms()
            self._emit(account.id, self.open_order_message(leg, "PENDING"))
            new_id = leg.id
        if role == STOP_LOSS:
            position.stop_loss_id = new_id
        else:
            position.take_profit_id = new_id

    # -- stream vocabulary (Streams API §10.3) ---------------------------------------------------

    def account_status_message(self, account: SimAccount) -> dict[str, Any]:
        details = self.account_details(account)
        return {
            "type": "AccountStatus",
            "accountId": account.id,
            "currency": account.currency,
            "balance": money_text(details["balance"]),
            "equity": money_text(details["projectedBalance"]),
            "marginAvailable": money_text(details["availableFunds"]),
            "marginUsed": money_text(details["initialMarginReq"]),
            "blockedBalance": money_text(details["blockedBalance"]),
            "credit": "0.00",
        }

    def position_message(self, position: SimPosition) -> dict[str, Any]:
        spec = self.spec(position.tid)
        account = self.accounts[position.account_id]
        sl = account.orders.get(position.stop_loss_id or "")
        tp = account.orders.get(position.take_profit_id or "")
        return {
            "type": "Position",
            "accountId": position.account_id,
            "positionId": position.id,
            "lots": qty_text(spec, position.qty),
            "lotSize": plain_text(spec.lot_size),
            "units": plain_text(position.qty * spec.lot_size),
            "instrument": spec.name,
            "openPrice": price_text(spec, position.avg_price),
            "openDateTime": _iso_ms(position.open_ms),
            "openOrderId": position.open_order_id,
            "stopLossOrderId": position.stop_loss_id,
            "stopLossLimit": price_text(spec, sl.stop_price) if sl is not None else None,
            "takeProfitOrderId": position.take_profit_id,
            "takeProfitLimit": price_text(spec, tp.price) if tp is not None else None,
            "maintMargin": money_text(self.margin(position) / 2),
            "side": position.side.upper(),
            "fee": "0.00",
            "swaps": "0.00",
        }

    def open_order_message(self, order: SimOrder, status: str) -> dict[str, Any]:
        spec = self.spec(order.tid)
        price = (
            order.avg_price
            if status == "EXECUTED"
            else (order.price if order.type == "limit" else order.stop_price)
        )
        return {
            "type": "OpenOrder",
            "accountId": order.account_id,
            "orderId": order.id,
            "instrument": spec.name,
            "amount": qty_text(spec, order.qty),
            "lotSize": plain_text(spec.lot_size),
            "side": order.side.upper(),
            "price": price_text(spec, price),
            "status": status,
        }
