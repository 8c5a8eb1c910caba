"""Quotes by polling ``GET /trade/quotes``, paced by the venue's own QUOTES rate limit.

One budget per login: every quote request of a login (this feed's polls, the instrument cache's
INFO-route probes, the venue's one-off ``quote()``) waits for a turn of the login's single
:class:`QuotePacer`, so together they never exceed the QUOTES limit. ``TradeLockerVenue`` owns one
pacer per login and builds the login's feed on that same pacer (:func:`login_feed`); the feed is
the venue's :class:`~engine.venue.protocol.QuoteSource` for every account of the login.

TradeLocker has no market-data stream for traders (docs/api-reference.md section 10), so prices are
polled. One :class:`QuoteFeed` serves one login: the QUOTES limit is the login's, and every
account of the login sees the same prices, so one feed is shared by all of them.

Pacing: requests go out one at a time, at most ``limit / window * share`` per second, evenly
spaced, so no window of the venue's limiter ever sees more than the limit (no bursts to "catch
up"). Subscribed instruments share that budget round-robin: with N instruments each is refreshed
every N / rate seconds. The feed never retries a request on its own, so every request it makes
is one the budget allowed.

INFO routes: an instrument may list several INFO routes of which some are dead (the official
client's "symbol not found" fix). The feed probes them in order and keeps the first one that
answers with a price; when the chosen route starts failing it moves on to the next.

Two kinds of interest keep an instrument polled, so the budget goes only to instruments in use:

* a callback (stop-limit emulation watches the instruments it holds orders on and removes its
  callback with :meth:`QuoteFeed.remove_callback` when nothing is held there any more);
* a lease (pre-validation calls :meth:`QuoteFeed.quote_for_order` on every order, which subscribes
  an instrument on its first order and keeps it polled for ``lease_s`` after its last one). An
  instrument with no callback and an expired lease is dropped by the poller without spending a
  request on it.

Freshness: :meth:`QuoteFeed.fresh` trusts a quote only while it is younger than a few refresh
periods of its instrument (``stale_cycles`` x instruments x interval, and never older than
``max_age_s``); otherwise the price is unknown, which must never block an order.

:meth:`QuoteFeed.last` and :meth:`QuoteFeed.fresh` are dictionary lookups (no await), and callbacks
fire on the event loop when a quote changes (they must not block).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.model.domain import Quote, QuoteCallback
from engine.model.errors import ConfigError, EngineError

log = logging.getLogger(__name__)

QUOTES_PATH = "/trade/quotes"
_MEASURE_SECONDS = {"SECONDS": 1.0, "MINUTES": 60.0}
# After this many consecutive failures the chosen INFO route is abandoned for the next one.
_ROUTE_FAILURES_BEFORE_SWITCH = 3


class QuoteQuery(Protocol):
    """An idempotent GET returning the ``d`` payload (None for ``no_data``); RestClient fits."""

    async def query(
        self,
        path: str,
        params: Mapping[str, str | int] | None = None,
        *,
        attempts: int | None = None,
    ) -> Any: ...


@dataclass(slots=True)
class _Subscription:
    instrument_id: int
    routes: tuple[int, ...]
    route_index: int = 0
    probing: bool = True  # until one route has answered with a price
    failures: int = 0
    callbacks: list[QuoteCallback] = field(default_factory=list)
    lease_until_ns: int = 0  # polled at least until then (monotonic ns), callbacks or not
    pinned: bool = False  # subscribed without a callback: polled until unsubscribed

    def wanted(self, now_ns: int) -> bool:
        return self.pinned or bool(self.callbacks) or now_ns < self.lease_until_ns


def quotes_rate(config: Mapping[str, Any], share: float = 0.9) -> float:
    """Requests per second allowed by ``rateLimits`` QUOTES in a ``/trade/config`` payload,
    times ``share`` (the share of the limit used). Raises :class:`ConfigError` when the venue
    publishes none."""
    limit, window = quotes_limit(config)
    return limit / window * share


def quotes_limit(config: Mapping[str, Any]) -> tuple[float, float]:
    """(requests, window in seconds) of ``rateLimits`` QUOTES; ConfigError when none."""
    for entry in config.get("rateLimits") or ():
        if isinstance(entry, dict) and entry.get("rateLimitType") == "QUOTES":
            try:
                limit = float(entry["limit"])
                window = (
                    float(entry.get("intervalNum", 1))
                    * _MEASURE_SECONDS[str(entry.get("measure", "SECONDS")).upper()]
                )
            except (KeyError, TypeError, ValueError):
                raise ConfigError(f"rateLimits QUOTES entry is not understood: {entry!r}") from None
            if limit <= 0 or window <= 0:
                raise ConfigError(f"rateLimits QUOTES must be positive, got {entry!r}")
            return limit, window
    raise ConfigError("/trade/config publishes no QUOTES rate limit; pass requests_per_second")


def decode_quote(instrument_id: int, payload: Any, received_ns: int) -> Quote | None:
    """``{ap, bp, as, bs}`` → Quote; None when the payload has no usable price."""
    if not isinstance(payload, dict):
        return None
    try:
        ask, bid = float(payload["ap"]), float(payload["bp"])
    except (KeyError, TypeError, ValueError):
        return None
    try:
        ask_size, bid_size = float(payload.get("as") or 0.0), float(payload.get("bs") or 0.0)
    except (TypeError, ValueError):
        ask_size = bid_size = 0.0
    return Quote(instrument_id, bid, ask, bid_size, ask_size, received_ns)


class QuotePacer:
    """One login's QUOTES budget: quote requests go out one at a time, evenly spaced.

    Whoever sends a quote request awaits :meth:`turn` right before sending it. Turns are granted
    first come, first served, and the next one no sooner than an interval after the moment this
    one is granted (never from its planned time), so a late wake-up on a busy loop cannot let two
    requests out back to back to "catch up". Sharing one pacer is what keeps several callers of
    one login inside one limit; a caller that sends without a turn breaks that promise.

    Several engine processes on one login (a Kafka consumer group) each hold a ``fraction`` of
    it (:meth:`set_fraction`, docs/kafka.md "Per-login budgets"): the pace is the rate times the
    fraction (whole requests per window); at fraction 0 the feed does not poll and a one-off
    request gets one turn per window."""

    def __init__(self, requests_per_second: float) -> None:
        self.interval = 0.0
        self._rate = 0.0
        self.fraction = 1.0
        self._shared = False  # set_fraction called: several processes share the login
        self.window_s = 1.0  # the venue's QUOTES window (set with the rate from /trade/config)
        self._open = asyncio.Event()
        self._open.set()
        self.set_rate(requests_per_second)
        self._last = -1e18  # monotonic s of the last turn granted
        self._lock = asyncio.Lock()
        self.turns = 0

    @property
    def requests_per_second(self) -> float:
        """The pace now (0 while this process holds no share of the login)."""
        return 1.0 / self.interval if self.fraction > 0 else 0.0

    def set_rate(self, requests_per_second: float) -> None:
        """Change the pace (e.g. once ``/trade/config`` is known); applies from the next turn."""
        if not requests_per_second > 0:
            raise ConfigError(f"requests_per_second must be positive, got {requests_per_second}")
        self._rate = requests_per_second
        self._apply()

    def set_fraction(self, fraction: float) -> None:
        """This process's share of the login's budget (0..1); applies from the next turn, and a
        lower one at once: the next turn waits a full new interval after the last one."""
        if not 0.0 <= fraction <= 1.0:
            raise ConfigError(f"a quote budget fraction must be in [0, 1], got {fraction}")
        if self.fraction == 0 < fraction:
            # A share given (every rebalance passes through 0: eager, revoked first): the venue's
            # window may still hold the others' requests from before it, so the first turn
            # under the new share waits a full interval instead of going at once.
            self._last = max(self._last, time.monotonic())
        self.fraction = fraction
        self._shared = True
        self._apply()

    def _apply(self) -> None:
        if self.fraction > 0:
            rate = self._rate * self.fraction
            if self._shared:
                # Evenly spaced at r per second, a process can land ceil(r x window) requests
                # in one venue window, so shares of 2.25/s each put 3 + 3 into a window of 5:
                # a share is a whole number of requests per window (when it is at least one).
                per_window = math.floor(rate * self.window_s + 1e-9)
                if per_window >= 1:
                    rate = per_window / self.window_s
            self.interval = 1.0 / rate
            self._open.set()
        else:
            # No share: the feed stops polling (it waits for resumed()); a one-off request of a
            # signal this process is still finishing (an instrument probe, a stop-limit quote)
            # still gets a turn, one per window, within the headroom the shares leave (each
            # share is rounded down to whole requests per window of 0.9 of the limit), so no
            # signal waits for a rebalance that may never give this process a share again.
            self.interval = max(self.window_s, 1.0 / self._rate)
            self._open.clear()

    def done(self) -> None:
        """The request of the last turn has its reply: the next turn waits a full interval from
        now. The venue counts a request when it arrives, somewhere before its reply, so spacing
        turns from replies (not from grants) keeps arrivals an interval apart however late a
        request left or how long it travelled (the window-edge rule the rate gate also keeps)."""
        self._last = max(self._last, time.monotonic())

    async def resumed(self) -> None:
        """Until this process holds a share of the login's budget again."""
        await self._open.wait()

    async def turn(self) -> None:
        """Wait until one quote request may go out now; the caller sends it at once."""
        async with self._lock:
            # A lower pace set while waiting applies too: sleep again until a full interval
            # after the last turn.
            delay = self._last + self.interval - time.monotonic()
            while delay > 0:
                await asyncio.sleep(delay)
                delay = self._last + self.interval - time.monotonic()
            self._last = time.monotonic()
            self.turns += 1


