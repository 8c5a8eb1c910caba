# cython: language_level=3
"""Signals, compiled: bytes to a validated Signal. Behaviour is defined by the twin,
engine/_fast/_py/decode.py (read it for the rules and the reasons); the differential tests in
tests/fast/test_decode_differential.py hold the two to the same Signal, or the same SignalError
reason and signal_id, on any input.

orjson still parses the JSON. What is compiled is everything after it: one pass over the object's
items drops each value (a borrowed reference) into a C slot by field index, so an unknown field is
found on the way and absent fields cost nothing; the type, range and per-action checks then run on
C locals, enums come from exact-spelling dicts (the twin's parser is called only on a miss, so odd
spellings still get the twin's answer), and the Signal is built once at the end. Every error path
formats its reason exactly as the twin does.
"""

from cpython.dict cimport PyDict_GetItem, PyDict_Next, PyDict_Size
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_FromDouble
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_FromDouble
from cpython.object cimport PyObject
from libc.math cimport isfinite

import orjson

from engine._fast._py.decode import _KNOWN_FIELDS, _PRIORITY_BY_NAME
from engine._fast._py.decode import MAX_ID_LENGTH as _MAX_ID_LENGTH
from engine._fast._py.decode import MAX_QTY_LOTS
from engine._fast._py.decode import MAX_SIGNAL_BYTES as _MAX_SIGNAL_BYTES
from engine.model.domain import Action, OrderType, ProtectionType, Side, Signal
from engine.model.errors import SignalError

__all__ = ["MAX_QTY_LOTS", "decode", "peek_id"]

cdef Py_ssize_t MAX_SIGNAL_BYTES = _MAX_SIGNAL_BYTES
cdef Py_ssize_t MAX_ID_LENGTH = _MAX_ID_LENGTH
cdef object _loads = orjson.loads
cdef object _JSONDecodeError = orjson.JSONDecodeError

# ts magnitudes (the twin's _MS_RANGE / _NS_RANGE). All four are exact doubles, so comparing a C
# double against them agrees with Python's exact float/int comparison.
cdef long long MS_LO = 10**11
cdef long long MS_HI = 10**14
cdef long long NS_LO = 10**17
cdef double NS_HI_F = 1e20
# Above this many ms, ms * 1e6 leaves int64 and the product is taken on Python ints.
cdef long long MS_C_MAX = 9_223_372_036_854

cdef enum:  # field index (a slot in _build)
    F_ID
    F_TS
    F_ACCOUNT
    F_ACTION
    F_SYMBOL
    F_INSTRUMENT_ID
    F_SIDE
    F_TYPE
    F_QTY
    F_PRICE
    F_STOP_PRICE
    F_STOP_LOSS
    F_TAKE_PROFIT
    F_SL_TYPE
    F_TP_TYPE
    F_TRAILING_OFFSET
    F_ORDER_ID
    F_POSITION_ID
    F_REF
    F_PRIORITY
    F_RISK_PCT
    F_RISK_AMOUNT
    N_FIELDS

cdef tuple _FIELD_NAMES = (
    "id", "ts", "account", "action", "symbol", "instrument_id", "side", "type", "qty", "price",
    "stop_price", "stop_loss", "take_profit", "sl_type", "tp_type", "trailing_offset",
    "order_id", "position_id", "ref", "priority", "risk_pct", "risk_amount",
)
cdef dict _FIELD_INDEX = {name: i for i, name in enumerate(_FIELD_NAMES)}
assert len(_FIELD_NAMES) == N_FIELDS and frozenset(_FIELD_NAMES) == _KNOWN_FIELDS


cdef dict _exact(object parse, object spellings):
    """Spelling -> member, each entry produced by the twin's own parser (so a hit can never
    disagree with it)."""
    return {s: parse(s) for s in spellings}


cdef dict _ACTIONS = _exact(
    Action.parse, [a.wire for a in Action] + [a.name for a in Action]
)
cdef dict _SIDES = _exact(Side.parse, ["buy", "sell", "BUY", "SELL", "Buy", "Sell"])
cdef dict _ORDER_TYPES = _exact(
    OrderType.parse,
    [t.wire for t in OrderType] + [t.name for t in OrderType] + ["stop-limit"],
)
cdef dict _PROTECTIONS = _exact(
    ProtectionType.parse,
    [p.wire for p in ProtectionType]
    + [p.name for p in ProtectionType]
    + ["trailing_offset", "trailing", "TRAILING"],
)
cdef dict _PRIORITIES = _PRIORITY_BY_NAME
# Bound once: a class attribute lookup per field per signal is measurable at this scale.
cdef object PARSE_ACTION = Action.parse
cdef object PARSE_SIDE = Side.parse
cdef object PARSE_ORDER_TYPE = OrderType.parse
cdef object PARSE_PROTECTION = ProtectionType.parse
cdef object SIGNAL = Signal

