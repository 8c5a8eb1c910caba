"""Prop-firm guard arithmetic (pure-Python twin of ``engine._fast.guards``).

One call per order that adds exposure: :func:`check_guard` compares the order's worst case with
an account's live :class:`GuardState` and returns ``0`` (allowed, and counted) or the first rule
it would break (a :class:`engine._fast.codes.GuardCode`). No allocation on the accept path but
the ring slot it fills, no await, no logging. The state is written by
``engine.execution.guards.GuardBook`` off the hot path (from the venue's account state,
positions and orders); the reason sentence is built only on a rejection, by
:func:`engine._fast.guard_reasons.guard_reason`.

The money rules (all amounts in the account currency):

* daily loss: ``(day_ref - equity) + open_risk + worst`` must stay within
  ``daily_limit * (1 - margin)``; ``day_ref`` is the balance (or equity) at the day's reset.
* drawdown: ``(dd_top - equity) + open_risk + worst`` within ``dd_limit * (1 - margin)``;
  ``dd_top`` is the starting balance (static) or the highest equity seen (trailing).

``open_risk`` is what the open positions and working orders can still lose to their stop losses
(or to the configured worst case without one), beyond what equity already shows.
"""

from __future__ import annotations

import math

__all__ = [
    "GuardState",
    "check_guard",
    "lots_for_risk",
    "worst_loss",
]

_INF = math.inf
_NAN = math.nan

# The codes (mirrored in engine/_fast/codes.py GuardCode and the cdef enum of guards.pyx).
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


class GuardState:
    """One account's limits and live figures. ``inf`` (or 0 for the counts) turns a rule off."""

    __slots__ = (
        "daily_limit",
        "day_count",
        "day_ref",
        "dd_limit",
        "dd_top",
        "equity",
        "halted",
        "inst_lots",
        "margin",
        "max_lots_account",
        "max_lots_instrument",
        "max_lots_order",
        "max_per_day",
        "max_per_minute",
        "max_positions",
        "open_lots",
        "open_positions",
        "open_risk",
        "ring",
        "ring_head",
    )

    def __init__(
        self,
        daily_limit: float = _INF,
        dd_limit: float = _INF,
        margin: float = 0.0,
        max_lots_order: float = _INF,
        max_lots_instrument: float = _INF,
        max_lots_account: float = _INF,
        max_positions: int = 0,
        max_per_minute: int = 0,
        max_per_day: int = 0,
    ) -> None:
        self.halted = False
        self.equity = _NAN
        self.day_ref = _NAN
        self.dd_top = _NAN
        self.daily_limit = float(daily_limit)
        self.dd_limit = float(dd_limit)
        self.margin = float(margin)
        self.open_risk = 0.0
        self.max_lots_order = float(max_lots_order)
        self.max_lots_instrument = float(max_lots_instrument)
        self.max_lots_account = float(max_lots_account)
        self.open_lots = 0.0
        self.inst_lots: dict[int, float] = {}
        self.max_positions = int(max_positions)
        self.open_positions = 0
        self.max_per_minute = int(max_per_minute)
        # The times of the last max_per_minute orders (a ring): the oldest is at ring_head.
        self.ring: list[float] = [-_INF] * self.max_per_minute
        self.ring_head = 0
        self.max_per_day = int(max_per_day)
        self.day_count = 0


def worst_loss(distance: float, qty: float, value_per_point: float) -> float:
    """What ``qty`` lots lose over a price ``distance`` at ``value_per_point`` (account currency
    per price unit per lot); NaN when any is unknown."""
    if not (math.isfinite(distance) and math.isfinite(qty) and math.isfinite(value_per_point)):
        return _NAN
    return abs(distance) * qty * value_per_point


def check_guard(st: GuardState, instrument_id: int, qty: float, worst: float, now_s: float) -> int:
    """0 when the order may go (it is then counted: rates, lots, positions, open risk), else the
    first rule it would break."""
    if st.halted:
        return HALTED
    if qty > st.max_lots_order:
        return LOTS_PER_ORDER
    if st.open_lots + qty > st.max_lots_account:
        return LOTS_PER_ACCOUNT
    if st.max_lots_instrument != _INF:
        if st.inst_lots.get(instrument_id, 0.0) + qty > st.max_lots_instrument:
            return LOTS_PER_INSTRUMENT
    if st.max_positions > 0 and st.open_positions >= st.max_positions:
        return OPEN_POSITIONS
    money = st.daily_limit != _INF or st.dd_limit != _INF
    if money:
        if not math.isfinite(st.equity):
            return NO_EQUITY
        if not math.isfinite(worst):
            return WORST_UNKNOWN
        keep = 1.0 - st.margin
        if st.daily_limit != _INF:
            if (st.day_ref - st.equity) + st.open_risk + worst > st.daily_limit * keep:
                return DAILY_LOSS
        if st.dd_limit != _INF:
            if (st.dd_top - st.equity) + st.open_risk + worst > st.dd_limit * keep:
                return DRAWDOWN
    if st.max_per_day > 0 and st.day_count >= st.max_per_day:
        return ORDERS_PER_DAY
    n = st.max_per_minute
    if n > 0:
        head = st.ring_head
        if st.ring[head] > now_s - 60.0:
            return ORDERS_PER_MINUTE
        st.ring[head] = now_s
        head += 1
        st.ring_head = 0 if head == n else head
    st.day_count += 1
    st.open_lots += qty
    if st.max_lots_instrument != _INF:
        st.inst_lots[instrument_id] = st.inst_lots.get(instrument_id, 0.0) + qty
    st.open_positions += 1
    if money:
        st.open_risk += worst
    return OK


def lots_for_risk(
    risk: float,
    distance: float,
    value_per_point: float,
    lot_step: float,
    min_lot: float,
    max_lot: float,
) -> float:
    """The lots that lose ``risk`` over a stop-loss ``distance``, rounded down to ``lot_step``
    and capped at ``max_lot``; 0.0 below ``min_lot`` (the caller rejects with the numbers);
    NaN when an input makes it undefined (no distance, no value, no step)."""
    if not (
        math.isfinite(risk)
        and math.isfinite(distance)
        and math.isfinite(value_per_point)
        and risk > 0.0
        and distance > 0.0
        and value_per_point > 0.0
        and lot_step > 0.0
        and distance * value_per_point > 0.0
    ):
        return _NAN
    # Round down to the step; a hair of float error below a whole step still counts as it.
    steps = risk / (distance * value_per_point) / lot_step + 1e-9
    if not math.isfinite(steps):
        return _NAN
    lots = math.floor(steps) * lot_step
    if lots > max_lot:
        lots = math.floor(max_lot / lot_step + 1e-9) * lot_step
    if lots < min_lot - 1e-9 * lot_step:
        return 0.0
    return round(lots, 10)
