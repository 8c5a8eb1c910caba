"""Per-account, per-``rateLimitType`` sliding windows, as announced in ``/trade/config``.

A request that is refused (429) does not count against the window, so a client that backs off
recovers as soon as the window slides.
"""

from __future__ import annotations

import time
from collections import deque

from sandbox.seed import RateLimit


class RateLimiter:
    def __init__(self, limits: dict[str, RateLimit]) -> None:
        self.limits = limits
        self._windows: dict[tuple[str, str], deque[float]] = {}

    def set_limit(self, rate_limit_type: str, limit: RateLimit) -> None:
        self.limits[rate_limit_type] = limit
        for key in [k for k in self._windows if k[1] == rate_limit_type]:
            del self._windows[key]

    def admit(self, account_id: str, rate_limit_type: str, now: float | None = None) -> bool:
        """Count one request; False when the window for (account, type) is already full."""
        limit = self.limits.get(rate_limit_type)
        if limit is None:
            return True
        t = time.monotonic() if now is None else now
        window = self._windows.setdefault((account_id, rate_limit_type), deque())
        horizon = t - limit.window_s
        while window and window[0] <= horizon:
            window.popleft()
        if len(window) >= limit.limit:
            return False
        window.append(t)
        return True
