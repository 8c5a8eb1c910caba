"""The words of the prop-firm guards (docs/guards.md): the sentence of a refusal code of the
compiled ``check_guard`` with the rule and the numbers, and the trading-window verdict (sessions,
flat before the weekend, news blackouts) with the reason an account may not open now."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from engine._fast import GuardCode
from engine.execution.guard_rules import AccountGuard
from engine.execution.windows import Blackout
from engine.model.domain import OrderRequest

__all__ = ["decide_window", "refusal"]


def decide_window(g: AccountGuard, now: float, blackouts: Sequence[Blackout]) -> None:
    """Decide whether the account may open now, and until when that holds (one minute at
    most: windows are whole minutes)."""
    t = dt.datetime.fromtimestamp(now, g.tz)
    minute_of_week = t.weekday() * 1440 + t.hour * 60 + t.minute
    reason = ""
    if g.windows and not any(a <= minute_of_week < b for a, b in g.windows):
        reason = (
            f"session guard: {t:%a %H:%M} ({g.rules.timezone or 'UTC'}) is outside the "
            f"trading sessions of {g.alias} ({', '.join(g.rules.sessions or ())})"
        )
    if not reason and g.weekend_min is not None and minute_of_week >= g.weekend_min:
        reason = (
            f"weekend guard: after Friday {g.rules.flat_before_weekend} "
            f"({g.rules.timezone or 'UTC'}) {g.alias} stays flat until Monday"
        )
    if not reason and blackouts:
        utc = dt.datetime.fromtimestamp(now, dt.UTC)
        for b in blackouts:
            if b.start <= utc < b.end:
                reason = (
                    f"blackout guard: {b.name} from {b.start:%H:%M} to {b.end:%H:%M} UTC "
                    "(guards.blackout_file): no new orders"
                )
                break
    g.window_reason = reason
    g.window_until = now + 60.0 - t.second - t.microsecond / 1e6


def refusal(g: AccountGuard, code: int, req: OrderRequest, worst: float) -> str:
    """The sentence of a refusal code of ``check_guard``: the rule and the numbers."""
    st = g.state
    keep = 1.0 - st.margin
    pct = f"{st.margin * 100:g} %"
    if code == GuardCode.HALTED:
        return f"halted guard: {g.alias} takes no new orders: {g.halt_reason}"
    if code == GuardCode.NO_EQUITY:
        return (
            f"loss guard: the equity of {g.alias} is not known yet (the venue has not been "
            "read); no order goes out unguarded"
        )
    if code == GuardCode.WORST_UNKNOWN:
        return (
            f"loss guard: the worst case of this order on {g.alias} cannot be computed (no "
            "quote for a market order, or no conversion rate to the account currency); "
            "give an absolute stop_loss or a price"
        )
    if code in (GuardCode.DAILY_LOSS, GuardCode.DRAWDOWN):
        daily = code == GuardCode.DAILY_LOSS
        ref = st.day_ref if daily else st.dd_top
        limit = st.daily_limit if daily else st.dd_limit
        lost = ref - st.equity
        total = lost + st.open_risk + worst
        name = "daily loss" if daily else f"{g.rules.drawdown_mode or 'static'} drawdown"
        since = "today" if daily else "from the top"
        return (
            f"{name} guard: {lost:.2f} lost {since} + {st.open_risk:.2f} open risk + "
            f"{worst:.2f} worst case of {req.qty:g} lots = {total:.2f} {g.currency}, over "
            f"{limit * keep:.2f} ({limit:.2f} limit less the {pct} safety margin) on {g.alias}"
        )
    if code == GuardCode.LOTS_PER_ORDER:
        return (
            f"lots guard: {req.qty:g} lots is over max_lots_order {st.max_lots_order:g} on "
            f"{g.alias}"
        )
    if code == GuardCode.LOTS_PER_ACCOUNT:
        return (
            f"lots guard: {st.open_lots:g} open and working lots + {req.qty:g} = "
            f"{st.open_lots + req.qty:g}, over max_lots_account {st.max_lots_account:g} on "
            f"{g.alias}"
        )
    if code == GuardCode.LOTS_PER_INSTRUMENT:
        held = st.inst_lots.get(req.instrument.tradable_instrument_id, 0.0)
        return (
            f"lots guard: {held:g} lots of {req.instrument.name} held + {req.qty:g} = "
            f"{held + req.qty:g}, over max_lots_instrument {st.max_lots_instrument:g} on "
            f"{g.alias}"
        )
    if code == GuardCode.OPEN_POSITIONS:
        return (
            f"positions guard: {st.open_positions} positions open, max_positions is "
            f"{st.max_positions} on {g.alias}"
        )
    if code == GuardCode.ORDERS_PER_MINUTE:
        return (
            f"order rate guard: {st.max_per_minute} orders in the last minute, "
            f"max_orders_per_minute is {st.max_per_minute} on {g.alias}"
        )
    if code == GuardCode.ORDERS_PER_DAY:
        return (
            f"order rate guard: {st.day_count} orders today, max_orders_per_day is "
            f"{st.max_per_day} on {g.alias}"
        )
    return f"guard {GuardCode(code).name} on {g.alias}"
