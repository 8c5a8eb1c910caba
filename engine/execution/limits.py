"""Client-side enforcement of a venue's published rate limits, per account.

A venue publishes limits per account (:meth:`engine.venue.protocol.Venue.rate_limits`: "at most
``limit`` requests per ``interval_s`` on ``route``", route keys being the venue's own names) and
says which routes each engine action spends (:meth:`~engine.venue.protocol.Venue.route_for`).
:class:`AccountLimiter` keeps one :class:`engine._fast.TokenBucket` per published limit, spending
only ``share`` of it (90 % by default, the config's ``limits.share``: the rest is headroom for
requests the engine does not see), and gates every request on the buckets of its route:

* a token is free and nobody is queued on that route: :meth:`AccountLimiter.acquire` returns a
  pre-completed awaitable: nothing is scheduled, awaited or allocated beyond the call itself;
* a granted request holds its token while it is in flight: the caller calls
  :meth:`AccountLimiter.release` when the reply came (or the call failed), and the token returns
  one interval after that. The venue counts a request when it arrives, somewhere between send and
  reply; counting it until the reply is what keeps a burst at a window edge (slow replies then
  fast ones) from putting more than the limit into any venue window (docs/execution.md, "The
  rate gate");
* otherwise the request waits in the route's priority queue (:class:`engine.model.domain.Priority`:
  cancels and market orders first, queries last; FIFO within a priority), released by one timer
  per route when the bucket refills;
* the account's queue is bounded: when full, the least urgent waiter (the newest of the lowest
  priority) is shed with :class:`engine.model.errors.Shed`, or the newcomer if nothing queued is
  less urgent;
* a 429 from the venue pauses that route's buckets (for Retry-After, or one full interval);
* a waiter may carry a deadline (``deadline_ns``, on the limiter's clock): when it passes while
  the request is still queued, the request leaves the queue with
  :class:`engine.model.errors.QueuedTooLong` and is never sent. The pipeline gives placements and
  modifications the moment their signal becomes older than ``max_signal_age_ms``, and cancels and
  closes none (they reduce risk, so late is better than never).

A route the venue publishes no limit for is not gated (except while a 429 pauses it). Which route
an action spends is the venue's knowledge (:meth:`AccountLimiter.routes_for` answers from the
table it was given); how urgent an action is, is the engine's (:func:`default_priority`).

Near the limit: when a spend leaves ``alert_ratio`` (80 %) of a bucket used within its interval,
one warning is logged per excursion and ``near_limit_events`` counts it, for metrics to export.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from engine._fast import READY, TokenBucket
from engine.model.domain import Action, OrderType, Priority, RateLimit, RouteKey
from engine.model.errors import ConfigError, QueuedTooLong, Shed

log = logging.getLogger(__name__)

__all__ = [
    "AccountLimiter",
    "RateLimit",
    "RouteStats",
    "default_priority",
]


def default_priority(action: Action, order_type: OrderType | None = None) -> Priority:
    """Cancels first, then market orders, closes, modifications, pending orders (queries last)."""
    if action is Action.CANCEL or action is Action.CANCEL_ALL:
        return Priority.CANCEL
    if action is Action.PLACE:
        return Priority.MARKET if order_type is OrderType.MARKET else Priority.PENDING
    if action in (Action.CLOSE, Action.CLOSE_ALL, Action.REVERSE):
        return Priority.CLOSE
    return Priority.MODIFY


_LOG_QUIET_NS = 10_000_000_000


class _Handle(Protocol):
    def cancel(self) -> None: ...


CallLater = Callable[..., _Handle]


@dataclass(frozen=True, slots=True)
class RouteStats:
    """One route's state, for /status and metrics."""

    route: str
    limit: int | None  # tightest published limit (None: the venue publishes none)
    capacity: int | None
    interval_s: float | None
    available: int | None
    utilisation: float
    queued: int
    near_limit_events: int
    at_limit_events: int
    rate_limited_events: int
    shed: int
    expired: int = 0  # requests whose deadline passed while they waited for budget
    in_flight: int = 0  # granted requests not yet answered (they hold their tokens)


