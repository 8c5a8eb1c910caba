# cython: language_level=3
"""Order pre-validation, compiled. Behaviour is defined by the twin engine/_fast/_py/validate.py;
read that for the rules. Here every check runs on C doubles, the enum members are compared by
identity against module-level references, and nothing is allocated on the accept path.

``reject_reason`` is compiled here too, written apart from its pure twin
(engine/_fast/reasons.py): it dispatches on the C codes of validate.pxd and reuses this module's
tick lookup, so tests/fast/test_differential.py compares two implementations of every sentence."""

from libc.math cimport NAN, fabs, floor, isfinite

import math

from engine._fast.codes import GRID_TOLERANCE as _GRID_TOLERANCE
from engine._fast.codes import MAX_TAG_LENGTH as _MAX_TAG_LENGTH
from engine.model.domain import OrderType, ProtectionType, Side, Validity

__all__ = ["check_order", "on_grid", "reference_price", "reject_reason", "tick_for"]

cdef double TOL = _GRID_TOLERANCE
cdef Py_ssize_t MAX_TAG = _MAX_TAG_LENGTH
cdef object MARKET = OrderType.MARKET
cdef object LIMIT = OrderType.LIMIT
cdef object STOP = OrderType.STOP
cdef object STOP_LIMIT = OrderType.STOP_LIMIT
cdef object BUY = Side.BUY
cdef object IOC = Validity.IOC
cdef object GTC = Validity.GTC
cdef object OFFSET = ProtectionType.OFFSET
cdef object TRAILING = ProtectionType.TRAILING_OFFSET


cdef bint c_on_grid(double value, double step) noexcept nogil:
    if step <= 0.0:
        return True
    cdef double n = value / step
    return fabs(n - floor(n + 0.5)) <= TOL


cdef double c_tick_for(tuple tiers, double price) except? -1.0:
    cdef double tick
    cdef tuple tier
    if not tiers:
        return 0.0
    tick = (<tuple>tiers[0])[1]
    for tier in tiers:
        if price >= <double>tier[0]:
            tick = tier[1]
        else:
            break
    return tick


def on_grid(double value, double step) -> bool:
    return c_on_grid(value, step)


def tick_for(tuple tiers, double price) -> float:
    return c_tick_for(tiers, price)


cdef double c_reference(object req, double bid, double ask):
    t = req.type
    if t is MARKET:
        if req.side is BUY:
            return ask if isfinite(ask) else bid
        return bid if isfinite(bid) else ask
    if t is STOP:
        v = req.stop_price
    else:
        v = req.price
    return NAN if v is None else <double>v


def reference_price(object req, double bid, double ask) -> float:
    return c_reference(req, bid, ask)


cdef inline int c_price_code(object value, tuple tiers, int missing, int invalid, int off_tick):
    if value is None:
        return missing
    cdef double v = value
    if not isfinite(v) or v <= 0.0:
        return invalid
    if not c_on_grid(v, c_tick_for(tiers, v)):
        return off_tick
    return 0