cdef object PLACE = Action.PLACE
cdef object MODIFY = Action.MODIFY
cdef object CANCEL = Action.CANCEL
cdef object MODIFY_POSITION = Action.MODIFY_POSITION
cdef object CLOSE = Action.CLOSE
cdef object REVERSE = Action.REVERSE
cdef object MARKET = OrderType.MARKET
cdef object LIMIT = OrderType.LIMIT
cdef object STOP = OrderType.STOP
cdef object STOP_LIMIT = OrderType.STOP_LIMIT
cdef object TRAILING = ProtectionType.TRAILING_OFFSET


cdef inline object _slot(PyObject* p):
    return None if p is NULL else <object>p


# --- field readers (each raises the twin's reason, with the signal id) ---------------------------


cdef object _str_field(object value, str key, bint required, object sid):
    if value is None:
        if required:
            raise SignalError(f"missing required field {key!r}", sid)
        return None
    if not isinstance(value, str) or not value:
        if required:
            raise SignalError(f"{key!r} must be a non-empty string", sid)
        raise SignalError(f"{key!r} must be a non-empty string when given", sid)
    return value


cdef object _enum_field(object value, str key, dict exact, object parse, object sid):
    """None when absent; the caller enforces a required field."""
    cdef PyObject* hit
    if value is None:
        return None
    if not isinstance(value, str):
        raise SignalError(f"{key!r} must be a string", sid)
    hit = PyDict_GetItem(exact, value)
    if hit is not NULL:
        return <object>hit
    try:
        return parse(value)
    except ValueError as exc:
        raise SignalError(f"{key!r}: {exc}", sid) from None


cdef object _number_field(object value, str key, double* out, object sid):
    """The value as a Python float for the Signal (None when absent); the C double in ``out``."""
    cdef double d
    if value is None:
        return None
    if isinstance(value, float):
        d = PyFloat_AS_DOUBLE(value)
        number = value
    elif isinstance(value, int) and not isinstance(value, bool):
        d = value  # PyLong_AsDouble: the same rounding as float(value)
        number = PyFloat_FromDouble(d)
    else:
        raise SignalError(f"{key!r} must be a JSON number, got {type(value).__name__}", sid)
    if not isfinite(d):
        raise SignalError(f"{key!r} must be a finite number", sid)
    out[0] = d
    return number


cdef object _ts_field(object value, object sid):
    cdef double d
    cdef long long v
    cdef int overflow = 0
    if value is None:
        return 0
    if isinstance(value, float):
        d = PyFloat_AS_DOUBLE(value)
        if not isfinite(d):
            raise SignalError("'ts' must be a finite number", sid)
        if MS_LO <= d < MS_HI:
            return PyLong_FromDouble(d * 1_000_000.0)  # int(value * 1_000_000), as the twin
        if NS_LO <= d < NS_HI_F:
            return PyLong_FromDouble(d)
    elif isinstance(value, int) and not isinstance(value, bool):
        v = PyLong_AsLongLongAndOverflow(value, &overflow)
        if overflow == 0:
            if MS_LO <= v < MS_HI:
                if v <= MS_C_MAX:
                    return v * 1_000_000
                return value * 1_000_000
            if v >= NS_LO:  # and below 1e20, as every int64 is
                return value
        elif overflow > 0 and value < 10**20:
            return value
    else:
        raise SignalError(
            "'ts' must be an epoch time in milliseconds or nanoseconds (a number)", sid
        )
    raise SignalError(
        f"'ts' {value!r} is neither epoch milliseconds (~1.7e12) nor epoch nanoseconds (~1.7e18): "
        "seconds and microseconds are not accepted",
        sid,
    )


cdef object _instrument_id_field(object value, object sid):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SignalError(
            "'instrument_id' must be a positive integer (the TradeLocker tradable id)", sid
        )
    return value


