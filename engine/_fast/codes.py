"""Pre-validation rejection codes, shared by the compiled module and its pure-Python twin.

``check_order`` returns one of these as a plain ``int`` (0 = accepted) so the accept path never
builds an enum member; ``RejectCode(code)`` names it on the rejection path. The values are mirrored
by the ``cdef enum`` in ``validate.pxd``: change both together (tests/fast checks they agree).
"""

from __future__ import annotations

import enum


class RejectCode(enum.IntEnum):
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


# Fraction of a lot step or tick that a quantity or price may be off its grid and still count as on
# it: absorbs binary floating point (0.3 / 0.01 == 29.999999999999996) without letting a real
# off-grid value (0.305 with step 0.01) through.
GRID_TOLERANCE = 1e-6

# The tag length check_order allows when the caller does not pass the venue's own maximum
# (engine.venue.protocol.Capabilities.max_tag_length, which the pipeline passes): the most
# conservative reading of TradeLocker's strategyId limit (docs/api-reference.md section 15, item 7).
MAX_TAG_LENGTH = 31


class GuardCode(enum.IntEnum):
    """What ``check_guard`` returns (engine/_fast/guards.pyx and its twin): 0 = allowed."""

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
