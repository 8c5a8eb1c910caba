# Prop-firm guard arithmetic: C-level entry points for other Cython modules (no Python dispatch).
# The codes mirror engine/_fast/codes.py (GuardCode); tests/guards checks that the twin agrees.

cdef enum:
    OK = 0
    HALTED = 1
    NO_EQUITY = 2
    DAILY_LOSS = 3
    DRAWDOWN = 4
    LOTS_PER_ORDER = 5
    LOTS_PER_INSTRUMENT = 6
    LOTS_PER_ACCOUNT = 7
    OPEN_POSITIONS = 8
    ORDERS_PER_MINUTE = 9
    ORDERS_PER_DAY = 10
    WORST_UNKNOWN = 11


cdef class GuardState:
    cdef public bint halted
    cdef public double equity, day_ref, dd_top, daily_limit, dd_limit, margin, open_risk
    cdef public double max_lots_order, max_lots_instrument, max_lots_account, open_lots
    cdef public dict inst_lots
    cdef public long max_positions, open_positions
    cdef readonly long ring_head
    cdef readonly long max_per_minute
    cdef public long max_per_day, day_count
    # The times of the last max_per_minute orders, a C ring (the twin's list): no allocation
    # when an order is counted.
    cdef double* _ring


cpdef int check_guard(
    GuardState st, long instrument_id, double qty, double worst, double now_s
) except -1
