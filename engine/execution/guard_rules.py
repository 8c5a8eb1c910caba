"""The rule model of the prop-firm guards (docs/guards.md): an account's rules merged from
``[rules.default]``, its groups' tables and its own, and the per-account guard they become (the
compiled ``GuardState`` and the figures kept beside it). Loading only; ``guards.GuardBook`` checks
and acts with them."""

from __future__ import annotations

import datetime as dt
import math
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from engine._fast import GuardState
from engine.execution.settings import GroupSettings, RuleSettings
from engine.execution.windows import minutes_of, week_windows
from engine.model.domain import Side
from engine.model.errors import ValidationError

__all__ = [
    "DEFAULT_NO_SL_MOVE_PCT",
    "PRICE_FRESH_S",
    "READ_ROUTES",
    "RESERVE_GRACE_S",
    "STALE_MIN_S",
    "STALE_READS",
    "AccountGuard",
    "GuardRefused",
    "Held",
    "Reserved",
    "guard_for",
    "map_symbol",
    "merged_rules",
    "num",
]

_INF = math.inf
_NAN = math.nan
# A reserved worst case whose order the venue does not show yet is kept this long (the order
# may still be on its way); after it, an order the venue never showed is forgotten.
RESERVE_GRACE_S = 15.0
DEFAULT_NO_SL_MOVE_PCT = 2.0
# A price the guard saw is used as a market order's entry (when no fresh quote) this long.
PRICE_FRESH_S = 60.0
# The routes the guards' three reads (account state, positions, working orders) spend, by the
# names TradeLocker publishes their limits under (rateLimitType); a venue publishing none of them
# is read every guards.poll_ms.
READ_ROUTES = frozenset({"GET_ACCOUNTS_STATE", "GET_POSITIONS", "GET_ORDERS"})
# Figures older than this many read intervals (and at least STALE_MIN_S) refuse orders on an
# account with a loss limit.
STALE_READS = 5
STALE_MIN_S = 10.0


class GuardRefused(ValidationError):
    """An order a guard refused: rejected with the rule and the numbers, not bad input (it is
    not published on ``rejected_signals``)."""


# -- the rules of one account ----------------------------------------------------------------------


def merged_rules(
    alias: str, groups: Iterable[GroupSettings], rules: Mapping[str, RuleSettings]
) -> RuleSettings | None:
    """``default``, then each group ``alias`` is a member of (config order), then its own: a
    later table's set keys win. None when no table applies."""
    chain = [rules.get("default")]
    chain += [rules.get(g.name) for g in groups if alias in g.members]
    chain.append(rules.get(alias))
    present = [r for r in chain if r is not None]
    if not present:
        return None
    out = present[0]
    for r in present[1:]:
        out = replace(
            out, **{f.name: getattr(r, f.name) for f in fields(r) if getattr(r, f.name) is not None}
        )
    return out


def map_symbol(rules: RuleSettings | None, symbol: str) -> str:
    """The account's name for a signal's symbol: the explicit table first, else prefix + symbol +
    suffix (``EURUSD`` -> ``EURUSD.pro``)."""
    if rules is None:
        return symbol
    for name, mapped in rules.symbols or ():
        if name == symbol:
            return mapped
    return f"{rules.symbol_prefix or ''}{symbol}{rules.symbol_suffix or ''}"


# -- one account ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Reserved:
    """An order that passed the guard: its worst case counts until the venue shows it closed."""

    risk: float
    qty: float
    instrument_id: int
    since: float  # monotonic s


@dataclass(frozen=True, slots=True)
class Held:
    """A position or working order from the stream's view, shaped as a read's row."""

    qty: float
    instrument_id: int
    strategy_id: str
    avg_price: float
    unrealized_pl: float
    position_id: str | None = None
    stop_loss: float | None = None
    side: Side = Side.BUY


@dataclass(slots=True)
class AccountGuard:
    alias: str
    rules: RuleSettings
    state: Any  # GuardState (compiled or twin)
    tz: dt.tzinfo
    reset_min: int
    allowed: frozenset[str] | None
    windows: list[tuple[int, int]]
    weekend_min: int | None  # Friday minute-of-week after which the account goes flat
    no_sl_move: float  # fraction of the price
    currency: str
    measures: bool  # a loss limit: orders' worst cases are measured
    daily: float = _INF  # amounts, resolved once the starting balance is known
    drawdown: float = _INF
    starting_balance: float = _NAN
    day_key: str = ""
    peak: float = _NAN
    reserved: dict[str, Reserved] = field(default_factory=dict)
    warned: set[tuple[str, float]] = field(default_factory=set)
    halt_reason: str = ""
    halt_until_reset: bool = False
    vpp: dict[int, float] = field(default_factory=dict)  # instrument -> value per point per lot
    window_until: float = -_INF  # wall s: the window verdict below holds until then
    fresh_at: float = -_INF  # monotonic s of the last reading (or stream update) of equity
    read_error: str = ""  # why the last read failed ("" after a good one)
    window_reason: str = ""
    used: dict[str, float] = field(default_factory=dict)  # rule -> share of its limit used
    # instrument -> (a recent price, monotonic s): from the quotes orders were checked with and
    # the start-up reads; older than PRICE_FRESH_S it is not used.
    last_price: dict[int, tuple[float, float]] = field(default_factory=dict)
    # Seconds between two reads of the account while its stream is not live (read_interval),
    # and the age of figures that refuses orders (STALE_READS of them, at least STALE_MIN_S).
    interval_s: float = 1.0
    stale_s: float = STALE_MIN_S
    source: str = ""  # where the last figures came from: "read" or "stream"
    reads: int = 0  # reads of the account's state, positions and orders sent (three requests)


def guard_for(alias: str, rules: RuleSettings, margin: float) -> AccountGuard:
    st = GuardState(
        margin=margin,
        max_lots_order=rules.max_lots_order or _INF,
        max_lots_instrument=rules.max_lots_instrument or _INF,
        max_lots_account=rules.max_lots_account or _INF,
        max_positions=rules.max_positions or 0,
        max_per_minute=rules.max_orders_per_minute or 0,
        max_per_day=rules.max_orders_per_day or 0,
    )
    weekend = None
    if rules.flat_before_weekend:
        weekend = 4 * 1440 + minutes_of(rules.flat_before_weekend)
    return AccountGuard(
        alias=alias,
        rules=rules,
        state=st,
        tz=zoneinfo.ZoneInfo(rules.timezone or "UTC"),
        reset_min=minutes_of(rules.reset_time or "00:00"),
        # As the account names them (a signal's symbol is mapped before the check).
        allowed=(
            frozenset(map_symbol(rules, s) for s in rules.instruments)
            if rules.instruments is not None
            else None
        ),
        windows=week_windows(rules.sessions or ()),
        weekend_min=weekend,
        no_sl_move=(rules.no_sl_move_pct or DEFAULT_NO_SL_MOVE_PCT) / 100.0,
        currency=rules.currency or "USD",
        measures=has_money_rules(rules),
    )


def has_money_rules(r: RuleSettings) -> bool:
    return any(
        x is not None for x in (r.daily_loss, r.daily_loss_pct, r.max_drawdown, r.max_drawdown_pct)
    )


def num(x: float) -> float | None:
    """``x``, or None when it is not finite (an event's figure that is not known)."""
    return x if math.isfinite(x) else None
