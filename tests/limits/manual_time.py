"""Deterministic time for limiter and breaker tests: a clock the test advances by hand, and a
``call_later`` whose callbacks fire when the test advances past them. A stand-in for the event
loop's timer because the brief requires tests that never depend on wall-clock sleeps."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any


class _Handle:
    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualTime:
    def __init__(self, start_ns: int = 1_000_000_000_000) -> None:
        self.now_ns = start_ns
        self._timers: list[tuple[int, int, _Handle, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = itertools.count()

    def clock(self) -> int:
        return self.now_ns

    def call_later(self, delay_s: float, callback: Callable[..., None], *args: Any) -> _Handle:
        handle = _Handle()
        due = self.now_ns + max(0, round(delay_s * 1e9))
        heapq.heappush(self._timers, (due, next(self._seq), handle, callback, args))
        return handle

    def advance(self, ns: int) -> None:
        """Move time forward by ``ns``, firing every timer that falls due on the way, in order."""
        end = self.now_ns + ns
        while self._timers and self._timers[0][0] <= end:
            due, _, handle, callback, args = heapq.heappop(self._timers)
            self.now_ns = max(self.now_ns, due)
            if not handle.cancelled:
                callback(*args)
        self.now_ns = end

    def next_due(self) -> int | None:
        live = [t[0] for t in self._timers if not t[2].cancelled]
        return min(live) if live else None
