"""Rate-limit token bucket (pure-Python twin of ``engine._fast.bucket``).

TradeLocker publishes "at most ``limit`` requests per interval". A classic refill-at-a-rate bucket
can let through up to twice its capacity in one interval (a full bucket, then a full refill), which
a venue counting a sliding or fixed window answers with 429. So each spent token comes back exactly
one (effective) interval after it was spent: at most ``capacity`` acquisitions fit in any window of
``interval_ns``, whatever window the venue counts in. The spend times live in a ring allocated once.

The safety margin keeps the sustained rate at ``limit * (1 - margin)`` per interval with the
smallest burst that allows it: ``capacity = ceil(limit * (1 - margin))`` tokens, each returning
after ``interval * capacity / (limit * (1 - margin))`` (never shorter than the venue's interval).
For a limit of 100/min that is 90 tokens per minute; for 2/s, 2 tokens per 1.11 s.

In flight. A venue counts a request when it arrives, somewhere between the moment it was sent and
the moment its reply came back, and replies come back in a different order, after different
latencies. A token spent at send time and returned one interval later would let a slow request
(arriving late) and a fast one (sent one interval after the slow one was sent) land in one venue
window. So a request can hold its token while it is in flight (:meth:`take`), and the token
returns one interval after its reply (:meth:`give_back`): the next request on that token is sent
at least one interval after the previous one arrived, so at most ``capacity`` requests arrive in
any window of ``interval_ns``, at window edges included. :meth:`try_acquire` is a take and give
back at one instant (a request counted at one moment).

The ring is a queue of returned tokens, oldest return first: ``capacity - in_flight`` of them
from ``head``. A take consumes the head; a give-back appends its reply time at the tail. Reply
times only grow, so the queue stays sorted and the returned tokens stay a prefix of it.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import Any

__all__ = ["READY", "Ready", "TokenBucket"]

_NEVER = -(1 << 62)  # "spent long ago": every token starts available
_MAX_CAPACITY = 1_000_000
_MAX_INTERVAL_NS = 1 << 52


class TokenBucket:
    __slots__ = (
        "_alert_back",
        "_head",
        "_in_flight",
        "_paused_until",
        "_ring",
        "capacity",
        "interval_ns",
        "limit",
        "margin",
    )

    def __init__(
        self, limit: int, interval_s: float, margin: float = 0.1, alert_ratio: float = 0.8
    ) -> None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ValueError(f"rate limit must be a whole number of requests >= 1, got {limit!r}")
        if not (interval_s > 0.0 and math.isfinite(interval_s)):
            raise ValueError(
                f"rate-limit interval must be a positive number of seconds, got {interval_s!r}"
            )
        if not (0.0 <= margin < 1.0):
            raise ValueError(f"safety margin must be in [0, 1), got {margin!r}")
        if not (0.0 < alert_ratio <= 1.0):
            raise ValueError(f"alert ratio must be in (0, 1], got {alert_ratio!r}")
        if limit > _MAX_CAPACITY * 2:
            raise ValueError(f"rate limit {limit} is above the supported {_MAX_CAPACITY}")
        allowed = limit * (1.0 - margin)
        capacity = math.ceil(allowed - 1e-9)
        if capacity < 1:
            capacity = 1
        if capacity > _MAX_CAPACITY:
            raise ValueError(f"rate limit {limit} is above the supported {_MAX_CAPACITY}")
        interval = interval_s * 1e9 * capacity / allowed
        if interval > _MAX_INTERVAL_NS:
            raise ValueError(f"rate-limit interval {interval_s!r}s is too long")
        interval_ns = math.ceil(interval)
        self.limit = limit
        self.margin = margin
        self.capacity = capacity
        self.interval_ns = interval_ns
        self._ring = [_NEVER] * capacity
        self._head = 0
        self._in_flight = 0
        self._paused_until = _NEVER
        # near_limit() looks back this many spends: ceil(alert_ratio * capacity), at least 1.
        back = math.ceil(alert_ratio * capacity - 1e-9)
        self._alert_back = back if back >= 1 else 1

    def try_acquire(self, now_ns: int) -> bool:
        """Spend a token if one is available at ``now_ns``; it returns one interval later."""
        if not self.take(now_ns):
            return False
        self.give_back(now_ns)
        return True

    def take(self, now_ns: int) -> bool:
        """Hold a token if one is available at ``now_ns``: it stays in flight, spent, until
        :meth:`give_back`."""
        if now_ns < self._paused_until or self._in_flight == self.capacity:
            return False
        head = self._head
        if now_ns - self._ring[head] < self.interval_ns:
            return False
        head += 1
        self._head = 0 if head == self.capacity else head
        self._in_flight += 1
        return True

    def give_back(self, now_ns: int) -> None:
        """A held request got its reply (or failed) at ``now_ns``: its token returns one interval
        from now. Without a held token, nothing happens."""
        held = self._in_flight
        if held == 0:
            return
        tail = self._head + self.capacity - held
        if tail >= self.capacity:
            tail -= self.capacity
        self._ring[tail] = now_ns
        self._in_flight = held - 1

    @property
    def in_flight(self) -> int:
        """Tokens held by requests not yet answered."""
        return self._in_flight

    def wait_ns(self, now_ns: int) -> int:
        """Nanoseconds from ``now_ns`` until a token is available (0: one is available now).
        With every token in flight the wait is unknown: one interval, the least it can be."""
        if self._in_flight == self.capacity:
            wait = self.interval_ns
        else:
            wait = self._ring[self._head] + self.interval_ns - now_ns
        pause = self._paused_until - now_ns
        if pause > wait:
            wait = pause
        return wait if wait > 0 else 0

    def available(self, now_ns: int) -> int:
        """Tokens available at ``now_ns`` (0 while paused)."""
        if now_ns < self._paused_until:
            return 0
        # Read from the head, the queue of returned tokens holds return times oldest first, so
        # the available tokens are a prefix of it: binary search for its length. O(log n):
        # the health loop calls this for every route once a second, and a linear walk over a
        # large lifted limit stalled the event loop.
        lo, hi = 0, self.capacity - self._in_flight
        cap, head, ring = self.capacity, self._head, self._ring
        while lo < hi:
            mid = (lo + hi) // 2
            i = head + mid
            if i >= cap:
                i -= cap
            if now_ns - ring[i] >= self.interval_ns:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def near_limit(self, now_ns: int) -> bool:
        """True when at least alert_ratio of the capacity is in flight or was returned within
        the last interval: when no more than ``capacity - alert_back`` tokens are available."""
        k = self.capacity - self._alert_back
        if k >= self.capacity - self._in_flight:
            return True
        i = self._head + k
        if i >= self.capacity:
            i -= self.capacity
        return now_ns - self._ring[i] < self.interval_ns

    def pause_until(self, until_ns: int) -> None:
        """Refuse every token until ``until_ns`` (a venue 429 with Retry-After). Never shortens."""
        if until_ns > self._paused_until:
            self._paused_until = until_ns

    def exhaust(self, now_ns: int) -> None:
        """Mark every returned token spent at ``now_ns`` (a venue 429 without Retry-After): the
        next token comes back one full interval later (held ones one interval after their
        reply, as always)."""
        ring = self._ring
        for i in range(self.capacity):
            ring[i] = now_ns

    @property
    def paused_until_ns(self) -> int:
        return self._paused_until


class Ready:
    """An awaitable that is already complete (a free token: the gate's fast path): awaiting it
    never suspends and allocates nothing (it hands back the same exhausted iterator every time).
    The compiled twin runs no Python frame for it."""

    __slots__ = ()
    _DONE: Any = iter(())

    def __await__(self) -> Generator[Any, None, None]:
        return self._DONE  # type: ignore[no-any-return]


READY = Ready()