cpdef int check_order(
    object req, double bid=NAN, double ask=NAN, bint account_enabled=True,
    Py_ssize_t max_tag_length=MAX_TAG
) except -1:
    """0 when ``req`` may be sent to the venue, else the first rule it breaks (a RejectCode)."""
    cdef double qty, step, slack, sl, tp, tr, ref, limit, stop
    cdef int code
    cdef bint buy
    if not account_enabled:
        return ACCOUNT_DISABLED
    inst = req.instrument
    qty = req.qty
    if not isfinite(qty):
        return QTY_NOT_FINITE
    if qty <= 0.0:
        return QTY_NOT_POSITIVE
    step = inst.lot_step
    slack = TOL * step if step > 0.0 else 0.0
    if qty < <double>inst.min_lot - slack:
        return QTY_BELOW_MIN_LOT
    if qty > <double>inst.max_lot + slack:
        return QTY_ABOVE_MAX_LOT
    if not c_on_grid(qty, step):
        return QTY_OFF_LOT_STEP
    t = req.type
    if req.validity is not (IOC if t is MARKET else GTC):
        return VALIDITY_MISMATCH
    cdef tuple tiers = inst.tick_sizes
    if t is LIMIT or t is STOP_LIMIT:
        code = c_price_code(req.price, tiers, PRICE_MISSING, PRICE_INVALID, PRICE_OFF_TICK)
        if code:
            return code
    if t is STOP or t is STOP_LIMIT:
        code = c_price_code(
            req.stop_price, tiers, STOP_PRICE_MISSING, STOP_PRICE_INVALID, STOP_PRICE_OFF_TICK
        )
        if code:
            return code
    buy = req.side is BUY
    if t is STOP_LIMIT:
        limit = req.price
        stop = req.stop_price
        if (buy and limit < stop) or (not buy and limit > stop):
            return STOP_LIMIT_INCONSISTENT
    ref = c_reference(req, bid, ask)
    sl_obj = req.stop_loss
    sl_type = req.stop_loss_type
    if sl_type is TRAILING:
        tr_obj = req.trailing_offset
        if tr_obj is None:
            return TRAILING_OFFSET_MISSING
        tr = tr_obj
        if not isfinite(tr) or tr <= 0.0:
            return TRAILING_OFFSET_MISSING
        if sl_obj is not None:
            sl = sl_obj
            if not isfinite(sl) or sl <= 0.0:
                return SL_INVALID
    elif sl_obj is not None:
        sl = sl_obj
        if not isfinite(sl):
            return SL_INVALID
        if sl_type is OFFSET:
            if sl <= 0.0:
                return SL_OFFSET_NOT_POSITIVE
        else:
            if sl <= 0.0:
                return SL_INVALID
            if not c_on_grid(sl, c_tick_for(tiers, sl)):
                return SL_OFF_TICK
            if ref == ref and ((buy and sl >= ref) or (not buy and sl <= ref)):
                return SL_WRONG_SIDE
    tp_obj = req.take_profit
    if tp_obj is not None:
        tp_type = req.take_profit_type
        if tp_type is TRAILING:
            return TP_TRAILING_NOT_ALLOWED
        tp = tp_obj
        if not isfinite(tp):
            return TP_INVALID
        if tp_type is OFFSET:
            if tp <= 0.0:
                return TP_OFFSET_NOT_POSITIVE
        else:
            if tp <= 0.0:
                return TP_INVALID
            if not c_on_grid(tp, c_tick_for(tiers, tp)):
                return TP_OFF_TICK
            if ref == ref and ((buy and tp <= ref) or (not buy and tp >= ref)):
                return TP_WRONG_SIDE
    if len(<str>req.strategy_tag) > max_tag_length:
        return TAG_TOO_LONG
    return OK


# -- rejection reasons (the rejection path only: plain Python objects are fine here) ------------


cdef str _num(object x):
    return "none" if x is None else format(x, ".10g")


cdef str _nearest(double value, double step):
    # Python's division and math.floor, as the twin: a zero step, or an infinite or NaN quotient,
    # raises the same error there and here (C would carry on with inf or nan).
    if step == 0.0:
        raise ZeroDivisionError("float division by zero")
    n = math.floor(value / step + TOL)
    return f"{_num(n * step)} or {_num((n + 1) * step)}"


cdef str _tick_reason(str label, double value, object req, str name):
    cdef double tick = c_tick_for(req.instrument.tick_sizes, value)
    return (
        f"{label} {_num(value)} is not on the tick {_num(tick)} of {name}"
        f" (nearest valid: {_nearest(value, tick)})"
    )


cdef str _reference_words(object req, double bid, double ask):
    t = req.type
    if t is STOP:
        return f"the stop price {_num(req.stop_price)}"
    if t is not MARKET:
        return f"the limit price {_num(req.price)}"
    cdef bint buy = req.side is BUY
    cdef double quoted = ask if buy else bid
    if isfinite(quoted):
        return f"the current {'ask' if buy else 'bid'} {_num(quoted)}"
    return f"the current {'bid' if buy else 'ask'} {_num(bid if buy else ask)}"


cdef str _wrong_side(object req, str what, str buy_rel, str sell_rel, object value, double bid,
                     double ask):
    rel = buy_rel if req.side is BUY else sell_rel
    return (
        f"a {req.side.wire} order's {what} must be {rel} {_reference_words(req, bid, ask)};"
        f" got {_num(value)}"
    )


