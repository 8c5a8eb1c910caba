"""The checks that need market knowledge: lot size and step, tick size, stop-loss and take-profit
on the right side of the price. A failed check is a :class:`Rejected` (HTTP 200 ``s=error``)."""

from __future__ import annotations

from sandbox.errors import Rejected
from sandbox.instruments import InstrumentSpec
from sandbox.models import ENTRY, SimOrder
from sandbox.order_rules import MISSING, OrderChange, PlaceRequest
from sandbox.prices import PriceBook

EPS = 1e-9


def check_qty(spec: InstrumentSpec, qty: float) -> None:
    if qty <= 0:
        raise Rejected(f"Invalid quantity {qty:g}: must be positive")
    if qty < spec.min_lot - EPS:
        raise Rejected(f"Invalid quantity {qty:g}: below the minimum lot {spec.min_lot:g}")
    if qty > spec.max_lot + EPS:
        raise Rejected(f"Invalid quantity {qty:g}: above the maximum lot {spec.max_lot:g}")
    steps = qty / spec.lot_step
    if abs(steps - round(steps)) > 1e-6:
        raise Rejected(
            f"Invalid quantity {qty:g}: must be a multiple of lot step {spec.lot_step:g}"
        )


def check_tick(spec: InstrumentSpec, name: str, price: float) -> None:
    if price <= 0:
        raise Rejected(f"Invalid {name} {price:g}: must be positive")
    tick = spec.tick_for(price)
    steps = price / tick
    if abs(steps - round(steps)) > 1e-6:
        raise Rejected(f"Invalid {name} {price:g}: not a multiple of tick size {tick:g}")


def protection_prices(
    prices: PriceBook,
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
            stop_loss if stop_loss_type == "absolute" else (ref - sign * stop_loss * spec.pip_size)
        )
    if take_profit is not None:
        tp_price = (
            take_profit
            if take_profit_type == "absolute"
            else (ref + sign * take_profit * spec.pip_size)
        )
    if sl_price is not None:
        sl_price = prices.round_to_tick(spec.tradable_instrument_id, sl_price)
    if tp_price is not None:
        tp_price = prices.round_to_tick(spec.tradable_instrument_id, tp_price)
    return sl_price, tp_price, trail


def validate_protection(
    prices: PriceBook, spec: InstrumentSpec, side: str, ref: float, req: PlaceRequest
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
            check_tick(spec, name, value)
        elif value <= 0:
            raise Rejected(f"Invalid {name} offset {value:g}: must be positive")
    sl, tp, _ = protection_prices(
        prices,
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


def apply_change(
    prices: PriceBook, spec: InstrumentSpec, order: SimOrder, change: OrderChange
) -> None:
    """Check a PATCH /trade/orders/{id} against the working ``order`` and apply it; a failed
    check raises before anything changes."""
    if change.validity is not MISSING and change.validity is not None:
        expected = "IOC" if order.type == "market" else "GTC"
        if change.validity != expected:
            raise Rejected(f"Invalid TimeInForce {change.validity} for a {order.type} order")
    qty = change.qty if isinstance(change.qty, float) else order.qty
    check_qty(spec, qty)
    if order.role != ENTRY and abs(qty - order.qty) > EPS:
        raise Rejected("The quantity of a stop-loss/take-profit order follows its position")
    if qty <= order.filled_qty + EPS:
        raise Rejected(f"Invalid quantity {qty:g}: {order.filled_qty:g} lots are filled already")
    price = order.price
    if isinstance(change.price, float):
        if order.type != "limit":
            raise Rejected(f"price cannot be set on a {order.type} order; use stopPrice")
        check_tick(spec, "price", change.price)
        price = change.price
    stop_price = order.stop_price
    if isinstance(change.stop_price, float):
        if order.type != "stop":
            raise Rejected(f"stopPrice cannot be set on a {order.type} order; use price")
        check_tick(spec, "stopPrice", change.stop_price)
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
        validate_protection(prices, spec, order.side, ref, probe)
    order.qty, order.price, order.stop_price = qty, price, stop_price
    order.stop_loss, order.stop_loss_type, order.tr_stop_offset = sl, sl_type, tr
    order.take_profit, order.take_profit_type = tp, tp_type
