"""Time, injected: the components that wait for time take a :class:`Clock`.

The pipeline, reconciliation, the journal and the stop-limit book read the time and sleep through
a clock handed to them, so a test can move time with :class:`ManualClock` instead of sleeping, and
a settle time of minutes is tested in microseconds. Production uses :data:`LIVE` (the process's
monotonic and wall clocks, ``asyncio.sleep``).

Hot path: bind the method once (``self._now_ns = clock.monotonic_ns``); a bound method of
:class:`LiveClock` is ``time.monotonic_ns`` itself, so the live path costs no extra frame.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time as _time
from typing import Protocol


class Clock(Protocol):
    """Monotonic time for intervals, wall time for timestamps others read, and sleeping."""

    def monotonic(self) -> float: ...
    def monotonic_ns(self) -> int: ...
    def time(self) -> float: ...
    def time_ns(self) -> int: ...
    async def sleep(self, seconds: float) -> None: ...


class LiveClock:
    """The process's clocks. Its methods are the :mod:`time` functions themselves (no wrapper)."""

    __slots__ = ()

    monotonic = staticmethod(_time.monotonic)
    monotonic_ns = staticmethod(_time.monotonic_ns)
    time = staticmethod(_time.time)
    time_ns = staticmethod(_time.time_ns)

    @staticmethod
    async def sleep(seconds: float) -> None:
        await asyncio.sleep(seconds)


LIVE = LiveClock()


class ManualClock:
    """A clock that moves only when told: :meth:`advance` wakes every sleeper whose time came.

    Sleepers wake in deadline order, each in its own loop turn, so code that sleeps in a loop sees
    time move the way it would live. ``wall_offset_s`` places the wall clock (default: the real
    wall time at creation, so timestamps stay plausible).
    """

    def __init__(self, start_s: float = 1_000.0, wall_offset_s: float | None = None) -> None:
        self._now_ns = int(start_s * 1e9)
        wall = _time.time() if wall_offset_s is None else wall_offset_s
        self._wall_minus_mono_ns = int(wall * 1e9) - self._now_ns
        self._sleepers: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def monotonic(self) -> float:
        return self._now_ns / 1e9

    def monotonic_ns(self) -> int:
        return self._now_ns

    def time(self) -> float:
        return (self._now_ns + self._wall_minus_mono_ns) / 1e9

    def time_ns(self) -> int:
        return self._now_ns + self._wall_minus_mono_ns

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now_ns + int(seconds * 1e9), next(self._seq), fut))
        await fut

    @property
    def sleepers(self) -> int:
        """How many coroutines are asleep on this clock now (a test waits for one to arrive)."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking sleepers due on the way in deadline order."""
        target = self._now_ns + int(seconds * 1e9)
        while self._sleepers and self._sleepers[0][0] <= target:
            due, _, fut = heapq.heappop(self._sleepers)
            self._now_ns = max(self._now_ns, due)
            if not fut.done():
                fut.set_result(None)
                # Let the woken coroutine run up to its next wait before time moves on.
                for _ in range(3):
                    await asyncio.sleep(0)
        self._now_ns = target
        await asyncio.sleep(0)

    async def until_sleeping(self, count: int = 1, max_turns: int = 10_000) -> None:
        """Let the loop run until at least ``count`` coroutines sleep on this clock."""
        for _ in range(max_turns):
            if self.sleepers >= count:
                return
            await asyncio.sleep(0)
        raise TimeoutError(f"{self.sleepers} sleeper(s) after {max_turns} loop turns, not {count}")
