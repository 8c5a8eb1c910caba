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
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from engine._fast import GuardCode, check_guard, worst_loss
from engine.execution import sizing
from engine.execution.accounts import AccountSession
from engine.execution.guard_figures import day_key, fold_exposure, view_rows
from engine.execution.guard_halt import stop_account
from engine.execution.guard_prices import GuardPrices
from engine.execution.guard_rules import (
    READ_ROUTES,
    STALE_MIN_S,
    STALE_READS,
    AccountGuard,
    GuardRefused,
    Reserved,
    guard_for,
    map_symbol,
    merged_rules,
    num,
)
from engine.execution.guard_text import decide_window, refusal
from engine.execution.settings import AccountSettings, GroupSettings, GuardSettings, RuleSettings
from engine.execution.windows import Blackout, read_blackouts
from engine.model.clock import LIVE, Clock
from engine.model.domain import (
    Instrument,
    OrderRequest,
    OrderType,
    Priority,
    ProtectionType,
    Side,
    Signal,
)
from engine.model.events import AccountUpdate, Event, EventSink, GuardEvent
from engine.state.account_view import AccountView
from engine.state.live import LiveState
from engine.venue.protocol import Venue

# Beside this module: the rule model (guard_rules), the words (guard_text), the figures
# (guard_figures), the halt's venue actions (guard_halt) and the assembly (guard_setup).
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
            alias: guard_for(alias, r, settings.safety_margin) for alias, r in rules.items()
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
        self.prices = GuardPrices(clock, self.accounts, lambda a, i: self.instrument_for(a, i))
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
        if g is None or math.isfinite(self.prices.price(g, instrument_id)):
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
            decide_window(g, now, self.blackouts)
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
            reason = refusal(g, code, req, worst)
            self.bus.publish(
                GuardEvent(
                    account=g.alias,
                    kind="refused",
                    rule=GuardCode(code).name.lower(),
                    reason=reason,
                    equity=num(g.state.equity),
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

    def _worst(self, g: AccountGuard, req: OrderRequest, bid: float, ask: float) -> float:
        """What the order loses at its stop loss (or at the configured move without one), in
        the account currency."""
        inst = req.instrument
        vpp = g.vpp.get(inst.tradable_instrument_id)
        if vpp is None:
            vpp = self.prices.value_per_point(g, inst)
        iid = inst.tradable_instrument_id
        if req.type is OrderType.MARKET:
            entry = ask if req.side is Side.BUY else bid
            if not math.isfinite(entry):
                entry = bid if req.side is Side.BUY else ask
            if math.isfinite(entry):
                g.last_price[iid] = (entry, self.clock.monotonic())
            else:  # no fresh quote: the last price the guard saw (start-up, positions, orders)
                entry = self.prices.price(g, iid)
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
            entry = self.prices.price(g, iid)
        vpp = g.vpp.get(iid)
        if vpp is None:
            vpp = self.prices.value_per_point(g, inst)
        return sizing.risk_lots(
            sig,
            inst,
            equity=g.state.equity,
            vpp=vpp,
            entry=entry,
            currency=g.currency,
            account=alias,
        )

    def set_rate(self, from_ccy: str, to_ccy: str, rate: float) -> None:
        """One unit of ``from_ccy`` is ``rate`` of ``to_ccy`` (from the venue's quotes)."""
        self.prices.set_rate(from_ccy, to_ccy, rate)

    # -- off the hot path: keeping the figures -----------------------------------------------------

    async def start(self, venue: Venue) -> None:
        """Read every guarded account once (no order goes out on an unknown equity), then keep
        reading them in the background."""
        self._venue = venue
        for g in self.accounts.values():
            self._set_interval(g, self.read_interval(g.alias))
        await asyncio.gather(*(self.refresh(a) for a in self.accounts))
        await asyncio.gather(*(self.prices.warm_prices(venue, g) for g in self.accounts.values()))
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
        status = view.status
        assert status is not None and status.equity is not None
        rows = view_rows(view, lambda name: self._instrument_id(alias, name))
        if rows is None:
            return False
        self.accounts[alias].source = "stream"
        # Open P&L: the stream gives it for the account, not per position.
        await self.apply(
            alias,
            status.balance,
            status.equity,
            *rows,
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
        key = day_key(g, self.clock.time_ns() / 1e9)
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
        fold_exposure(
            g,
            positions,
            orders,
            open_pl,
            now=self.clock.monotonic(),
            vpp_of=self.prices.vpp,
            held=self.held_tags,
        )
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
            decide_window(g, now, self.blackouts)
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
        done = await stop_account(
            self._venue,
            self.session_for(alias),
            alias,
            cancel_held=self.cancel_held,
            flatten=self.settings.flatten_on_halt,
        )
        until = "the next reset or a resume" if until_reset else "a resume"
        self.bus.publish(
            GuardEvent(
                account=alias,
                kind="halted",
                rule=rule,
                used=g.used.get(rule),
                equity=num(g.state.equity),
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
