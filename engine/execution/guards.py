"""Prop-firm guards: an account's rules checked before every order, and an account in trouble
stopped before the firm stops it (docs/guards.md).

    config [rules.default] -> [rules.<group>] ... -> [rules.<alias>]   merged per account
    hot path   prepare.order_request -> GuardBook.check -> compiled check_guard (engine._fast)
    off it     GuardBook.run, per account: with a live stream, its live state (no read); else
               every read interval (guards.poll_ms, lengthened to keep within guards.read_share
               of each read route's published limit) read state, positions, orders at
               BACKGROUND priority
               -> equity, the day's reference, the drawdown top, open risk, lots, positions
               -> warning levels (events ``guards``, gauge tl_guard_limit_used), halt at
                  guards.halt_level: cancel working orders, flatten, refuse until reset/resume

The arithmetic is ``engine._fast.check_guard`` (compiled, with its twin); this module keeps the
state it reads up to date and turns a refusal code into a sentence with the rule and the numbers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import zoneinfo
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from engine._fast import GuardCode, GuardState, check_guard, worst_loss
from engine.execution import sizing
from engine.execution.accounts import Accounts, AccountSession
from engine.execution.fanout import gated
from engine.execution.settings import AccountSettings, GroupSettings, GuardSettings, RuleSettings
from engine.execution.stoplimit import StopLimitBook
from engine.execution.symbols import SymbolMap
from engine.execution.windows import Blackout, minutes_of, read_blackouts, week_windows
from engine.model.clock import LIVE, Clock
from engine.model.domain import (
    Action,
    Instrument,
    OrderRequest,
    OrderType,
    Priority,
    ProtectionType,
    Side,
    Signal,
)
from engine.model.errors import ValidationError
from engine.model.events import AccountUpdate, Event, EventSink, GuardEvent
from engine.state.account_view import OPEN_ORDER_STATUSES, AccountView, remaining_of
from engine.state.live import LiveState
from engine.venue.protocol import Venue

__all__ = [
    "AccountGuard",
    "GuardBook",
    "GuardRefused",
    "map_symbol",
    "merged_rules",
]

log = logging.getLogger(__name__)
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
class _Held:
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


def _guard_for(alias: str, rules: RuleSettings, margin: float) -> AccountGuard:
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
        measures=_has_money_rules(rules),
    )


def _has_money_rules(r: RuleSettings) -> bool:
    return any(
        x is not None for x in (r.daily_loss, r.daily_loss_pct, r.max_drawdown, r.max_drawdown_pct)
    )


# -- the book ------------------------------------------------------------------------------------


class GuardBook:
    """Every guarded account's rules and live figures; the pipeline asks :meth:`check` before an
    order, :meth:`run` keeps the figures fresh and acts on an account in trouble."""

    def __init__(
        self,
        settings: GuardSettings,
        rules: Mapping[str, RuleSettings],
        bus: EventSink,
        *,
        clock: Clock = LIVE,
        metrics: Any = None,
    ) -> None:
        self.settings = settings
        self.rules = dict(rules)
        self.bus = bus
        self.clock = clock
        self.accounts: dict[str, AccountGuard] = {
            alias: _guard_for(alias, r, settings.safety_margin) for alias, r in rules.items()
        }
        self.blackouts: list[Blackout] = (
            read_blackouts(settings.blackout_file) if settings.blackout_file else []
        )
        self._gauge = None
        if metrics is not None and getattr(metrics, "registry", None) is not None:
            self._gauge = metrics.registry.gauge(
                "tl_guard_limit_used",
                "share of a prop-firm loss limit in use (1 = breached), per account and rule",
                ("account", "rule"),
            )
        self._venue: Venue | None = None
        self._rates: dict[tuple[str, str], float] = {}  # (from, to) currency -> rate
        self.instrument_for: Callable[[str, int], Instrument | None] = lambda a, i: None
        # The venue's id of an instrument a stream names by name (None: unknown).
        self.instrument_id_of: Callable[[str, str], int | None] = lambda a, name: None
        # The account's session (its rate gate): the halt's cancels and closes spend its budget.
        self.session_for: Callable[[str], AccountSession | None] = lambda alias: None
        # Cancels the stop-limit orders the engine holds for an account (they are not at the
        # venue, so the venue's cancel-all does not reach them).
        self.cancel_held: Callable[[str], Awaitable[None]] | None = None
        # The tags of the stop-limit orders the engine holds per account: not at the venue, but
        # their worst case counts while they are held (they may trigger at any quote).
        self.held_tags: Callable[[str], set[str]] = lambda alias: set()
        self._read_waiters: dict[str, asyncio.Event] = {}
        # The live states of the venue's streams (the daemon's list, filled once they open): an
        # account one of them follows live is taken from it, not read.
        self.live_states: list[LiveState] = []
        for g in self.accounts.values():
            self._set_interval(g, settings.poll_ms / 1000.0)
        self._tasks: list[asyncio.Task[None]] = []
        self._acting: dict[str, asyncio.Task[None]] = {}  # a stream update's halt in progress

    @classmethod
    def from_config(
        cls,
        settings: GuardSettings,
        accounts: Iterable[AccountSettings],
        groups: Iterable[GroupSettings],
        rules: Mapping[str, RuleSettings],
        bus: EventSink,
        **kw: Any,
    ) -> GuardBook:
        groups = list(groups)
        merged = {
            a.alias: r
            for a in accounts
            if a.enabled and (r := merged_rules(a.alias, groups, rules)) is not None
        }
        return cls(settings, merged, bus, **kw)

    def __contains__(self, alias: str) -> bool:
        return alias in self.accounts

    def needs_quote(self, alias: str, instrument_id: int, sizing: bool) -> bool:
        """True when a market order on ``alias`` needs an entry price the guard does not have:
        sized by risk, or under a loss limit, with no recent price of the instrument."""
        g = self.accounts.get(alias)
        if g is None or math.isfinite(self._price(g, instrument_id)):
            return False
        return sizing or g.measures

    # -- the hot path ------------------------------------------------------------------------------

    def check(self, req: OrderRequest, bid: float, ask: float) -> str | None:
        """None when ``req`` may go (then it is counted), else the reason it may not."""
        g = self.accounts.get(req.account)
        if g is None:
            return None
        if g.allowed is not None and req.instrument.name not in g.allowed:
            if not g.halt_reason:
                return (
                    f"instrument guard: {req.instrument.name} is not in the instruments allowed "
                    f"on {g.alias} ({', '.join(sorted(g.allowed))})"
                )
        now = self.clock.time_ns() / 1e9
        if now >= g.window_until:
            self._window(g, now)
        if g.window_reason and not g.state.halted:
            return g.window_reason
        mono = self.clock.monotonic()
        if g.measures and mono - g.fresh_at > g.stale_s and math.isfinite(g.fresh_at):
            # Equity this old may hide a loss: no order goes out on it (policy: fail closed).
            age = mono - g.fresh_at
            why = f" (the last read failed: {g.read_error})" if g.read_error else ""
            return (
                f"loss guard: the figures of {g.alias} are {age:.0f} s old{why}; no order goes "
                "out on stale equity until a read succeeds"
            )
        worst = self._worst(g, req, bid, ask)
        # The order-rate ring counts on the monotonic clock (a wall clock step moves no order).
        code = check_guard(g.state, req.instrument.tradable_instrument_id, req.qty, worst, mono)
        if code:
            reason = self.reason(g, code, req, worst)
            self.bus.publish(
                GuardEvent(
                    account=g.alias,
                    kind="refused",
                    rule=GuardCode(code).name.lower(),
                    reason=reason,
                    equity=_num(g.state.equity),
                ),
                g.alias,
            )
            return reason
        g.reserved[req.strategy_tag] = Reserved(
            worst if math.isfinite(worst) else 0.0,
            req.qty,
            req.instrument.tradable_instrument_id,
            self.clock.monotonic(),
        )
        return None

    def _price(self, g: AccountGuard, instrument_id: int) -> float:
        seen = g.last_price.get(instrument_id)
        if seen is None or self.clock.monotonic() - seen[1] > PRICE_FRESH_S:
            return _NAN
        return seen[0]

    def _worst(self, g: AccountGuard, req: OrderRequest, bid: float, ask: float) -> float:
        """What the order loses at its stop loss (or at the configured move without one), in
        the account currency."""
        inst = req.instrument
        vpp = g.vpp.get(inst.tradable_instrument_id)
        if vpp is None:
            vpp = self._value_per_point(g, inst)
        iid = inst.tradable_instrument_id
        if req.type is OrderType.MARKET:
            entry = ask if req.side is Side.BUY else bid
            if not math.isfinite(entry):
                entry = bid if req.side is Side.BUY else ask
            if math.isfinite(entry):
                g.last_price[iid] = (entry, self.clock.monotonic())
            else:  # no fresh quote: the last price the guard saw (start-up, positions, orders)
                entry = self._price(g, iid)
        elif req.type is OrderType.STOP:
            entry = req.stop_price if req.stop_price is not None else _NAN
        else:
            entry = req.price if req.price is not None else _NAN
        sl = req.stop_loss
        if sl is not None and req.stop_loss_type is ProtectionType.ABSOLUTE:
            return worst_loss(entry - sl, req.qty, vpp)
        if sl is not None:  # offset or trailing: a distance from the entry, in price units
            return worst_loss(sl, req.qty, vpp)
        if not math.isfinite(entry):
            return _NAN
        return worst_loss(entry * g.no_sl_move, req.qty, vpp)

    # -- sizing by risk ----------------------------------------------------------------------------

    def size(self, alias: str, inst: Instrument, sig: Signal, bid: float, ask: float) -> float:
        """The lots ``sig`` (risk_pct or risk_amount) risks on ``alias``, from its own equity;
        a ValidationError with the numbers when it cannot be sized or is below the minimum."""
        g = self.accounts[alias]
        iid = inst.tradable_instrument_id
        entry = sizing.entry_price(sig, bid, ask)
        if not math.isfinite(entry) and sig.type is OrderType.MARKET:
            entry = self._price(g, iid)
        vpp = g.vpp.get(iid)
        if vpp is None:
            vpp = self._value_per_point(g, inst)
        return sizing.risk_lots(
            sig,
            inst,
            equity=g.state.equity,
            vpp=vpp,
            entry=entry,
            currency=g.currency,
            account=alias,
        )

    # -- value of a point --------------------------------------------------------------------------

    def _value_per_point(self, g: AccountGuard, inst: Instrument) -> float:
        """Account currency per one price unit per lot: contract size times the quote currency
        in the account currency (1 when they are the same or the quote currency is unknown)."""
        quote_ccy = inst.quote_currency or g.currency
        rate = 1.0 if quote_ccy == g.currency else self._rates.get((quote_ccy, g.currency), _NAN)
        vpp = inst.lot_size * rate
        if math.isfinite(vpp):
            g.vpp[inst.tradable_instrument_id] = vpp
        return vpp

    def set_rate(self, from_ccy: str, to_ccy: str, rate: float) -> None:
        """One unit of ``from_ccy`` is ``rate`` of ``to_ccy`` (from the venue's quotes)."""
        self._rates[(from_ccy, to_ccy)] = rate
        for g in self.accounts.values():
            if g.currency == to_ccy:
                g.vpp.clear()

    # -- trading windows ---------------------------------------------------------------------------

    def _window(self, g: AccountGuard, now: float) -> None:
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
        if not reason and self.blackouts:
            utc = dt.datetime.fromtimestamp(now, dt.UTC)
            for b in self.blackouts:
                if b.start <= utc < b.end:
                    reason = (
                        f"blackout guard: {b.name} from {b.start:%H:%M} to {b.end:%H:%M} UTC "
                        "(guards.blackout_file): no new orders"
                    )
                    break
        g.window_reason = reason
        g.window_until = now + 60.0 - t.second - t.microsecond / 1e6

    # -- the reason --------------------------------------------------------------------------------

    def reason(self, g: AccountGuard, code: int, req: OrderRequest, worst: float) -> str:
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

    # -- off the hot path: keeping the figures -----------------------------------------------------

    async def start(self, venue: Venue) -> None:
        """Read every guarded account once (no order goes out on an unknown equity), then keep
        reading them in the background."""
        self._venue = venue
        for g in self.accounts.values():
            self._set_interval(g, self.read_interval(g.alias))
        await asyncio.gather(*(self.refresh(a) for a in self.accounts))
        await asyncio.gather(*(self._warm_prices(g) for g in self.accounts.values()))
        self._tasks = [
            asyncio.create_task(self.run(alias), name=f"guards-{alias}") for alias in self.accounts
        ]

    def read_interval(self, alias: str) -> float:
        """Seconds between two reads of ``alias``: guards.poll_ms, lengthened until one read per
        interval on each read route is at most guards.read_share of every limit the venue
        publishes for it (2 per second at 25 %: one read every 2 s)."""
        interval = self.settings.poll_ms / 1000.0
        venue = self._venue
        if venue is None:
            return interval
        share = self.settings.read_share
        for lim in venue.rate_limits(alias):
            if lim.route in READ_ROUTES and lim.limit > 0:
                interval = max(interval, lim.interval_s / (share * lim.limit))
        return interval

    @staticmethod
    def _set_interval(g: AccountGuard, interval_s: float) -> None:
        g.interval_s = interval_s
        g.stale_s = max(STALE_MIN_S, STALE_READS * interval_s)

    async def _warm_prices(self, g: AccountGuard) -> None:
        """A price for each allowed instrument, so the first market order on one has an entry
        to measure its stop loss from (a later fresh quote replaces it)."""
        venue = self._venue
        if venue is None or not g.allowed:
            return
        for name in sorted(g.allowed):
            try:
                inst = await venue.instrument(g.alias, name)
                quote = await venue.quote(g.alias, inst)
            except Exception as exc:
                log.warning("guards: no start-up price of %s on %s: %s", name, g.alias, exc)
                continue
            if quote is not None:
                mid = (quote[0] + quote[1]) / 2
                g.last_price[inst.tradable_instrument_id] = (mid, self.clock.monotonic())
            if inst.quote_currency and inst.quote_currency != g.currency:
                await self._warm_rate(g, inst.quote_currency)
            self._value_per_point(g, inst)

    async def _warm_rate(self, g: AccountGuard, ccy: str) -> None:
        """One ``ccy`` in the account currency, from the venue's quote of the pair (either way
        round, named as the account names it)."""
        venue = self._venue
        if venue is None or (ccy, g.currency) in self._rates:
            return
        mids: dict[str, float] = {}
        for pair in (ccy + g.currency, g.currency + ccy):
            try:
                inst = await venue.instrument(g.alias, map_symbol(g.rules, pair))
                quote = await venue.quote(g.alias, inst)
            except Exception:
                continue
            if quote is not None:
                mids[pair] = (quote[0] + quote[1]) / 2
                break
        rate = sizing.conversion(ccy, g.currency, mids.get)
        if math.isfinite(rate):
            self.set_rate(ccy, g.currency, rate)
        else:
            log.warning("guards: no quote converts %s to %s for %s", ccy, g.currency, g.alias)

    async def close(self) -> None:
        tasks = [*self._tasks, *self._acting.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def run(self, alias: str) -> None:
        """Keep ``alias``'s figures: from its live state while its stream is live, else a read
        every read interval."""
        g = self.accounts[alias]
        poll_s = self.settings.poll_ms / 1000.0
        while True:
            # From the stream (no request): every poll_ms; a read: every read interval.
            await self.clock.sleep(poll_s if self.live_view(alias) is not None else g.interval_s)
            await self.refresh(alias)

    def live_view(self, alias: str) -> AccountView | None:
        """The account as its stream shows it now, or None when no stream can say (none
        configured, not live, not synced, resyncing, or no equity in its account status)."""
        for live in self.live_states:
            if live.positions_now(alias) is None:
                continue
            view = live.account(alias)
            if view.status is not None and view.status.equity is not None:
                return view
        return None

    async def refresh(self, alias: str) -> None:
        """Take the account's figures (from its live stream, else three reads at BACKGROUND
        priority) and act on what they show (never raises)."""
        view = self.live_view(alias)
        if view is not None and await self._apply_view(alias, view):
            return
        venue = self._venue
        if venue is None:
            return
        bg = Priority.BACKGROUND
        self.accounts[alias].reads += 1
        try:
            state, positions, orders = await asyncio.gather(
                venue.account_state(alias, priority=bg),
                venue.positions(alias, priority=bg),
                venue.orders(alias, priority=bg),
            )
        except Exception as exc:  # the figures stay as they were; the next read tries again
            self.accounts[alias].read_error = f"{type(exc).__name__}: {exc}"
            log.warning("guards: reading %s failed: %s", alias, exc)
            return
        self.accounts[alias].source = "read"
        await self.apply(alias, state.balance, state.equity, positions, orders, state.details)

    async def _apply_view(self, alias: str, view: AccountView) -> bool:
        """Fold the stream's view of the account (balance, equity, positions, working orders)
        into its guard, as a read would be. False (nothing applied: read instead) when a row
        names an instrument the account does not know."""
        g = self.accounts[alias]
        status = view.status
        assert status is not None and status.equity is not None
        legs = {
            leg
            for p in view.positions.values()
            for leg in (p.stop_loss_order_id, p.take_profit_order_id)
            if leg
        }
        positions = []
        for p in view.positions.values():
            iid = self._instrument_id(alias, p.instrument)
            if iid is None:
                return False
            positions.append(
                _Held(
                    p.lots, iid, p.strategy_id, p.open_price, 0.0, None, p.stop_loss_limit, p.side
                )
            )
        orders = []
        for o in view.orders.values():
            if o.status not in OPEN_ORDER_STATUSES or o.order_id in legs:
                continue
            iid = self._instrument_id(alias, o.instrument)
            if iid is None:
                return False
            left = remaining_of(o)
            if not left:
                continue
            orders.append(_Held(left, iid, o.strategy_id, o.price or _NAN, 0.0, o.position_id))
        g.source = "stream"
        # Open P&L: the stream gives it for the account, not per position.
        await self.apply(
            alias,
            status.balance,
            status.equity,
            positions,
            orders,
            open_pl=status.equity - status.balance,
        )
        return True

    def _instrument_id(self, alias: str, instrument: str) -> int | None:
        if instrument.isdigit():
            return int(instrument)
        return self.instrument_id_of(alias, instrument)

    async def apply(
        self,
        alias: str,
        balance: float,
        equity: float,
        positions: Iterable[Any],
        orders: Iterable[Any],
        details: Mapping[str, float] | None = None,
        *,
        open_pl: float | None = None,
    ) -> None:
        """Fold one reading of the account into its guard, then act on the levels. ``open_pl``:
        the account's open P&L when the positions do not carry theirs (the stream's)."""
        g = self.accounts[alias]
        st = g.state
        r = g.rules
        if not math.isfinite(g.starting_balance):
            g.starting_balance = r.starting_balance or balance
            base = g.starting_balance
            g.daily = r.daily_loss or (base * r.daily_loss_pct / 100 if r.daily_loss_pct else _INF)
            g.drawdown = r.max_drawdown or (
                base * r.max_drawdown_pct / 100 if r.max_drawdown_pct else _INF
            )
            st.daily_limit, st.dd_limit = g.daily, g.drawdown
            g.peak = max(base, equity)
        key = self._day_key(g)
        if key != g.day_key:
            first = not g.day_key
            g.day_key = key
            today = (details or {}).get("todayNet", 0.0) if first else 0.0
            basis = balance - today if (r.daily_basis or "balance") == "balance" else equity
            st.day_ref = basis
            st.day_count = 0
            g.warned.clear()
            if g.halt_until_reset:
                self._resume(g, "the trading day was reset")
        g.peak = max(g.peak, equity)
        st.equity = equity
        g.fresh_at = self.clock.monotonic()
        g.read_error = ""
        st.dd_top = g.peak if (r.drawdown_mode or "static") == "trailing" else g.starting_balance
        self._exposure(g, positions, orders, open_pl)
        await self._levels(g)
        waiter = self._read_waiters.pop(alias, None)
        if waiter is not None:
            waiter.set()

    def add_blackout(self, blackout: Blackout) -> None:
        """A blackout window from a feed (guards.blackout_topic): every account's window verdict
        is decided again at its next order."""
        self.blackouts.append(blackout)
        now = dt.datetime.fromtimestamp(self.clock.time_ns() / 1e9, dt.UTC)
        self.blackouts = [b for b in self.blackouts if b.end > now]
        for g in self.accounts.values():
            g.window_until = -_INF

    def on_event(self, topic: str, event: Event) -> None:
        """A bus subscriber: the Streams API's account status (``account_updates``) moves the
        equity between reads, so a fall is acted on when the venue reports it, not at the next
        ``poll_ms``. Sync and cheap; a halt it calls for runs as a task."""
        if not isinstance(event, AccountUpdate) or event.equity is None:
            return
        g = self.accounts.get(event.account)
        if g is None or not math.isfinite(g.starting_balance):
            return  # not guarded, or not read yet (the first read sets the references)
        st = g.state
        st.equity = event.equity
        g.fresh_at = self.clock.monotonic()
        if event.equity > g.peak:
            g.peak = event.equity
            if (g.rules.drawdown_mode or "static") == "trailing":
                st.dd_top = g.peak
        running = self._acting.get(g.alias)
        if running is None or running.done():
            self._acting[g.alias] = asyncio.get_running_loop().create_task(self._levels(g))

    async def next_read(self, alias: str) -> None:
        """Until the next reading of ``alias`` has been applied (and acted on)."""
        await self._read_waiters.setdefault(alias, asyncio.Event()).wait()

    def _day_key(self, g: AccountGuard) -> str:
        t = dt.datetime.fromtimestamp(self.clock.time_ns() / 1e9, g.tz)
        return (t - dt.timedelta(minutes=g.reset_min)).date().isoformat()

    def _exposure(
        self,
        g: AccountGuard,
        positions: Iterable[Any],
        orders: Iterable[Any],
        open_pl: float | None = None,
    ) -> None:
        """Open lots, positions and risk from a reading. ``open_pl`` is given for the stream's
        view (untagged rows, the account's open P&L only): a row without a tag is matched to an
        order the guard passed by instrument and lots, a position's worst case is measured to
        its own stop loss when it has one, and a working order nobody matches counts the
        ``no_sl_move_pct`` move from its price."""
        st = g.state
        now = self.clock.monotonic()
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
                vpp = self._vpp(g, p.instrument_id)
                sl = getattr(p, "stop_loss", None)
                tag = self._match(g, p, seen) if streamed else None
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
                tag = self._match(g, o, seen)
                if tag is not None:
                    risk += g.reserved[tag].risk
                else:
                    worst = o.avg_price * g.no_sl_move * o.qty * self._vpp(g, o.instrument_id)
                    risk += worst if math.isfinite(worst) else 0.0
        held = self.held_tags(g.alias)
        for tag, res in list(g.reserved.items()):
            if tag in seen:
                continue
            if now - res.since > RESERVE_GRACE_S and tag not in held:
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

    def _vpp(self, g: AccountGuard, instrument_id: int) -> float:
        vpp = g.vpp.get(instrument_id)
        if vpp:
            return vpp
        inst = self.instrument_for(g.alias, instrument_id)
        return self._value_per_point(g, inst) if inst is not None else _NAN

    @staticmethod
    def _match(g: AccountGuard, row: Any, seen: set[str]) -> str | None:
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

    async def _levels(self, g: AccountGuard) -> None:
        st = g.state
        checks = (
            ("daily_loss", st.day_ref - st.equity, st.daily_limit),
            ("drawdown", st.dd_top - st.equity, st.dd_limit),
        )
        for rule, lost, limit in checks:
            if not math.isfinite(limit):
                continue
            used = max(0.0, lost) / limit
            g.used[rule] = used
            if self._gauge is not None:
                self._gauge.set(used, account=g.alias, rule=rule)
            if used >= self.settings.halt_level and not st.halted:
                await self.halt(
                    g.alias,
                    f"{rule.replace('_', ' ')} at {used:.0%} of its limit ({lost:.2f} of "
                    f"{limit:.2f} {g.currency}, halt_level {self.settings.halt_level:.0%})",
                    rule=rule,
                    until_reset=True,
                )
                continue
            for level in self.settings.warn_levels:
                if used >= level and (rule, level) not in g.warned:
                    g.warned.add((rule, level))
                    self.bus.publish(
                        GuardEvent(
                            account=g.alias,
                            kind="warning",
                            rule=rule,
                            level=level,
                            used=used,
                            limit=limit,
                            equity=st.equity,
                            reason=f"{rule.replace('_', ' ')} at {used:.0%} of its limit "
                            f"({lost:.2f} of {limit:.2f} {g.currency}) on {g.alias}",
                        ),
                        g.alias,
                    )
        now = self.clock.time_ns() / 1e9
        if g.weekend_min is not None and not st.halted:
            self._window(g, now)
            if g.window_reason.startswith("weekend"):
                await self.halt(g.alias, g.window_reason, rule="weekend", until_reset=True)

    # -- acting ------------------------------------------------------------------------------------

    async def halt(self, alias: str, why: str, *, rule: str = "manual", until_reset: bool) -> None:
        """Stop the account: refuse new orders, cancel its working orders and (with
        guards.flatten_on_halt) close its positions; one event says why and what was done."""
        g = self.accounts[alias]
        g.state.halted = True
        g.halt_reason = why
        g.halt_until_reset = until_reset
        done = []
        venue = self._venue
        session = self.session_for(alias)
        if venue is not None and session is not None:
            try:
                await gated(
                    session,
                    Action.CANCEL_ALL,
                    Priority.CANCEL,
                    lambda: venue.cancel_all_orders(alias),
                )
                if self.cancel_held is not None:
                    await self.cancel_held(alias)
                done.append("working orders cancelled")
            except Exception as exc:
                done.append(f"cancelling working orders failed ({exc})")
            if self.settings.flatten_on_halt:
                try:
                    await gated(
                        session,
                        Action.CLOSE_ALL,
                        Priority.CLOSE,
                        lambda: venue.close_all_positions(alias),
                    )
                    done.append("positions closed")
                except Exception as exc:
                    done.append(f"closing positions failed ({exc})")
        until = "the next reset or a resume" if until_reset else "a resume"
        self.bus.publish(
            GuardEvent(
                account=alias,
                kind="halted",
                rule=rule,
                used=g.used.get(rule),
                equity=_num(g.state.equity),
                reason=f"{alias} halted: {why}; {', '.join(done) or 'nothing to cancel'}; "
                f"no new orders until {until}",
            ),
            alias,
        )
        log.warning("guards: %s halted: %s", alias, why)

    def resume(self, alias: str) -> bool:
        """Let a halted account trade again (the operator's ``resume``); False if not halted."""
        g = self.accounts.get(alias)
        if g is None or not g.state.halted:
            return False
        self._resume(g, "resumed by the operator")
        return True

    def _resume(self, g: AccountGuard, why: str) -> None:
        g.state.halted = False
        g.halt_reason = ""
        g.halt_until_reset = False
        self.bus.publish(GuardEvent(account=g.alias, kind="resumed", reason=why), g.alias)


async def start_guards(
    settings: GuardSettings,
    account_settings: Iterable[AccountSettings],
    groups: Iterable[GroupSettings],
    rules: Mapping[str, RuleSettings],
    accounts: Accounts,
    bus: EventSink,
    *,
    metrics: Any = None,
    clock: Clock = LIVE,
    stop_limits: StopLimitBook | None = None,
    live_states: list[LiveState] | None = None,
) -> tuple[GuardBook | None, SymbolMap | None]:
    """The guards and symbol map of a started set of accounts (None, None without [rules.*]):
    symbol mappings checked against each account's instruments, every guarded account read
    once, the background reads started. Raises ConfigError on a mapping to nothing."""
    if not rules:
        return None, None
    book = GuardBook.from_config(
        settings, account_settings, groups, rules, bus, metrics=metrics, clock=clock
    )
    book.instrument_for = lambda alias, iid: accounts[alias].instruments_by_id.get(iid)
    book.instrument_id_of = lambda alias, name: (
        inst.tradable_instrument_id
        if (inst := accounts[alias].instruments_by_name.get(name)) is not None
        else None
    )
    if live_states is not None:
        book.live_states = live_states
    book.session_for = accounts.sessions.get
    if stop_limits is not None:
        book.cancel_held = stop_limits.cancel_all
        book.held_tags = lambda alias: {
            h.request.strategy_tag for h in stop_limits.held() if h.request.account == alias
        }
    symbols = SymbolMap(book.rules)
    symbols.check({a: list(s.instruments_by_name) for a, s in accounts.sessions.items()})
    venue = next(iter(accounts.sessions.values())).venue
    await book.start(venue)
    return book, (symbols or None)


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None