cdef bint _all_digits(str text):
    cdef Py_UCS4 ch
    if not text:
        return False
    for ch in text:
        if not ch.isdigit():  # str.isdigit, one character at a time: Unicode digits count too
            return False
    return True


cdef object _venue_id_field(object value, str key, object sid):
    cdef Py_ssize_t n
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return str(value)
    if isinstance(value, str):
        n = len(<str>value)
        if n <= 20 and _all_digits(value):
            return value
        if n <= 40 and (<str>value).startswith("emu-"):
            return value  # an engine-held (emulated stop-limit) order
    raise SignalError(
        f"{key!r} must be the venue's numeric id as a string of digits (or an engine emu- id)",
        sid,
    )


cdef object _priority_field(object value, object sid):
    cdef PyObject* hit
    if value is None:
        return None
    if isinstance(value, str):
        hit = PyDict_GetItem(_PRIORITIES, value)
        if hit is not NULL:
            return <object>hit
        hit = PyDict_GetItem(_PRIORITIES, (<str>value).lower())
        if hit is not NULL:
            return <object>hit
    names = ", ".join(_PRIORITIES)
    raise SignalError(f"'priority' must be one of {names}; got {value!r}", sid)


# --- the decoder ---------------------------------------------------------------------------------


def decode(
    object payload, object arrived_ns=0, object targets=None, double max_qty=MAX_QTY_LOTS
):
    """Decode ``payload`` into a validated Signal, or raise SignalError (see the twin)."""
    return c_decode(payload, arrived_ns, targets, max_qty)


cdef object c_decode(object payload, object arrived_ns, object targets, double max_qty):
    cdef Py_ssize_t size = len(payload)
    if size > MAX_SIGNAL_BYTES:
        raise SignalError(
            f"signal is {size} bytes, over the {MAX_SIGNAL_BYTES // 1024} KiB limit: "
            "send one signal per message"
        )
    try:
        obj = _loads(payload)
    except _JSONDecodeError as exc:
        raise SignalError(f"signal is not valid JSON ({exc.msg} at byte {exc.pos})") from None
    if not isinstance(obj, dict):
        raise SignalError(f"signal must be a JSON object, got {type(obj).__name__}")
    return _build(<dict>obj, payload, arrived_ns, targets, max_qty)


