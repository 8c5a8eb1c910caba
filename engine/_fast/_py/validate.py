"""Order pre-validation (pure-Python twin of ``engine._fast.validate``).

One call per order: :func:`check_order` returns ``0`` when the order may be sent, otherwise a
:class:`engine._fast.codes.RejectCode` value; :func:`engine._fast.reasons.reject_reason` turns a
code into a sentence, and is only called on the rejection path.
"""

from __future__ import annotations

import math

from engine._fast.codes import GRID_TOLERANCE, MAX_TAG_LENGTH
from engine._fast.reasons import reject_reason
from engine.model.domain import OrderRequest, OrderType, ProtectionType, Side, Validity

__all__ = ["check_order", "on_grid", "reference_price", "reject_reason", "tick_for"]

_NAN = math.nan


def on_grid(value: float, step: float) -> bool:
    """True when ``value`` is an integer multiple of ``step`` (within GRID_TOLERANCE of a step)."""
    if step <= 0.0:
        return True
    n = value / step
    return abs(n - math.floor(n + 0.5)) <= GRID_TOLERANCE


def tick_for(tiers: tuple[tuple[float, float], ...], price: float) -> float:
    """The tick size of the tier ``price`` falls in (tiers sorted by their left range limit)."""
    if not tiers:
        return 0.0
    tick = tiers[0][1]
    for left, size in tiers:
        if price >= left:
            tick = size
        else:
            break
    return tick


def reference_price(req: OrderRequest, bid: float, ask: float) -> float:
    """The price a position would open at; SL/TP must sit on its correct side (NaN: unknown)."""
    t = req.type
    if t is OrderType.MARKET:
        if req.side is Side.BUY:
            return ask if math.isfinite(ask) else bid
        return bid if math.isfinite(bid) else ask
    if t is OrderType.STOP:
        return _NAN if req.stop_price is None else req.stop_price
    return _NAN if req.price is None else req.price


def _price_code(
    value: float | None,
    tiers: tuple[tuple[float, float], ...],
    missing: int,
    invalid: int,
    off_tick: int,
) -> int:
    if value is None:
        return missing
    if not math.isfinite(value) or value <= 0.0:
        return invalid
    if not on_grid(value, tick_for(tiers, value)):
        return off_tick
    return 0


def check_order(
    req: OrderRequest,
    bid: float = _NAN,
    ask: float = _NAN,
    account_enabled: bool = True,
    max_tag_length: int = MAX_TAG_LENGTH,
) -> int:
    """0 when ``req`` may be sent to the venue, else the first rule it breaks (a RejectCode).
    ``max_tag_length`` is the venue's declared strategy tag limit."""
    if not account_enabled:
        return 1
    inst = req.instrument
    qty = req.qty
    if not math.isfinite(qty):
        return 2
    if qty <= 0.0:
        return 3
    step = inst.lot_step
    slack = GRID_TOLERANCE * step if step > 0.0 else 0.0
    if qty < inst.min_lot - slack:
        return 4
    if qty > inst.max_lot + slack:
        return 5
    if not on_grid(qty, step):
        return 6
    t = req.type
    if req.validity is not (Validity.IOC if t is OrderType.MARKET else Validity.GTC):
        return 7
    tiers = inst.tick_sizes
    if t is OrderType.LIMIT or t is OrderType.STOP_LIMIT:
        code = _price_code(req.price, tiers, 8, 9, 10)
        if code:
            return code
    if t is OrderType.STOP or t is OrderType.STOP_LIMIT:
        code = _price_code(req.stop_price, tiers, 11, 12, 13)
        if code:
            return code
    buy = req.side is Side.BUY
    if t is OrderType.STOP_LIMIT:
        limit = req.price
        stop = req.stop_price
        assert limit is not None and stop is not None  # checked above
        if (buy and limit < stop) or (not buy and limit > stop):
            return 14
    ref = reference_price(req, bid, ask)
    sl = req.stop_loss
    sl_type = req.stop_loss_type
    if sl_type is ProtectionType.TRAILING_OFFSET:
        tr = req.trailing_offset
        if tr is None or not math.isfinite(tr) or tr <= 0.0:
            return 19
        if sl is not None and (not math.isfinite(sl) or sl <= 0.0):
            return 15
    elif sl is not None:
        if not math.isfinite(sl):
            return 15
        if sl_type is ProtectionType.OFFSET:
            if sl <= 0.0:
                return 16
        else:
            if sl <= 0.0:
                return 15
            if not on_grid(sl, tick_for(tiers, sl)):
                return 17
            if ref == ref and ((buy and sl >= ref) or (not buy and sl <= ref)):
                return 18
    tp = req.take_profit
    if tp is not None:
        tp_type = req.take_profit_type
        if tp_type is ProtectionType.TRAILING_OFFSET:
            return 24
        if not math.isfinite(tp):
            return 20
        if tp_type is ProtectionType.OFFSET:
            if tp <= 0.0:
                return 21
        else:
            if tp <= 0.0:
                return 20
            if not on_grid(tp, tick_for(tiers, tp)):
                return 22
            if ref == ref and ((buy and tp <= ref) or (not buy and tp >= ref)):
                return 23
    if len(req.strategy_tag) > max_tag_length:
        return 25
    return 0