class QuoteFeed:
    """Last quote per subscribed instrument, polled within the QUOTES limit of one login.

    Give either ``requests_per_second`` (the feed gets a pacer of its own) or ``pacer`` (the
    login's shared one, whose pace is then the feed's)."""

    def __init__(
        self,
        rest: QuoteQuery,
        requests_per_second: float | None = None,
        *,
        pacer: QuotePacer | None = None,
        lease_s: float = 600.0,
        stale_cycles: float = 3.0,
        max_age_s: float = 5.0,
    ) -> None:
        if (pacer is None) == (requests_per_second is None):
            raise ConfigError("give a QuoteFeed either requests_per_second or a shared pacer")
        if lease_s <= 0 or stale_cycles <= 0 or max_age_s <= 0:
            raise ConfigError("lease_s, stale_cycles and max_age_s must be positive")
        self._rest = rest
        self.pacer = pacer if pacer is not None else QuotePacer(requests_per_second or 0.0)
        self._lease_ns = int(lease_s * 1e9)
        self._stale_cycles = stale_cycles
        self._max_age_ns = int(max_age_s * 1e9)
        self._subs: dict[int, _Subscription] = {}
        self._order: list[int] = []
        self._next = 0
        self._last: dict[int, Quote] = {}
        self._callbacks: list[QuoteCallback] = []
        self._task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self.requests_sent = 0
        self.errors = 0

    @property
    def interval(self) -> float:
        """Seconds between two quote requests of the login (the pacer's spacing)."""
        return self.pacer.interval

    @classmethod
    def from_config(
        cls,
        rest: QuoteQuery,
        config: Mapping[str, Any],
        share: float = 0.9,
        *,
        pacer: QuotePacer | None = None,
        lease_s: float = 600.0,
        stale_cycles: float = 3.0,
        max_age_s: float = 5.0,
    ) -> QuoteFeed:
        """A feed paced by the QUOTES limit in ``config`` x ``share``; with ``pacer`` that
        shared pacer is set to this rate and used."""
        rate = quotes_rate(config, share)
        if pacer is not None:
            pacer.window_s = quotes_limit(config)[1]
            pacer.set_rate(rate)
        return cls(
            rest,
            None if pacer is not None else rate,
            pacer=pacer,
            lease_s=lease_s,
            stale_cycles=stale_cycles,
            max_age_s=max_age_s,
        )

    # -- subscriptions -------------------------------------------------------------------------

    def subscribe(
        self,
        instrument_id: int,
        info_route_ids: Sequence[int],
        callback: QuoteCallback | None = None,
    ) -> None:
        """Start polling an instrument (idempotent); ``callback`` fires when its quote changes.

        With a callback the instrument is polled while any callback remains (see
        :meth:`remove_callback`); without one it is polled until :meth:`unsubscribe`."""
        sub = self._add(instrument_id, info_route_ids)
        if callback is None:
            sub.pinned = True
        elif callback not in sub.callbacks:
            sub.callbacks.append(callback)

    def _add(self, instrument_id: int, info_route_ids: Sequence[int]) -> _Subscription:
        if not info_route_ids:
            raise ConfigError(f"instrument {instrument_id} has no INFO route to poll quotes on")
        sub = self._subs.get(instrument_id)
        if sub is None:
            sub = _Subscription(instrument_id, tuple(info_route_ids))
            self._subs[instrument_id] = sub
            self._order.append(instrument_id)
            self._wakeup.set()
        return sub

    def remove_callback(self, instrument_id: int, callback: QuoteCallback) -> None:
        """Withdraw one callback's interest; the instrument stays polled while others remain."""
        sub = self._subs.get(instrument_id)
        if sub is None:
            return
        if callback in sub.callbacks:
            sub.callbacks.remove(callback)
        if not sub.wanted(time.monotonic_ns()):
            self.unsubscribe(instrument_id)

    def unsubscribe(self, instrument_id: int) -> None:
        """Stop polling an instrument at once, whoever was interested."""
        if self._subs.pop(instrument_id, None) is not None:
            self._order.remove(instrument_id)
            self._last.pop(instrument_id, None)

    def subscribed(self, instrument_id: int) -> bool:
        return instrument_id in self._subs

    def on_change(self, callback: QuoteCallback) -> None:
        """Call ``callback`` for every changed quote of any instrument."""
        self._callbacks.append(callback)

    def last(self, instrument_id: int) -> Quote | None:
        """The latest quote, with its monotonic arrival time (check its age before trusting it)."""
        return self._last.get(instrument_id)

    def fresh(self, instrument_id: int, now_ns: int | None = None) -> Quote | None:
        """The latest quote if it is recent enough to judge an order by; None means unknown.

        Recent enough: younger than ``stale_cycles`` refresh periods of the instrument (with N
        instruments polled round-robin each is refreshed every N x interval), and never older
        than ``max_age_s`` however many instruments share the budget."""
        quote = self._last.get(instrument_id)
        if quote is None:
            return None
        now = time.monotonic_ns() if now_ns is None else now_ns
        limit = self._stale_cycles * self.pacer.interval * 1e9 * max(1, len(self._order))
        if limit > self._max_age_ns:
            limit = self._max_age_ns
        return quote if now - quote.received_ns <= limit else None

    def quote_for_order(self, instrument_id: int, info_route_ids: Sequence[int]) -> Quote | None:
        """Pre-validation's lookup: the fresh quote (None if unknown), and a lease that keeps the
        instrument polled for ``lease_s`` after this order. The first order on an instrument
        subscribes it and sees None; no await, so it is safe on the order path."""
        now = time.monotonic_ns()
        sub = self._subs.get(instrument_id)
        if sub is None:
            if not info_route_ids:
                return None  # nothing to poll; an unknown price never blocks an order
            sub = self._add(instrument_id, info_route_ids)
        sub.lease_until_ns = now + self._lease_ns
        # fresh(instrument_id, now), inline: one frame less on the order path.
        quote = self._last.get(instrument_id)
        if quote is None:
            return None
        limit = self._stale_cycles * self.pacer.interval * 1e9 * max(1, len(self._order))
        if limit > self._max_age_ns:
            limit = self._max_age_ns
        return quote if now - quote.received_ns <= limit else None

    def route_for(self, instrument_id: int) -> int | None:
        """The INFO route that answers for the instrument (None while still probing)."""
        sub = self._subs.get(instrument_id)
        if sub is None or sub.probing:
            return None
        return sub.routes[sub.route_index]

    # -- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="quote-feed")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def poll_once(self, instrument_id: int) -> Quote | None:
        """One request for one instrument, out of turn with the loop but within the pacer."""
        sub = self._subs.get(instrument_id)
        if sub is None:
            raise KeyError(f"instrument {instrument_id} is not subscribed")
        await self.pacer.turn()
        return await self._poll(sub)

    def _next_wanted(self) -> _Subscription | None:
        """The next instrument round-robin that someone still wants; the unwanted ones met on
        the way (nobody holds an order there, nobody traded it lately) are dropped."""
        now = time.monotonic_ns()
        while self._order:
            self._next %= len(self._order)
            sub = self._subs[self._order[self._next]]
            if sub.wanted(now):
                self._next += 1
                return sub
            self.unsubscribe(sub.instrument_id)
        return None

    async def _run(self) -> None:
        while True:
            if not self._order:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if self.pacer.fraction == 0:
                await self.pacer.resumed()  # the login's budget is other engines' for now
                continue
            await self.pacer.turn()
            # Chosen after the turn, so a turn is never spent on an instrument dropped meanwhile.
            sub = self._next_wanted()
            if sub is None:
                continue
            try:
                await self._poll(sub)
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad answer must not stop the feed
                log.exception("quote poll for instrument %s failed", sub.instrument_id)
            finally:
                self.pacer.done()

    async def _poll(self, sub: _Subscription) -> Quote | None:
        route = sub.routes[sub.route_index]
        params = {"tradableInstrumentId": sub.instrument_id, "routeId": route}
        self.requests_sent += 1
        try:
            payload = await self._rest.query(QUOTES_PATH, params, attempts=1)
        except EngineError as exc:
            self.errors += 1
            self._route_failed(sub, route, f"{type(exc).__name__}: {exc}")
            return None
        quote = decode_quote(sub.instrument_id, payload, time.monotonic_ns())
        if quote is None:
            # no_data: the market may be closed, or this route is dead; only a probing
            # subscription moves on, a route that has answered before is kept.
            if sub.probing:
                self._route_failed(sub, route, "no price (no_data)")
            return None
        sub.probing = False
        sub.failures = 0
        prev = self._last.get(sub.instrument_id)
        self._last[sub.instrument_id] = quote
        if prev is None or (prev.bid, prev.ask, prev.bid_size, prev.ask_size) != (
            quote.bid,
            quote.ask,
            quote.bid_size,
            quote.ask_size,
        ):
            for cb in (*sub.callbacks, *self._callbacks):
                try:
                    cb(quote)
                except Exception:  # a subscriber bug must not stop the feed
                    log.exception("quote callback %r failed", cb)
        return quote

    def _route_failed(self, sub: _Subscription, route: int, reason: str) -> None:
        sub.failures += 1
        if len(sub.routes) > 1 and (sub.probing or sub.failures >= _ROUTE_FAILURES_BEFORE_SWITCH):
            sub.route_index = (sub.route_index + 1) % len(sub.routes)
            sub.failures = 0
            sub.probing = True
            log.info(
                "instrument %s: INFO route %s gave %s; trying route %s",
                sub.instrument_id,
                route,
                reason,
                sub.routes[sub.route_index],
            )
        else:
            log.debug("instrument %s: quote on route %s: %s", sub.instrument_id, route, reason)


def login_feed(
    rest: QuoteQuery,
    config: Mapping[str, Any],
    pacer: QuotePacer,
    share: float = 0.9,
    *,
    login: str = "",
) -> QuoteFeed | None:
    """The quote feed of one login: it polls through ``rest`` (one of the login's accounts) and
    is paced by the QUOTES limit that account's ``/trade/config`` publishes, times ``share``, on
    the login's shared ``pacer`` (set to that rate), so the feed and the venue's own quote
    requests share one budget. None when the venue publishes no QUOTES limit (logged): the
    login's prices are then unknown rather than polled outside a budget."""
    try:
        feed = QuoteFeed.from_config(rest, config, share, pacer=pacer)
    except ConfigError as exc:
        log.warning("login %s: no quote feed: %s", login, exc)
        return None
    log.info("login %s: quote feed at %.2f requests/s", login, 1.0 / feed.interval)
    return feed