cdef object _build(dict obj, object payload, object arrived_ns, object targets, double max_qty):
    # Borrowed references into ``obj``, which outlives this call.
    cdef PyObject* slots[N_FIELDS]
    cdef PyObject* key
    cdef PyObject* value
    cdef PyObject* index
    cdef Py_ssize_t pos = 0
    cdef bint unknown = False
    cdef int i
    cdef double qty = 0.0, price = 0.0, stop_price = 0.0, stop_loss = 0.0, take_profit = 0.0
    cdef double trailing = 0.0, risk_pct = 0.0, risk_amount = 0.0
    for i in range(N_FIELDS):
        slots[i] = NULL
    while PyDict_Next(obj, &pos, &key, &value):
        index = PyDict_GetItem(_FIELD_INDEX, <object>key)
        if index is NULL:
            unknown = True
        else:
            slots[<int><object>index] = value

    # The id comes first: every later reason carries it.
    sid = _slot(slots[F_ID])
    if sid is None:
        raise SignalError("missing required field 'id' (a unique string from the generator)")
    if not isinstance(sid, str) or not sid or len(<str>sid) > MAX_ID_LENGTH:
        raise SignalError(f"'id' must be a non-empty string of at most {MAX_ID_LENGTH} characters")
    if unknown:
        names = ", ".join(sorted(obj.keys() - _KNOWN_FIELDS))
        raise SignalError(
            f"unknown field(s) {names}: check the spelling against docs/signals.md", sid
        )

    account = _str_field(_slot(slots[F_ACCOUNT]), "account", True, sid)
    if targets is not None and account not in targets:
        raise SignalError(
            f"account {account!r} is neither an account alias nor a group in the config", sid
        )
    action = _enum_field(_slot(slots[F_ACTION]), "action", _ACTIONS, PARSE_ACTION, sid)
    if action is None:
        raise SignalError("missing required field 'action'", sid)
    ts_ns = _ts_field(_slot(slots[F_TS]), sid)
    symbol = _str_field(_slot(slots[F_SYMBOL]), "symbol", False, sid)
    instrument_id = _instrument_id_field(_slot(slots[F_INSTRUMENT_ID]), sid)
    side = _enum_field(_slot(slots[F_SIDE]), "side", _SIDES, PARSE_SIDE, sid)
    otype = _enum_field(_slot(slots[F_TYPE]), "type", _ORDER_TYPES, PARSE_ORDER_TYPE, sid)
    qty_obj = _number_field(_slot(slots[F_QTY]), "qty", &qty, sid)
    price_obj = _number_field(_slot(slots[F_PRICE]), "price", &price, sid)
    stop_price_obj = _number_field(_slot(slots[F_STOP_PRICE]), "stop_price", &stop_price, sid)
    stop_loss_obj = _number_field(_slot(slots[F_STOP_LOSS]), "stop_loss", &stop_loss, sid)
    take_profit_obj = _number_field(_slot(slots[F_TAKE_PROFIT]), "take_profit", &take_profit, sid)
    sl_type = _enum_field(
        _slot(slots[F_SL_TYPE]), "sl_type", _PROTECTIONS, PARSE_PROTECTION, sid
    )
    tp_type = _enum_field(
        _slot(slots[F_TP_TYPE]), "tp_type", _PROTECTIONS, PARSE_PROTECTION, sid
    )
    trailing_obj = _number_field(
        _slot(slots[F_TRAILING_OFFSET]), "trailing_offset", &trailing, sid
    )
    order_id = _venue_id_field(_slot(slots[F_ORDER_ID]), "order_id", sid)
    position_id = _venue_id_field(_slot(slots[F_POSITION_ID]), "position_id", sid)
    ref = _str_field(_slot(slots[F_REF]), "ref", False, sid)
    priority = _priority_field(_slot(slots[F_PRIORITY]), sid)
    risk_pct_obj = _number_field(_slot(slots[F_RISK_PCT]), "risk_pct", &risk_pct, sid)
    risk_amount_obj = _number_field(
        _slot(slots[F_RISK_AMOUNT]), "risk_amount", &risk_amount, sid
    )

    cdef bint has_qty = qty_obj is not None
    cdef bint has_price = price_obj is not None
    cdef bint has_stop_price = stop_price_obj is not None
    cdef bint has_sl = stop_loss_obj is not None
    cdef bint has_tp = take_profit_obj is not None
    cdef bint has_trailing = trailing_obj is not None

    # The twin's _check_numbers, in its order.
    if has_qty and not 0.0 < qty <= max_qty:
        raise SignalError(
            f"'qty' must be more than 0 and at most {max_qty:g} lots, got {qty:g}", sid
        )
    if has_price and price <= 0.0:
        raise SignalError(f"'price' must be a positive price, got {price:g}", sid)
    if has_stop_price and stop_price <= 0.0:
        raise SignalError(f"'stop_price' must be a positive price, got {stop_price:g}", sid)
    if has_trailing and trailing <= 0.0:
        raise SignalError("'trailing_offset' must be a positive distance in pips", sid)
    if has_sl and stop_loss <= 0.0:
        raise SignalError("'stop_loss' must be a positive price or offset", sid)
    if has_tp and take_profit <= 0.0:
        raise SignalError("'take_profit' must be a positive price or offset", sid)
    cdef bint has_risk_pct = risk_pct_obj is not None
    cdef bint has_risk_amount = risk_amount_obj is not None
    cdef bint has_risk = has_risk_pct or has_risk_amount
    if has_risk_pct and not 0.0 < risk_pct <= 100.0:
        raise SignalError(
            f"'risk_pct' must be a percentage of equity above 0 and at most 100, got "
            f"{risk_pct:g}",
            sid,
        )
    if has_risk_amount and risk_amount <= 0.0:
        raise SignalError(
            f"'risk_amount' must be a positive amount of the account currency, got "
            f"{risk_amount:g}",
            sid,
        )
    if has_risk and action is not PLACE:
        raise SignalError("'risk_pct' and 'risk_amount' size a place signal only", sid)

    # The twin's per-action checks.
    if action is PLACE:
        if symbol is None and instrument_id is None:
            raise SignalError("place needs 'symbol' or 'instrument_id'", sid)
        if side is None:
            raise SignalError("place needs 'side' (buy or sell)", sid)
        if otype is None:
            raise SignalError("place needs 'type' (market, limit, stop or stop_limit)", sid)
        if has_risk_pct and has_risk_amount:
            raise SignalError("give 'risk_pct' or 'risk_amount', not both", sid)
        if has_qty and has_risk:
            raise SignalError(
                "give 'qty' (lots) or a risk ('risk_pct' or 'risk_amount'), not both", sid
            )
        if not has_qty and not has_risk:
            raise SignalError("place needs 'qty' (lots)", sid)
        if has_risk and (not has_sl or sl_type is TRAILING):
            raise SignalError(
                "sizing by risk needs an absolute or offset 'stop_loss': the loss is measured "
                "to it",
                sid,
            )
        if (otype is LIMIT or otype is STOP_LIMIT) and not has_price:
            raise SignalError(f"a {otype.wire} order needs 'price' (the limit price)", sid)
        if (otype is STOP or otype is STOP_LIMIT) and not has_stop_price:
            raise SignalError(f"a {otype.wire} order needs 'stop_price' (the trigger price)", sid)
        if otype is MARKET and (has_price or has_stop_price):
            raise SignalError(
                "a market order takes no 'price' or 'stop_price': use type limit or stop", sid
            )
        _protection_rules(sl_type, tp_type, has_sl, has_tp, has_trailing, sid)
    elif action is MODIFY:
        _need_target(order_id, ref, action, "order_id", sid)
        if not (has_price or has_qty or has_stop_price or has_sl or has_tp or has_trailing):
            raise SignalError(
                "modify changes nothing: give price, qty, stop_price, stop_loss or take_profit",
                sid,
            )
        _protection_rules(sl_type, tp_type, has_sl, has_tp, has_trailing, sid)
    elif action is CANCEL:
        _need_target(order_id, ref, action, "order_id", sid)
    elif action is MODIFY_POSITION:
        _need_target(position_id, ref, action, "position_id", sid)
        if not (has_sl or has_tp or has_trailing):
            raise SignalError(
                "modify_position changes nothing: give stop_loss and/or take_profit", sid
            )
        _protection_rules(sl_type, tp_type, has_sl, has_tp, has_trailing, sid)
    elif action is CLOSE:
        _need_target(position_id, ref, action, "position_id", sid)
    elif action is REVERSE:
        _need_target(position_id, ref, action, "position_id", sid)
        if has_qty:
            raise SignalError(
                "reverse takes no 'qty': it closes the position and opens the opposite", sid
            )
    # cancel_all / close_all: an optional instrument narrows them, nothing is required.

    return SIGNAL(
        sid,
        account,
        action,
        ts_ns,
        arrived_ns,
        symbol,
        instrument_id,
        side,
        otype,
        qty_obj,
        price_obj,
        stop_price_obj,
        stop_loss_obj,
        sl_type,
        take_profit_obj,
        tp_type,
        trailing_obj,
        order_id,
        position_id,
        ref,
        priority,
        payload,
        risk_pct_obj,
        risk_amount_obj,
    )


