# cython: language_level=3
"""Prop-firm guard arithmetic, compiled. Behaviour is defined by the twin
engine/_fast/_py/guards.py (read that for the rules); tests/guards/test_differential.py holds the
two together. Every comparison runs on C doubles of a cdef class; the accept path allocates
nothing (the per-minute ring is C memory). guards.pxd declares the state and the codes for
other Cython modules."""

from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.math cimport INFINITY, NAN, fabs, floor, isfinite

__all__ = ["GuardState", "check_guard", "lots_for_risk", "worst_loss"]

cdef class GuardState:
    """One account's limits and live figures (see the twin)."""

    # Its fields are declared in guards.pxd (the C ring of order times among them).

    def __cinit__(self, *args, **kwargs):
        self._ring = NULL

    def __dealloc__(self):
        PyMem_Free(self._ring)

    @property
    def ring(self):
        return [self._ring[i] for i in range(self.max_per_minute)]

    def __init__(
        self,
        double daily_limit=INFINITY,
        double dd_limit=INFINITY,
        double margin=0.0,
        double max_lots_order=INFINITY,
        double max_lots_instrument=INFINITY,
        double max_lots_account=INFINITY,
        long max_positions=0,
        long max_per_minute=0,
        long max_per_day=0,
    ):
        self.halted = False
        self.equity = NAN
        self.day_ref = NAN
        self.dd_top = NAN
        self.daily_limit = daily_limit
        self.dd_limit = dd_limit
        self.margin = margin
        self.open_risk = 0.0
        self.max_lots_order = max_lots_order
        self.max_lots_instrument = max_lots_instrument
        self.max_lots_account = max_lots_account
        self.open_lots = 0.0
        self.inst_lots = {}
        self.max_positions = max_positions
        self.open_positions = 0
        if max_per_minute < 0:
            max_per_minute = 0
        self.max_per_minute = max_per_minute
        PyMem_Free(self._ring)
        self._ring = <double*>PyMem_Malloc((max_per_minute or 1) * sizeof(double))
        if self._ring is NULL:
            raise MemoryError()
        for i in range(max_per_minute):
            self._ring[i] = -INFINITY
        self.ring_head = 0
        self.max_per_day = max_per_day
        self.day_count = 0


def worst_loss(double distance, double qty, double value_per_point) -> float:
    if not (isfinite(distance) and isfinite(qty) and isfinite(value_per_point)):
        return NAN
    return fabs(distance) * qty * value_per_point


cpdef int check_guard(
    GuardState st, long instrument_id, double qty, double worst, double now_s
) except -1:
    cdef double keep, held
    cdef long head, n
    cdef bint money
    if st.halted:
        return HALTED
    if qty > st.max_lots_order:
        return LOTS_PER_ORDER
    if st.open_lots + qty > st.max_lots_account:
        return LOTS_PER_ACCOUNT
    if st.max_lots_instrument != INFINITY:
        held = st.inst_lots.get(instrument_id, 0.0)
        if held + qty > st.max_lots_instrument:
            return LOTS_PER_INSTRUMENT
    if st.max_positions > 0 and st.open_positions >= st.max_positions:
        return OPEN_POSITIONS
    money = st.daily_limit != INFINITY or st.dd_limit != INFINITY
    if money:
        if not isfinite(st.equity):
            return NO_EQUITY
        if not isfinite(worst):
            return WORST_UNKNOWN
        keep = 1.0 - st.margin
        if st.daily_limit != INFINITY:
            if (st.day_ref - st.equity) + st.open_risk + worst > st.daily_limit * keep:
                return DAILY_LOSS
        if st.dd_limit != INFINITY:
            if (st.dd_top - st.equity) + st.open_risk + worst > st.dd_limit * keep:
                return DRAWDOWN
    if st.max_per_day > 0 and st.day_count >= st.max_per_day:
        return ORDERS_PER_DAY
    n = st.max_per_minute
    if n > 0:
        head = st.ring_head
        if st._ring[head] > now_s - 60.0:
            return ORDERS_PER_MINUTE
        st._ring[head] = now_s
        head += 1
        st.ring_head = 0 if head == n else head
    st.day_count += 1
    st.open_lots += qty
    if st.max_lots_instrument != INFINITY:
        st.inst_lots[instrument_id] = <double>st.inst_lots.get(instrument_id, 0.0) + qty
    st.open_positions += 1
    if money:
        st.open_risk += worst
    return OK


def lots_for_risk(
    double risk,
    double distance,
    double value_per_point,
    double lot_step,
    double min_lot,
    double max_lot,
) -> float:
    cdef double raw, lots
    if not (
        isfinite(risk)
        and isfinite(distance)
        and isfinite(value_per_point)
        and risk > 0.0
        and distance > 0.0
        and value_per_point > 0.0
        and lot_step > 0.0
        and distance * value_per_point > 0.0
    ):
        return NAN
    raw = risk / (distance * value_per_point) / lot_step + 1e-9
    if not isfinite(raw):
        return NAN
    lots = floor(raw) * lot_step
    if lots > max_lot:
        lots = floor(max_lot / lot_step + 1e-9) * lot_step
    if lots < min_lot - 1e-9 * lot_step:
        return 0.0
    return round(lots, 10)
