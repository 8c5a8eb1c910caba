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
"""

from __future__ import annotations

import math

__all__ = ["TokenBucket"]

_NEVER = -(1 << 62)  # "spent long ago": every token starts available
_MAX_CAPACITY = 1_000_000
_MAX_INTERVAL_NS = 1 << 52


class TokenBucket:
    __slots__ = (
        "_alert_back",
        "_head",
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
        self._paused_until = _NEVER
        # near_limit() looks back this many spends: ceil(alert_ratio * capacity), at least 1.
        back = math.ceil(alert_ratio * capacity - 1e-9)
        self._alert_back = back if back >= 1 else 1

    def try_acquire(self, now_ns: int) -> bool:
        """Spend a token if one is available at ``now_ns``."""
        if now_ns < self._paused_until:
            return False
        head = self._head
        if now_ns - self._ring[head] < self.interval_ns:
            return False
        self._ring[head] = now_ns
        head += 1
        self._head = 0 if head == self.capacity else head
        return True

    def wait_ns(self, now_ns: int) -> int:
        """Nanoseconds from ``now_ns`` until a token is available (0: one is available now)."""
        wait = self._ring[self._head] + self.interval_ns - now_ns
        pause = self._paused_until - now_ns
        if pause > wait:
            wait = pause
        return wait if wait > 0 else 0

    def available(self, now_ns: int) -> int:
        """Tokens available at ``now_ns`` (0 while paused)."""
        if now_ns < self._paused_until:
            return 0
        # Read from the head, the ring holds spend times oldest first (each spend overwrites the
        # oldest), so the returned tokens are a prefix: binary search for its length. O(log n):
        # the health loop calls this for every route once a second, and a linear walk over a
        # large lifted limit stalled the event loop.
        lo, hi = 0, self.capacity
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
        """True when at least alert_ratio of the capacity was spent within the last interval."""
        i = self._head - self._alert_back
        if i < 0:
            i += self.capacity
        return now_ns - self._ring[i] < self.interval_ns

    def pause_until(self, until_ns: int) -> None:
        """Refuse every token until ``until_ns`` (a venue 429 with Retry-After). Never shortens."""
        if until_ns > self._paused_until:
            self._paused_until = until_ns

    def exhaust(self, now_ns: int) -> None:
        """Mark every token spent at ``now_ns`` (a venue 429 without Retry-After): the next token
        comes back one full interval later."""
        ring = self._ring
        for i in range(self.capacity):
            ring[i] = now_ns

    @property
    def paused_until_ns(self) -> int:
        return self._paused_until