def reject_reason(
    int code, object req, double bid=NAN, double ask=NAN, Py_ssize_t max_tag_length=MAX_TAG
) -> str:
    """The sentence for ``code`` (from ``check_order`` on the same inputs)."""
    if code < OK or code > TAG_TOO_LONG:
        raise ValueError(f"{code!r} is not a valid RejectCode")
    inst = req.instrument
    name = inst.name
    kind = req.type.wire
    if code == OK:
        return "the order passed pre-validation"
    if code == ACCOUNT_DISABLED:
        return f"account {req.account} is disabled for trading: enable it before sending orders"
    if code == QTY_NOT_FINITE:
        return f"qty must be a finite number of lots, got {_num(req.qty)}"
    if code == QTY_NOT_POSITIVE:
        return f"qty must be positive, got {_num(req.qty)} lots"
    if code == QTY_BELOW_MIN_LOT:
        return f"qty {_num(req.qty)} is below the minimum lot {_num(inst.min_lot)} for {name}"
    if code == QTY_ABOVE_MAX_LOT:
        return f"qty {_num(req.qty)} is above the maximum lot {_num(inst.max_lot)} for {name}"
    if code == QTY_OFF_LOT_STEP:
        return (
            f"qty {_num(req.qty)} is not a multiple of the lot step {_num(inst.lot_step)}"
            f" for {name} (nearest valid: {_nearest(req.qty, inst.lot_step)})"
        )
    if code == VALIDITY_MISMATCH:
        return (
            f"a {kind} order must have validity {'IOC' if req.type is MARKET else 'GTC'} on"
            f" TradeLocker, got {req.validity.wire}"
        )
    if code == PRICE_MISSING or code == STOP_PRICE_MISSING:
        return f"a {kind} order needs a {'limit' if code == PRICE_MISSING else 'stop'} price"
    if code == PRICE_INVALID:
        return f"the limit price must be a positive finite number, got {_num(req.price)}"
    if code == STOP_PRICE_INVALID:
        return f"the stop price must be a positive finite number, got {_num(req.stop_price)}"
    if code == PRICE_OFF_TICK:
        return _tick_reason("limit price", req.price or 0.0, req, name)
    if code == STOP_PRICE_OFF_TICK:
        return _tick_reason("stop price", req.stop_price or 0.0, req, name)
    if code == STOP_LIMIT_INCONSISTENT:
        return (
            f"a {req.side.wire} stop-limit needs its limit price"
            f" {'at or above' if req.side is BUY else 'at or below'} its stop price; got limit"
            f" {_num(req.price)}, stop {_num(req.stop_price)}"
        )
    if code == SL_INVALID or code == TP_INVALID:
        what, value = ("stop-loss", req.stop_loss) if code == SL_INVALID else (
            "take-profit", req.take_profit
        )
        return f"{what} must be a positive finite number, got {_num(value)}"
    if code == SL_OFFSET_NOT_POSITIVE or code == TP_OFFSET_NOT_POSITIVE:
        what, value = ("stop-loss", req.stop_loss) if code == SL_OFFSET_NOT_POSITIVE else (
            "take-profit", req.take_profit
        )
        return f"a {what} offset must be positive, got {_num(value)}"
    if code == SL_OFF_TICK:
        return _tick_reason("stop-loss", req.stop_loss or 0.0, req, name)
    if code == TP_OFF_TICK:
        return _tick_reason("take-profit", req.take_profit or 0.0, req, name)
    if code == SL_WRONG_SIDE:
        return _wrong_side(req, "stop-loss", "below", "above", req.stop_loss, bid, ask)
    if code == TP_WRONG_SIDE:
        return _wrong_side(req, "take-profit", "above", "below", req.take_profit, bid, ask)
    if code == TRAILING_OFFSET_MISSING:
        return (
            f"a {TRAILING.wire} stop-loss needs a positive trailing offset,"
            f" got {_num(req.trailing_offset)}"
        )
    if code == TP_TRAILING_NOT_ALLOWED:
        return "take-profit cannot be trailing: use absolute or offset"
    return (
        f"strategy tag is {len(req.strategy_tag)} characters; the venue accepts at most"
        f" {max_tag_length}"
    )