class _Route:
    __slots__ = (
        "alerting",
        "at_limit_events",
        "buckets",
        "expired",
        "heap",
        "logged_at",
        "logged_events",
        "name",
        "near_limit_events",
        "paused_until",
        "rate_limited_events",
        "shed",
        "single",
        "timer",
    )

    def __init__(self, route: RouteKey, buckets: tuple[TokenBucket, ...]) -> None:
        self.name = str(route)
        self.buckets = buckets
        self.single = buckets[0] if len(buckets) == 1 else None
        self.heap: list[tuple[int, int, asyncio.Future[None]]] = []
        self.timer: _Handle | None = None
        self.paused_until = 0  # only for routes without a published limit
        self.alerting = False
        self.logged_at = 0
        self.logged_events = 0
        self.near_limit_events = 0
        self.at_limit_events = 0
        self.rate_limited_events = 0
        self.shed = 0
        self.expired = 0  # waiters whose deadline passed in the queue


class AccountLimiter:
    """The rate gate of one account. Single event loop; not thread-safe.

    ``limits`` are the venue's published limits for the account; ``routes`` is the venue's table
    of the routes each action spends (:meth:`engine.venue.protocol.Venue.route_for`). ``clock``
    returns monotonic nanoseconds; ``call_later(delay_s, callback, *args)`` schedules the queue's
    release timer (default: the running loop's). Both are injectable so tests drive time.
    """

    def __init__(
        self,
        account: str,
        limits: Iterable[RateLimit],
        *,
        routes: Callable[[Action], tuple[RouteKey, ...]] | None = None,
        share: float = 0.9,
        max_queue: int = 1000,
        alert_ratio: float = 0.8,
        clock: Callable[[], int] = time.monotonic_ns,
        call_later: CallLater | None = None,
    ) -> None:
        if max_queue < 1:
            raise ConfigError(f"rate-limit queue size must be at least 1, got {max_queue}")
        if not 0.0 < share <= 1.0:
            raise ConfigError(f"the share of a rate limit used must be in (0, 1], got {share}")
        # The bucket is told the headroom: the part of the limit it must leave unspent.
        headroom = 1.0 - share
        self.account = account
        self.share = share
        self.max_queue = max_queue
        self._clock = clock
        self._call_later = call_later
        self._seq = itertools.count()
        self._queued = 0
        self.near_limit_events = 0
        self.shed_total = 0
        grouped: dict[RouteKey, list[TokenBucket]] = {}
        self._limits: dict[RouteKey, list[RateLimit]] = {}
        for lim in limits:
            grouped.setdefault(lim.route, []).append(
                TokenBucket(lim.limit, lim.interval_s, headroom, alert_ratio)
            )
            self._limits.setdefault(lim.route, []).append(lim)
        # Indexed by Action value: a tuple index on the hot path, not a call into the venue. An
        # action the venue charges to no route gets a route of its own, never gated by a budget
        # but paused like any other after a 429 on it.
        # Public so the send path can index it without a call (``routes_for`` is the same).
        self.by_action: tuple[tuple[RouteKey, ...], ...] = tuple(
            (tuple(routes(a)) if routes is not None else ()) or (f"action:{a.wire}",)
            for a in Action
        )
        for keys in self.by_action:
            for key in keys:
                grouped.setdefault(key, [])
        self._routes: dict[RouteKey, _Route] = {
            key: _Route(key, tuple(buckets)) for key, buckets in grouped.items()
        }
        # The routes with a budget (fixed here: a route added later has none), for bucket_use.
        self._budgeted = tuple(r for r in self._routes.values() if r.buckets)

    def routes_for(self, action: Action) -> tuple[RouteKey, ...]:
        """The routes an action spends, in the order its requests are sent (the venue's table;
        never empty, see ``__init__``)."""
        return self.by_action[action]

    def _route(self, key: RouteKey) -> _Route:
        """A route the venue neither publishes nor names for an action: not gated."""
        r = self._routes.get(key)
        if r is None:
            r = self._routes[key] = _Route(key, ())
        return r

    # -- the gate --------------------------------------------------------------------------

    def try_acquire(self, route: RouteKey) -> bool:
        """Spend a token now if one is free and nobody is queued on the route; never waits. The
        request is counted at this one instant (nothing to release)."""
        r = self._routes.get(route) or self._route(route)
        now = self._clock()
        if r.heap or not self._grant(r, now):
            return False
        for bucket in r.buckets:
            bucket.give_back(now)
        return True

    def acquire(self, route: RouteKey, priority: Priority, deadline_ns: int = 0) -> Awaitable[None]:
        """Wait for the route's budget. Returns a completed awaitable when a token is free (the
        fast path); otherwise a future resolved in priority order when the bucket refills.
        The granted token is held until :meth:`release` (call it once the reply came, or the
        call failed, or it was never sent): a request counts while it is in flight.

        ``deadline_ns`` (the limiter's clock; 0: none) bounds the wait: a request still queued
        then fails with :class:`QueuedTooLong` and gives its place up; one that would have to
        queue with its deadline already past fails at the call. The fast path ignores it.
        Raises :class:`Shed` (at the call) when the account's queue is full of more urgent work.
        Cancelling the awaiting task gives its place up.
        """
        r = self._routes.get(route) or self._route(route)
        now = self._clock()
        if not r.heap:
            # One published limit, a free token, not near the limit: the usual case, granted
            # here without _grant's frame; anything else goes through _grant.
            b = r.single
            if b is not None and not r.alerting:
                if b.take(now):
                    if b.near_limit(now):
                        self._near_limit(r, now)
                    return READY
            elif self._grant(r, now):
                return READY
        if deadline_ns and now >= deadline_ns:
            r.expired += 1
            raise self._too_long(r, priority, 0)
        fut = self._enqueue(r, priority)
        if deadline_ns:
            self._arm_deadline(r, fut, int(priority), now, deadline_ns)
        return fut

    def release(self, route: RouteKey) -> None:
        """A request granted on ``route`` got its reply (or failed, or was never sent): its token
        returns one interval from now."""
        r = self._routes.get(route)
        if r is None:
            return
        b = r.single
        if b is not None:
            b.give_back(self._clock())
        elif r.buckets:
            now = self._clock()
            for bucket in r.buckets:
                bucket.give_back(now)
        else:
            return
        if r.heap and r.timer is None:
            self._arm(r, self._clock())

    def release_later(self, route: RouteKey, delay_s: float) -> None:
        """:meth:`release` in ``delay_s``: for a request written that got no reply, which the
        venue may still receive, and count, after the caller stopped waiting."""
        if delay_s <= 0:
            self.release(route)
        elif self._call_later is not None:
            self._call_later(delay_s, self.release, route)
        else:
            asyncio.get_running_loop().call_later(delay_s, self.release, route)

    def in_flight(self, route: RouteKey) -> int:
        """Requests granted on ``route`` and not yet released."""
        r = self._routes.get(route)
        if r is None or not r.buckets:
            return 0
        return max(b.in_flight for b in r.buckets)

    def _grant(self, r: _Route, now: int) -> bool:
        b = r.single
        if b is not None:
            if not b.take(now):
                return False
            if b.near_limit(now):
                if not r.alerting:
                    self._near_limit(r, now)
            elif r.alerting:
                r.alerting = False
            return True
        if not r.buckets:
            return now >= r.paused_until
        for bucket in r.buckets:
            if bucket.wait_ns(now):
                return False
        near = False
        for bucket in r.buckets:
            bucket.take(now)
            near = near or bucket.near_limit(now)
        if near and not r.alerting:
            self._near_limit(r, now)
        elif not near:
            r.alerting = False
        return True

    def _near_limit(self, r: _Route, now: int) -> None:
        r.alerting = True
        r.near_limit_events += 1
        self.near_limit_events += 1
        # A saturated route re-enters "near" every interval: count each time, log at most once
        # per quiet period so the warning stays readable.
        if r.logged_at and now - r.logged_at < _LOG_QUIET_NS:
            return
        since = r.near_limit_events - r.logged_events
        r.logged_at = now
        r.logged_events = r.near_limit_events
        log.warning(
            "account %s is near its %s rate limit: %.0f%% of the budget used (%s); %d times"
            " since the last warning",
            self.account,
            r.name,
            100.0 * self._utilisation(r, now),
            self._describe_limits(r.name),
            since,
        )

    def _describe_limits(self, route: RouteKey) -> str:
        limits = self._limits.get(route, ())
        return ", ".join(f"{lim.limit} per {lim.interval_s:g}s" for lim in limits)

    # -- the queue ---------------------------------------------------------------------------

    def _enqueue(self, r: _Route, priority: Priority) -> asyncio.Future[None]:
        prio = int(priority)
        if self._queued >= self.max_queue:
            self._shed_one(r, prio)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        heapq.heappush(r.heap, (prio, next(self._seq), fut))
        self._queued += 1
        r.at_limit_events += 1
        self._arm(r, self._clock())
        return fut

    def _shed_one(self, newcomer: _Route, prio: int) -> None:
        """Make room for a request of priority ``prio``, or refuse it."""
        worst: tuple[int, int, asyncio.Future[None]] | None = None
        worst_route: _Route | None = None
        for r in self._routes.values():
            for entry in r.heap:
                if not entry[2].done() and (worst is None or entry[:2] > worst[:2]):
                    worst, worst_route = entry, r
        if worst is None or worst_route is None or worst[0] <= prio:
            newcomer.shed += 1
            self.shed_total += 1
            raise Shed(
                f"account {self.account}: rate-limit queue is full ({self.max_queue} waiting for"
                f" budget) with work at least as urgent; {Priority(prio).name.lower()} request on"
                f" {newcomer.name} dropped, not sent",
                account=self.account,
                route=newcomer.name,
                priority=Priority(prio).name,
            )
        worst_route.heap.remove(worst)
        heapq.heapify(worst_route.heap)
        self._queued -= 1
        worst_route.shed += 1
        self.shed_total += 1
        worst[2].set_exception(
            Shed(
                f"account {self.account}: rate-limit queue is full ({self.max_queue} waiting);"
                f" {Priority(worst[0]).name.lower()} request on {worst_route.name} dropped, not"
                " sent, to make room for more urgent work",
                account=self.account,
                route=worst_route.name,
                priority=Priority(worst[0]).name,
            )
        )

    def _arm_deadline(
        self, r: _Route, fut: asyncio.Future[None], prio: int, queued_at: int, deadline_ns: int
    ) -> None:
        delay_s = (deadline_ns - queued_at) / 1e9
        if self._call_later is not None:
            timer = self._call_later(delay_s, self._expire, r, fut, prio, queued_at)
        else:
            timer = asyncio.get_running_loop().call_later(
                delay_s, self._expire, r, fut, prio, queued_at
            )
        # Granted, shed or cancelled first: the timer has nothing left to do.
        fut.add_done_callback(lambda _: timer.cancel())

    def _expire(self, r: _Route, fut: asyncio.Future[None], prio: int, queued_at: int) -> None:
        if fut.done():
            return
        for i, entry in enumerate(r.heap):
            if entry[2] is fut:
                r.heap[i] = r.heap[-1]
                r.heap.pop()
                heapq.heapify(r.heap)
                self._queued -= 1
                break
        r.expired += 1
        fut.set_exception(self._too_long(r, Priority(prio), self._clock() - queued_at))

    def _too_long(self, r: _Route, priority: Priority, waited_ns: int) -> QueuedTooLong:
        waited_ms = waited_ns // 1_000_000
        return QueuedTooLong(
            f"account {self.account}: waited {waited_ms} ms for {r.name} budget, over"
            " max_signal_age_ms: not sent",
            waited_ms=waited_ms,
            account=self.account,
            route=r.name,
            priority=priority.name,
        )

    def _wait_ns(self, r: _Route, now: int) -> int:
        if not r.buckets:
            return max(0, r.paused_until - now)
        return max(b.wait_ns(now) for b in r.buckets)

    def _arm(self, r: _Route, now: int) -> None:
        if r.timer is not None:
            return
        delay_s = self._wait_ns(r, now) / 1e9
        if self._call_later is not None:
            r.timer = self._call_later(delay_s, self._release, r)
        else:
            r.timer = asyncio.get_running_loop().call_later(delay_s, self._release, r)

    def _release(self, r: _Route) -> None:
        r.timer = None
        now = self._clock()
        heap = r.heap
        while heap:
            fut = heap[0][2]
            if fut.done():  # the waiter was cancelled: its place is given up
                heapq.heappop(heap)
                self._queued -= 1
                continue
            if not self._grant(r, now):
                break
            heapq.heappop(heap)
            self._queued -= 1
            fut.set_result(None)
        if heap:
            self._arm(r, now)

    # -- venue feedback ------------------------------------------------------------------------

    def on_rate_limited(self, route: RouteKey, retry_after_s: float | None = None) -> None:
        """The venue answered 429 on ``route``: stop spending it for Retry-After seconds, or, when
        the venue gave none, until a full interval has passed (as if every token were spent)."""
        r = self._route(route)
        now = self._clock()
        r.rate_limited_events += 1
        if retry_after_s is not None and retry_after_s > 0:
            until = now + int(retry_after_s * 1e9)
            for b in r.buckets:
                b.pause_until(until)
            r.paused_until = max(r.paused_until, until)
        else:
            for b in r.buckets:
                b.exhaust(now)
            if not r.buckets:
                r.paused_until = max(r.paused_until, now + 1_000_000_000)
        log.warning(
            "account %s: venue rate-limited %s (429); pausing it for %.2fs",
            self.account,
            r.name,
            self._wait_ns(r, now) / 1e9,
        )
        if r.timer is not None:
            r.timer.cancel()
            r.timer = None
        if r.heap:
            self._arm(r, now)

    def spend_window(self) -> None:
        """Count every route's budget as spent now, for one window: the account was just taken
        over from another engine process (a Kafka handover), whose last requests the venue's
        window may still hold while this gate's buckets are full (docs/kafka.md, "Handover")."""
        now = self._clock()
        for r in self._routes.values():
            for b in r.buckets:
                b.exhaust(now)
            if r.timer is not None:
                r.timer.cancel()
                r.timer = None
            if r.heap:
                self._arm(r, now)

    # -- observation -----------------------------------------------------------------------------

    def _utilisation(self, r: _Route, now: int) -> float:
        single = r.single
        if single is not None:
            return 1.0 - single.available(now) / single.capacity
        if not r.buckets:
            return 1.0 if now < r.paused_until else 0.0
        return max(1.0 - b.available(now) / b.capacity for b in r.buckets)

    def bucket_use(self) -> list[tuple[str, float]]:
        """(route, utilisation) of every route with a budget: what the rate-limit gauges show,
        read without building a :class:`RouteStats` (no queue or in-flight count) per route."""
        now = self._clock()
        return [(r.name, self._utilisation(r, now)) for r in self._budgeted]

    def utilisation(self, route: RouteKey) -> float:
        """Share of the route's budget spent within its interval (0..1; 1 while paused)."""
        return self._utilisation(self._route(route), self._clock())

    def action_utilisation(self, action: Action) -> float:
        """The tightest of the routes an action spends."""
        now = self._clock()
        keys = self.by_action[action]
        if len(keys) == 1:
            return self._utilisation(self._routes[keys[0]], now)
        return max(self._utilisation(self._routes[k], now) for k in keys)

    def queued(self, route: RouteKey | None = None) -> int:
        """Requests waiting for budget, on one route or on the whole account."""
        if route is None:
            return self._queued
        r = self._routes.get(route)
        return 0 if r is None else sum(1 for e in r.heap if not e[2].done())

    def stats(self) -> list[RouteStats]:
        """Every route that has a published limit or has seen traffic trouble."""
        now = self._clock()
        out = []
        for route, r in self._routes.items():
            limits = self._limits.get(route, [])
            if not limits and not (r.rate_limited_events or r.heap or r.expired):
                continue
            tight = min(r.buckets, key=lambda b: b.available(now), default=None)
            out.append(
                RouteStats(
                    route=r.name,
                    limit=min((lim.limit for lim in limits), default=None),
                    capacity=None if tight is None else tight.capacity,
                    interval_s=None if tight is None else tight.interval_ns / 1e9,
                    available=None if tight is None else tight.available(now),
                    utilisation=self._utilisation(r, now),
                    queued=self.queued(route),
                    near_limit_events=r.near_limit_events,
                    at_limit_events=r.at_limit_events,
                    rate_limited_events=r.rate_limited_events,
                    shed=r.shed,
                    expired=r.expired,
                    in_flight=self.in_flight(route),
                )
            )
        return out

    def close(self) -> None:
        """Refuse every waiter (shutdown): they get Shed, nothing is sent."""
        for r in self._routes.values():
            if r.timer is not None:
                r.timer.cancel()
                r.timer = None
            for _, _, fut in r.heap:
                if not fut.done():
                    fut.set_exception(
                        Shed(
                            f"account {self.account}: limiter closed; request on {r.name} not sent",
                            account=self.account,
                            route=r.name,
                        )
                    )
            r.heap.clear()
        self._queued = 0
