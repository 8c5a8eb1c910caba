# cython: language_level=3
"""TradeLocker request bodies, compiled. The output is defined by the twin
engine/_fast/_py/serialize.py (tests require byte-identical results); read that for the choices.

Bodies are written into one stack buffer with snprintf("%.*f") and become a bytes object once at the
end. Anything that would not fit (a strategy tag needing JSON escapes or a number beyond 1e15 or a
very long tag) takes the twin's path, so the output never differs. Request heads are built once
per token, off the hot path, and are the twin's code.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.math cimport fabs, floor, isfinite
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.stdio cimport snprintf
from libc.string cimport memcpy

from engine._fast._py import serialize as _twin
from engine._fast._py.serialize import (
    MAX_DECIMALS,
    OFFSET_DECIMALS,
    close_position_body,
    modify_order_body,
    modify_position_body,
    order_post_head,
    price_decimals,
    qty_decimals,
    request_head,
)
from engine.model.domain import OrderType, ProtectionType, Side, Validity

__all__ = [
    "OFFSET_DECIMALS",
    "MAX_DECIMALS",
    "close_position_body",
    "decimals_of",
    "format_number",
    "modify_order_body",
    "modify_position_body",
    "order_post_head",
    "place_order_body",
    "price_decimals",
    "qty_decimals",
    "request_head",
    "with_body",
]

cdef enum:
    BUF_SIZE = 768
    MAX_FAST_TAG = 96

cdef double MAX_FAST_ABS = 1e15

cdef double[11] POW10 = [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10]
cdef int C_OFFSET_DECIMALS = OFFSET_DECIMALS
cdef int C_MAX_DECIMALS = MAX_DECIMALS

cdef object MARKET = OrderType.MARKET
cdef object LIMIT = OrderType.LIMIT
cdef object STOP = OrderType.STOP
cdef object STOP_LIMIT = OrderType.STOP_LIMIT
cdef object BUY = Side.BUY
cdef object IOC = Validity.IOC
cdef object OFFSET = ProtectionType.OFFSET
cdef object TRAILING = ProtectionType.TRAILING_OFFSET


cdef struct Buf:
    char data[BUF_SIZE]
    Py_ssize_t n
    bint overflow


cdef inline void put(Buf* b, const char* s, Py_ssize_t n) noexcept nogil:
    if b.overflow or b.n + n > BUF_SIZE:
        b.overflow = True
        return
    memcpy(b.data + b.n, s, n)
    b.n += n


cdef inline void put_str(Buf* b, const char* s) noexcept nogil:
    cdef Py_ssize_t n = 0
    while s[n] != 0:
        n += 1
    put(b, s, n)


cdef void put_number(Buf* b, double x, int decimals) noexcept nogil:
    # Fixed notation, trailing zeros (and a bare '.') dropped, "-0" written as "0": exactly what
    # the twin's f"{x:.{d}f}" gives. Fast path: scale to an integer and print its digits, taken
    # only when the scaled value is small enough that the product's rounding error (< 5e-4) cannot
    # move it across a rounding boundary (away from a .5 tie); otherwise snprintf rounds exactly.
    cdef char tmp[64]
    cdef int n, dot, i, pos
    cdef double scaled, fl, frac
    cdef unsigned long long m
    cdef bint neg
    if not isfinite(x) or fabs(x) >= MAX_FAST_ABS:
        b.overflow = True  # the twin raises (non-finite) or formats it (huge)
        return
    if 0 <= decimals <= 10:
        scaled = x * POW10[decimals]
        if fabs(scaled) < 4e12:
            fl = floor(scaled)
            frac = scaled - fl
            if fabs(frac - 0.5) > 1e-3:
                neg = fl < 0.0
                m = <unsigned long long>(-fl if neg else fl)
                if neg:
                    m -= 1 if frac > 0.5 else 0  # |fl| - 1 when rounding towards zero
                else:
                    m += 1 if frac > 0.5 else 0
                if m == 0:
                    put(b, "0", 1)
                    return
                # digits of m, right to left, with the decimal point after `decimals` of them
                pos = 63
                i = 0
                while m > 0 or i <= decimals:
                    if i == decimals and decimals > 0:
                        tmp[pos] = 46
                        pos -= 1
                    tmp[pos] = 48 + <char>(m % 10)
                    m //= 10
                    pos -= 1
                    i += 1
                if neg:
                    tmp[pos] = 45
                    pos -= 1
                n = 64
                if decimals > 0:
                    while tmp[n - 1] == 48:
                        n -= 1
                    if tmp[n - 1] == 46:
                        n -= 1
                put(b, tmp + pos + 1, n - pos - 1)
                return
    n = snprintf(tmp, 64, "%.*f", decimals, x)
    if n <= 0 or n >= 64:
        b.overflow = True
        return
    dot = -1
    for i in range(n):
        if tmp[i] == 46:  # '.'
            dot = i
            break
    if dot >= 0:
        while n > dot + 1 and tmp[n - 1] == 48:  # '0'
            n -= 1
        if n == dot + 1:
            n = dot
    if n == 2 and tmp[0] == 45 and tmp[1] == 48:  # "-0"
        put(b, "0", 1)
        return
    put(b, tmp, n)


cdef void put_int(Buf* b, long long v) noexcept nogil:
    cdef char tmp[32]
    cdef int n = snprintf(tmp, 32, "%lld", v)
    put(b, tmp, n)


cpdef int decimals_of(double step) noexcept:
    """Decimal places of a tick or lot step (0.00001 -> 5, 0.01 -> 2, 1 -> 0); capped at 10."""
    cdef int d
    cdef double scaled
    if not (step > 0.0) or not isfinite(step):
        return C_MAX_DECIMALS
    for d in range(C_MAX_DECIMALS + 1):
        scaled = step * POW10[d]
        if fabs(scaled - floor(scaled + 0.5)) < 1e-6:
            return d
    return C_MAX_DECIMALS


cdef int c_price_decimals(tuple tiers) except -1:
    cdef int d = 0, dd
    cdef tuple tier
    if not tiers:
        return C_MAX_DECIMALS
    for tier in tiers:
        dd = decimals_of(tier[1])
        if dd > d:
            d = dd
    return d


cdef bint put_tag(Buf* b, str tag) except -1:
    # Plain printable ASCII without quote or backslash is its own JSON; anything else goes to the
    # twin (orjson), so escaping rules live in one place.
    cdef Py_ssize_t i, n = len(tag)
    cdef Py_UCS4 ch
    if n > MAX_FAST_TAG:
        return False
    for i in range(n):
        ch = tag[i]
        if ch < 32 or ch > 126 or ch == 34 or ch == 92:
            return False
    cdef Py_ssize_t size
    cdef const char* raw = PyUnicode_AsUTF8AndSize(tag, &size)  # cached on the str: no copy
    put(b, '"', 1)
    put(b, raw, size)
    put(b, '"', 1)
    return True


cpdef bytes place_order_body(object req):
    """The JSON body of ``POST /trade/accounts/{accountId}/orders`` (docs/api-reference.md §7.1)."""
    cdef Buf b
    cdef int pd, qd
    cdef bint buy
    b.n = 0
    b.overflow = False
    t = req.type
    if t is STOP_LIMIT:
        return _twin.place_order_body(req)  # raises the explanatory ValueError
    inst = req.instrument
    cdef tuple tiers = inst.tick_sizes
    pd = c_price_decimals(tiers)
    qd = decimals_of(inst.lot_step)
    put_str(&b, '{"tradableInstrumentId":')
    put_int(&b, inst.tradable_instrument_id)
    put_str(&b, ',"routeId":')
    put_int(&b, inst.trade_route_id)
    put_str(&b, ',"qty":')
    put_number(&b, req.qty, qd)
    if req.side is BUY:
        put_str(&b, ',"side":"buy","type":"')
    else:
        put_str(&b, ',"side":"sell","type":"')
    if t is MARKET:
        put_str(&b, 'market","validity":"')
    elif t is LIMIT:
        put_str(&b, 'limit","validity":"')
    else:
        put_str(&b, 'stop","validity":"')
    if req.validity is IOC:
        put_str(&b, 'IOC"')
    else:
        put_str(&b, 'GTC"')
    if t is LIMIT:
        v = req.price
        if v is not None:
            put_str(&b, ',"price":')
            put_number(&b, v, pd)
    elif t is STOP:
        v = req.stop_price
        if v is not None:
            put_str(&b, ',"stopPrice":')
            put_number(&b, v, pd)
    sl = req.stop_loss
    sl_type = req.stop_loss_type
    if sl is not None:
        put_str(&b, ',"stopLoss":')
        put_number(&b, sl, C_OFFSET_DECIMALS if (sl_type is OFFSET or sl_type is TRAILING) else pd)
    if sl is not None or sl_type is TRAILING:
        if sl_type is TRAILING:
            put_str(&b, ',"stopLossType":"trailingOffset"')
        elif sl_type is OFFSET:
            put_str(&b, ',"stopLossType":"offset"')
        else:
            put_str(&b, ',"stopLossType":"absolute"')
    tp = req.take_profit
    if tp is not None:
        tp_type = req.take_profit_type
        put_str(&b, ',"takeProfit":')
        if tp_type is OFFSET or tp_type is TRAILING:
            put_number(&b, tp, C_OFFSET_DECIMALS)
        else:
            put_number(&b, tp, pd)
        if tp_type is TRAILING:
            put_str(&b, ',"takeProfitType":"trailingOffset"')
        elif tp_type is OFFSET:
            put_str(&b, ',"takeProfitType":"offset"')
        else:
            put_str(&b, ',"takeProfitType":"absolute"')
    if sl_type is TRAILING:
        tr = req.trailing_offset
        if tr is not None:
            put_str(&b, ',"trStopOffset":')
            put_number(&b, tr, C_OFFSET_DECIMALS)
    tag = req.strategy_tag
    if tag:
        put_str(&b, ',"strategyId":')
        if not put_tag(&b, tag):
            b.overflow = True
    put_str(&b, "}")
    if b.overflow:
        return _twin.place_order_body(req)
    return PyBytes_FromStringAndSize(b.data, b.n)


cpdef bytes format_number(double x, int decimals):
    """``x`` in fixed notation rounded to ``decimals``, trailing zeros dropped: a JSON number."""
    cdef Buf b
    b.n = 0
    b.overflow = False
    put_number(&b, x, decimals)
    if b.overflow:
        return _twin.format_number(x, decimals)  # raises for non-finite, formats huge values
    return PyBytes_FromStringAndSize(b.data, b.n)


cpdef bytes with_body(bytes head, bytes body):
    """One buffer to write: ``head`` (from request_head), the length, a blank line, the body."""
    cdef char num[32]
    cdef Py_ssize_t hn = PyBytes_GET_SIZE(head)
    cdef Py_ssize_t bn = PyBytes_GET_SIZE(body)
    cdef int ln = snprintf(num, 32, "%zd\r\n\r\n", bn)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, hn + ln + bn)
    cdef char* p = PyBytes_AS_STRING(out)
    memcpy(p, PyBytes_AS_STRING(head), hn)
    memcpy(p + hn, num, ln)
    memcpy(p + hn + ln, PyBytes_AS_STRING(body), bn)
    return out
