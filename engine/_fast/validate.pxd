# Order pre-validation: C-level entry points for other Cython modules (no Python dispatch).
# The codes mirror engine/_fast/codes.py (RejectCode); tests/fast checks that they agree.

cdef enum:
    OK = 0
    ACCOUNT_DISABLED = 1
    QTY_NOT_FINITE = 2
    QTY_NOT_POSITIVE = 3
    QTY_BELOW_MIN_LOT = 4
    QTY_ABOVE_MAX_LOT = 5
    QTY_OFF_LOT_STEP = 6
    VALIDITY_MISMATCH = 7
    PRICE_MISSING = 8
    PRICE_INVALID = 9
    PRICE_OFF_TICK = 10
    STOP_PRICE_MISSING = 11
    STOP_PRICE_INVALID = 12
    STOP_PRICE_OFF_TICK = 13
    STOP_LIMIT_INCONSISTENT = 14
    SL_INVALID = 15
    SL_OFFSET_NOT_POSITIVE = 16
    SL_OFF_TICK = 17
    SL_WRONG_SIDE = 18
    TRAILING_OFFSET_MISSING = 19
    TP_INVALID = 20
    TP_OFFSET_NOT_POSITIVE = 21
    TP_OFF_TICK = 22
    TP_WRONG_SIDE = 23
    TP_TRAILING_NOT_ALLOWED = 24
    TAG_TOO_LONG = 25

cdef bint c_on_grid(double value, double step) noexcept nogil
cdef double c_tick_for(tuple tiers, double price) except? -1.0
cpdef int check_order(
    object req, double bid=*, double ask=*, bint account_enabled=*, Py_ssize_t max_tag_length=*
) except -1
