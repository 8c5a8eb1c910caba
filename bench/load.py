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
import random
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


@dataclass(slots=True)
class Interleaved:
    """One constant-rate series of several kinds of request drawn in random order.

    ``results[kind]`` holds each kind's latencies; ``order[j]`` is the (kind, index) of the j-th
    request of the series, so a ratio can be taken over any stretch of time (``block_ratios``).
    """

    results: dict[str, LoadResult]
    order: list[tuple[str, int]]
    latencies: dict[str, list[int | None]]
    elapsed_s: float = 0.0

    def block_ratios(self, num: str, den: str, blocks: int = 10, q: float = 0.5) -> list[float]:
        """The ``q``-quantile ratio ``num``/``den`` in each of ``blocks`` consecutive stretches of
        the series: every stretch holds both kinds at the same moments, so the spread of these
        ratios is the ratio's own spread, not the machine's drift between series."""
        a, b = self.latencies[num], self.latencies[den]
        n = min(len(a), len(b))
        size = max(1, n // blocks)
        out: list[float] = []
        for start in range(0, n - size + 1, size):
            xa = sorted(v for v in a[start : start + size] if v is not None)
            xb = sorted(v for v in b[start : start + size] if v is not None)
            if xa and xb:
                qa = xa[min(len(xa) - 1, int(q * len(xa)))]
                qb = xb[min(len(xb) - 1, int(q * len(xb)))]
                out.append(qa / qb if qb else float("inf"))
        return out


def interleaved_schedule(kinds: list[str], count: int, seed: int) -> list[tuple[str, int]]:
    """``count`` requests of each kind in blocks of one of each, shuffled within each block: the
    kinds meet the same moments (no kind is ever more than one block away from the others), and
    no kind has a fixed place that a periodic disturbance could line up with."""
    rng = random.Random(seed)
    order: list[tuple[str, int]] = []
    for i in range(count):
        block = list(kinds)
        rng.shuffle(block)
        order += [(k, i) for k in block]
    return order


async def interleaved_rate(
    name: str, count: int, rate: float, fires: dict[str, Fire], seed: int = 1
) -> Interleaved:
    """``count`` requests of each kind in ``fires``, drawn in random order, launched as ONE
    constant-rate series of ``rate`` requests per second per kind (``rate * len(fires)`` in all);
    each latency from its intended send time, as in :func:`constant_rate`."""
    if rate <= 0 or count <= 0 or not fires:
        raise ValueError(f"{name}: rate, count and kinds must be positive (got {rate}, {count})")
    kinds = list(fires)
    order = interleaved_schedule(kinds, count, seed)
    total_rate = rate * len(kinds)
    results = {k: LoadResult(name=f"{k} ({name})", rate=rate, sent=count) for k in kinds}
    latencies: dict[str, list[int | None]] = {k: [None] * count for k in kinds}
    interval_ns = 1e9 / total_rate

    async def one(kind: str, i: int, intended: int) -> None:
        result = results[kind]
        try:
            done = await fires[kind](i, intended)
        except Exception as exc:
            result.note_error(exc)
            return
        if done is None:
            result.errors += 1
            return
        result.hist.record(done - intended)
        latencies[kind][i] = done - intended

    tasks: list[asyncio.Task[None]] = []
    start = time.monotonic_ns() + 5_000_000
    for j, (kind, i) in enumerate(order):
        intended = start + int(j * interval_ns)
        wait = intended - time.monotonic_ns()
        if wait > 0:
            await asyncio.sleep(wait / 1e9)
        if time.monotonic_ns() - intended > 1_000_000:
            results[kind].late_starts += 1
        tasks.append(asyncio.create_task(one(kind, i, intended)))
    await asyncio.gather(*tasks)
    elapsed = (time.monotonic_ns() - start) / 1e9
    for r in results.values():
        r.elapsed_s = elapsed
    return Interleaved(results, order, latencies, elapsed)
