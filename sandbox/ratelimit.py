"""Sliding windows per ``rateLimitType``, as announced in ``/trade/config``, counted per account
(``per_account``, the default) or per login (``per_login``: every account of one user shares the
window). TradeLocker does not document which; the scope is a switch so a client can be tried
against both.

A request that is refused (429) does not count against the window, so a client that backs off
recovers as soon as the window slides. Each refusal is counted per ``rateLimitType``
(``refused``, served by ``GET /sandbox/counters``): the 429s a client earned, as opposed to the
ones a ``burst429`` fault injected.
"""

from __future__ import annotations

import time
from collections import deque

from sandbox.models import SimAccount
from sandbox.seed import RateLimit, parse_scope


class RateLimiter:
    def __init__(self, limits: dict[str, RateLimit], scope: str = "per_account") -> None:
        self.limits = limits
        self.scope = parse_scope(scope)
        self._windows: dict[tuple[str, str], deque[float]] = {}
        self.refused: dict[str, int] = {}  # rateLimitType -> 429s earned (never reset)

    def set_limit(self, rate_limit_type: str, limit: RateLimit) -> None:
        self.limits[rate_limit_type] = limit
        for key in [k for k in self._windows if k[1] == rate_limit_type]:
            del self._windows[key]

    def set_scope(self, scope: str) -> None:
        """Count per account or per login from now on (every window starts empty)."""
        self.scope = parse_scope(scope)
        self._windows.clear()

    def key(self, account: SimAccount) -> str:
        """Whose window a request of ``account`` counts in."""
        return "login:" + account.uid if self.scope == "per_login" else account.id

    def admit(self, key: str, rate_limit_type: str, now: float | None = None) -> bool:
        """Count one request; False when the window for (key, type) is already full."""
        limit = self.limits.get(rate_limit_type)
        if limit is None:
            return True
        t = time.monotonic() if now is None else now
        window = self._windows.get((key, rate_limit_type))
        if window is None:
            window = self._windows[(key, rate_limit_type)] = deque()
        horizon = t - limit.window_s
        while window and window[0] <= horizon:
            window.popleft()
        if len(window) >= limit.limit:
            self.refused[rate_limit_type] = self.refused.get(rate_limit_type, 0) + 1
            return False
        window.append(t)
        return True
