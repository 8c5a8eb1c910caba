"""Constant-rate (open-loop) load, measured from the INTENDED send time.

A closed loop ("send, wait for the answer, send the next") hides stalls: while the system is slow
it is also asked less, so the slow period contributes one sample instead of the many a real
signal generator would have produced (coordinated omission). Here request ``i`` is due at
``start + i / rate`` whatever happened before; it is launched as its own task at that time, and
its latency is measured from the time it was DUE, so a stall shows up in every request that
should have gone out during it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from engine.observability.metrics import LatencyHistogram, Summary

# fire(i, intended_ns) performs request i and returns the monotonic ns at which it completed,
# or None when it failed (counted, not recorded as a latency).
Fire = Callable[[int, int], Awaitable[int | None]]


@dataclass(slots=True)
class LoadResult:
    name: str
    rate: float
    sent: int
    hist: LatencyHistogram = field(default_factory=LatencyHistogram)
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    late_starts: int = 0  # launches more than 1 ms after their intended time (load-gen health)
    elapsed_s: float = 0.0

    @property
    def summary(self) -> Summary:
        return self.hist.summary()

    def note_error(self, exc: BaseException) -> None:
        self.errors += 1
        kind = type(exc).__name__
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


async def constant_rate(name: str, count: int, rate: float, fire: Fire) -> LoadResult:
    """Launch ``count`` requests at ``rate`` per second; latency from each intended send time."""
    if rate <= 0 or count <= 0:
        raise ValueError(f"{name}: rate and count must be positive (got {rate}, {count})")
    result = LoadResult(name=name, rate=rate, sent=count)
    interval_ns = 1e9 / rate
    tasks: list[asyncio.Task[None]] = []

    async def one(i: int, intended: int) -> None:
        try:
            done = await fire(i, intended)
        except Exception as exc:  # a failed request is a result, not a crash of the benchmark
            result.note_error(exc)
            return
        if done is None:
            result.errors += 1
            return
        result.hist.record(done - intended)

    start = time.monotonic_ns() + 5_000_000
    for i in range(count):
        intended = start + int(i * interval_ns)
        wait = intended - time.monotonic_ns()
        if wait > 0:
            await asyncio.sleep(wait / 1e9)
        if time.monotonic_ns() - intended > 1_000_000:
            result.late_starts += 1
        tasks.append(asyncio.create_task(one(i, intended)))
    await asyncio.gather(*tasks)
    result.elapsed_s = (time.monotonic_ns() - start) / 1e9
    return result


async def closed_loop(name: str, count: int, concurrency: int, fire: Fire) -> LoadResult:
    """``concurrency`` workers back to back: for throughput (capacity), never for latency."""
    result = LoadResult(name=name, rate=0.0, sent=count)
    counter = iter(range(count))

    async def worker() -> None:
        for i in counter:
            began = time.monotonic_ns()
            try:
                done = await fire(i, began)
            except Exception as exc:
                result.note_error(exc)
                continue
            if done is None:
                result.errors += 1
            else:
                result.hist.record(done - began)

    t0 = time.monotonic_ns()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.elapsed_s = (time.monotonic_ns() - t0) / 1e9
    result.rate = count / result.elapsed_s if result.elapsed_s else 0.0
    return result
