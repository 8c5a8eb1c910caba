"""The figures of the prop-firm guards (docs/guards.md): what one reading of an account holds
(open lots per instrument, open positions, the open risk to each stop loss, with the worst
cases the guard reserved for orders the venue does not show yet), from a read or from the
stream's view, and the trading day a moment belongs to. ``guards.GuardBook`` feeds them in and
acts on the levels."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable
from typing import Any

from engine.execution.guard_rules import RESERVE_GRACE_S, AccountGuard, Held
from engine.model.domain import Side
from engine.state.account_view import OPEN_ORDER_STATUSES, AccountView, remaining_of

__all__ = ["day_key", "fold_exposure", "match_reserved", "view_rows"]

_NAN = math.nan


def day_key(g: AccountGuard, now: float) -> str:
    """The trading day (ISO date) wall time ``now`` (s) falls in, in the account's time zone,
    the day starting at its reset time."""
    t = dt.datetime.fromtimestamp(now, g.tz)
    return (t - dt.timedelta(minutes=g.reset_min)).date().isoformat()


def view_rows(
    view: AccountView, instrument_id: Callable[[str], int | None]
) -> tuple[list[Held], list[Held]] | None:
    """The positions and working orders of the stream's view of an account, as a read's rows
    (a position's stop-loss and take-profit legs are not new exposure). None when a row names an
    instrument the account does not know."""
    legs = {
        leg
        for p in view.positions.values()
        for leg in (p.stop_loss_order_id, p.take_profit_order_id)
        if leg
    }
    positions = []
    for p in view.positions.values():
        iid = instrument_id(p.instrument)
        if iid is None:
            return None
        positions.append(
            Held(p.lots, iid, p.strategy_id, p.open_price, 0.0, None, p.stop_loss_limit, p.side)
        )
    orders = []
    for o in view.orders.values():
        if o.status not in OPEN_ORDER_STATUSES or o.order_id in legs:
            continue
        iid = instrument_id(o.instrument)
        if iid is None:
            return None
        left = remaining_of(o)
        if not left:
            continue
        orders.append(Held(left, iid, o.strategy_id, o.price or _NAN, 0.0, o.position_id))
    return positions, orders


def fold_exposure(
    g: AccountGuard,
    positions: Iterable[Any],
    orders: Iterable[Any],
    open_pl: float | None,
    *,
    now: float,
    vpp_of: Callable[[AccountGuard, int], float],
    held: Callable[[str], set[str]],
) -> None:
    """Open lots, positions and risk from a reading. ``open_pl`` is given for the stream's
    view (untagged rows, the account's open P&L only): a row without a tag is matched to an
    order the guard passed by instrument and lots, a position's worst case is measured to
    its own stop loss when it has one, and a working order nobody matches counts the
    ``no_sl_move_pct`` move from its price. ``now``: monotonic s; ``vpp_of``: the account
    currency per price unit per lot of an instrument; ``held``: the tags of the stop-limit orders
    the engine holds for an account."""
    st = g.state
    streamed = open_pl is not None
    lots = 0.0
    by_inst: dict[int, float] = {}
    risk = 0.0
    at_entry = 0.0  # the positions' worst cases at entry (the stream's view)
    count = 0
    seen: set[str] = set()
    for p in positions:
        count += 1
        lots += p.qty
        by_inst[p.instrument_id] = by_inst.get(p.instrument_id, 0.0) + p.qty
        res = g.reserved.get(p.strategy_id) if p.strategy_id else None
        if res is not None:
            seen.add(p.strategy_id)
            worst = res.risk
        else:
            vpp = vpp_of(g, p.instrument_id)
            sl = getattr(p, "stop_loss", None)
            tag = match_reserved(g, p, seen) if streamed else None
            if sl is not None:  # its own stop loss (the stream's view): exact
                dist = p.avg_price - sl if p.side is Side.BUY else sl - p.avg_price
                worst = max(0.0, dist) * p.qty * vpp
            elif tag is not None:
                worst = g.reserved[tag].risk
            else:
                worst = p.avg_price * g.no_sl_move * p.qty * vpp
            if not math.isfinite(worst):
                worst = 0.0
        if streamed:
            at_entry += worst
        else:
            # From here to the stop: the worst case at entry, plus what the position has
            # gained (or less what it has lost: equity already shows that).
            risk += max(0.0, worst + p.unrealized_pl)
    if open_pl is not None:
        risk += max(0.0, at_entry + open_pl)
    for o in orders:
        if o.position_id:  # a position's stop loss or take profit, not new exposure
            continue
        lots += o.qty
        by_inst[o.instrument_id] = by_inst.get(o.instrument_id, 0.0) + o.qty
        res = g.reserved.get(o.strategy_id) if o.strategy_id else None
        if res is not None:
            seen.add(o.strategy_id)
            risk += res.risk
        elif streamed:
            tag = match_reserved(g, o, seen)
            if tag is not None:
                risk += g.reserved[tag].risk
            else:
                worst = o.avg_price * g.no_sl_move * o.qty * vpp_of(g, o.instrument_id)
                risk += worst if math.isfinite(worst) else 0.0
    holding = held(g.alias)
    for tag, res in list(g.reserved.items()):
        if tag in seen:
            continue
        if now - res.since > RESERVE_GRACE_S and tag not in holding:
            del g.reserved[tag]  # closed, or never placed
            continue
        # Sent and not shown yet (or filled and closed since): counted until the grace ends,
        # so a fill the venue has not shown yet cannot be forgotten.
        lots += res.qty
        by_inst[res.instrument_id] = by_inst.get(res.instrument_id, 0.0) + res.qty
        risk += res.risk
        count += 1
    st.open_lots = lots
    st.inst_lots = by_inst
    st.open_risk = risk
    st.open_positions = count


def match_reserved(g: AccountGuard, row: Any, seen: set[str]) -> str | None:
    """The tag of an order the guard passed that an untagged row of the stream is: the same
    instrument and lots, not matched yet (marked seen)."""
    for tag, res in g.reserved.items():
        if (
            tag not in seen
            and res.instrument_id == row.instrument_id
            and abs(res.qty - row.qty) < 1e-9
        ):
            seen.add(tag)
            return tag
    return None