cdef int _need_target(object target, object ref, object action, str key, object sid) except -1:
    if target is None and ref is None:
        raise SignalError(
            f"{action.wire} needs {key!r} (venue id) or 'ref' (the id of the signal that "
            "created it)",
            sid,
        )
    return 0


cdef int _protection_rules(
    object sl_type, object tp_type, bint has_sl, bint has_tp, bint has_trailing, object sid
) except -1:
    if tp_type is TRAILING:
        raise SignalError("'tp_type' cannot be trailingOffset: use absolute or offset", sid)
    cdef bint trailing = sl_type is TRAILING
    if trailing and not has_trailing:
        raise SignalError("sl_type trailingOffset needs 'trailing_offset' (pips)", sid)
    if sl_type is not None and not has_sl and not trailing:
        raise SignalError("'sl_type' given without 'stop_loss'", sid)
    if tp_type is not None and not has_tp:
        raise SignalError("'tp_type' given without 'take_profit'", sid)
    return 0


def peek_id(object payload):
    """The signal's id if it can be read at all (for rejecting a signal that failed decode)."""
    try:
        obj = _loads(payload)
    except _JSONDecodeError:
        return None
    if isinstance(obj, dict):
        value = (<dict>obj).get("id")
        if isinstance(value, str) and 0 < len(<str>value) <= MAX_ID_LENGTH:
            return value
    return None
