"""Everything the sandbox knows, in one object shared by the REST app and the streams server.

The streams side (``sandbox.streams``) uses exactly this surface:
``verify_stream_token(token) -> (brandId, accountId)`` (raises :class:`TokenError` with
``reason`` invalid/expired), ``stream_snapshot(account_id)``, ``add_stream_listener(fn)`` /
``remove_stream_listener(fn)`` (``fn(account_id, message)`` is called synchronously, in order, for
every change), and ``faults`` (``drop_stream_connections``, ``stream_latency_ms``, ``stream_ack``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sandbox.auth import Auth
from sandbox.book import OrderBook
from sandbox.clock import VenueClock, wall_ms
from sandbox.faults import Faults
from sandbox.models import SimAccount
from sandbox.prices import PriceBook
from sandbox.ratelimit import RateLimiter
from sandbox.seed import SandboxConfig, default_users
from sandbox.sessions import trading_hours_start
from sandbox.tokens import TokenError

log = logging.getLogger(__name__)

StreamListener = Callable[[str, dict[str, Any]], None]

__all__ = ["SandboxState", "StreamListener", "TokenError", "start_clock"]


def start_clock(config: SandboxConfig, wall: Callable[[], int] = wall_ms) -> VenueClock:
    """The venue clock, running from where ``config.clock_start`` says: the wall time, the last
    trading hours (sandbox.sessions.trading_hours_start) or an instant."""
    clock = VenueClock(wall)
    start = config.clock_start
    if start == "tradingHours":
        now = clock.now_ms()
        start = trading_hours_start(config.venue.hours, config.instruments, now)
        if start == now:
            return clock
    if isinstance(start, int):
        clock.set(start, frozen=False)
    return clock


class SandboxState:
    def __init__(
        self,
        config: SandboxConfig | None = None,
        faults: Faults | None = None,
        clock: VenueClock | None = None,
    ) -> None:
        """``clock``: the venue clock; by default started as ``config.clock_start`` says."""
        self.config = config or SandboxConfig(users=default_users())
        if faults is None:
            # The profile's faults are the baseline; the seed's come on top of them.
            faults = Faults(rng_seed=self.config.rng_seed, baseline=self.config.profile_faults)
            if self.config.faults:
                faults.update(self.config.faults)
        self.faults = faults
        self.accounts: dict[str, SimAccount] = {}
        for user in self.config.users:
            for acc_num, spec in enumerate(user.accounts, start=1):
                self.accounts[spec.id] = SimAccount(
                    id=spec.id,
                    acc_num=acc_num,
                    uid=user.uid,
                    brand=user.server,
                    name=spec.name,
                    currency=spec.currency,
                    balance=spec.balance,
                    status=spec.status,
                )
        # The venue's clock (sessions, trading day, timestamps): tests move it, nothing sleeps.
        self.clock = clock or start_clock(self.config)
        self.prices = PriceBook(self.config.instruments, self.config.rng_seed, self.clock)
        self.instruments = {i.tradable_instrument_id: i for i in self.config.instruments}
        self.auth = Auth(self.config, self.accounts)
        self.book = OrderBook(
            self.accounts,
            self.prices,
            self.config.rng_seed,
            self._emit,
            venue=self.config.venue,
            faults=self.faults,
            clock=self.clock,
        )
        self.rate_limiter = RateLimiter(dict(self.config.rate_limits), self.config.rate_limit_scope)
        self._listeners: list[StreamListener] = []

    # -- streams contract -----------------------------------------------------------------------

    def verify_stream_token(self, token: str) -> tuple[str, str]:
        return self.auth.verify_stream_token(token)

    def stream_snapshot(self, account_id: str) -> list[dict[str, Any]]:
        """AccountStatus, then every Position, then every working order as OpenOrder PENDING."""
        account = self.accounts[account_id]
        messages = [self.book.account_status_message(account)]
        messages += [self.book.position_message(p) for p in account.positions.values()]
        messages += [self.book.open_order_message(o, "PENDING") for o in account.orders.values()]
        return messages

    def add_stream_listener(self, fn: StreamListener) -> None:
        self._listeners.append(fn)

    def remove_stream_listener(self, fn: StreamListener) -> None:
        try:
            self._listeners.remove(fn)
        except ValueError:
            pass

    def _emit(self, account_id: str, message: dict[str, Any]) -> None:
        for fn in list(self._listeners):
            try:
                fn(account_id, message)
            except Exception:  # one broken listener must not stop trading or the others
                log.exception("stream listener %r failed", fn)

    # -- market control (timer, admin endpoint, tests) ------------------------------------------

    def instrument_id(self, ref: str | int) -> int:
        """A tradable instrument id from an id or a symbol name; KeyError when unknown."""
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            tid = int(ref)
            if tid in self.instruments:
                return tid
        for spec in self.instruments.values():
            if spec.name == ref:
                return spec.tradable_instrument_id
        raise KeyError(f"unknown instrument {ref!r}")

    def set_price(
        self,
        instrument: str | int,
        *,
        bid: float | None = None,
        ask: float | None = None,
        mid: float | None = None,
    ) -> None:
        """Set a quote and trigger every working order it crosses, before returning."""
        tid = self.instrument_id(instrument)
        self.prices.set_quote(tid, bid=bid, ask=ask, mid=mid)
        self.book.on_quote(tid)
        self._emit_valuations(tid)

    def step_prices(self, steps: int = 1, instrument: str | int | None = None) -> None:
        tid = None if instrument is None else self.instrument_id(instrument)
        for _ in range(steps):
            for moved in self.prices.step(tid):
                self.book.on_quote(moved)
                self._emit_valuations(moved)

    def _emit_valuations(self, tid: int) -> None:
        # Equity moves with the price: accounts holding the instrument get a fresh AccountStatus.
        if not self._listeners:
            return
        for account in self.accounts.values():
            if any(p.tid == tid for p in account.positions.values()):
                self._emit(account.id, self.book.account_status_message(account))
