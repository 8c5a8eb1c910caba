"""Capacity and memory: orders/s through the pipeline, resident memory, growth over a soak.

    python -m bench.capacity orders [--runs 3] [--orders 3000] [--concurrency 64] [--accounts 4]
    python -m bench.capacity memory [--accounts 100] [--positions 1000]
    python -m bench.capacity soak [--minutes 30] [--rate 50] [--accounts 20]

* ``orders``: closed loop (``--concurrency`` in flight) through the whole pipeline (the engine as
  ``build_engine`` assembles it) against (a) the sandbox's ``fast`` profile in its own process,
  0 ms, rate limits lifted, and (b) the in-process ``PaperVenue``; ``--runs`` times each,
  alternating, with each run's orders/s and the median and spread.
* ``memory``: the engine against the sandbox (its own, venue-like rate limits: the engine's rate
  gate keeps one int64 per request a limit allows, ~7 MB per bucket at the lifted limits of the
  latency runs) with ``--accounts`` accounts, then ``--positions``
  market orders (spread over the accounts, left open): the benchmark process's resident memory
  (``/proc/self/status`` VmRSS) before the engine, after it started, and with the positions open.
  The process also holds the load generator (small, and the same before and after).
* ``soak``: the same engine at a paced ``--rate`` for ``--minutes``, positions flattened every
  minute (the sandbox's own book must not grow without bound), RSS sampled every 10 s; reports
  the growth from the first minute's median to the last's. A long run: not in CI.

Nothing is asserted; each mode prints and, with ``--out``, writes its JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import uvloop

from bench.load import closed_loop, constant_rate
from bench.pipeline_path import PipelinePath, pipeline_engine
from bench.runner import _bench_venue, _flatten, machine
from bench.sandbox import BENCH_SERVER, start_sandbox
from engine.observability.metrics import Metrics
from engine.venue.paper import PaperVenue


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _spread(values: list[float]) -> dict[str, float]:
    med = statistics.median(values)
    return {
        "median": med,
        "min": min(values),
        "max": max(values),
        "pm_pct": 100 * max(abs(v - med) for v in values) / med if med else float("nan"),
        "runs": len(values),
    }


async def _sandbox_run(accounts: int, orders: int, concurrency: int, run: int) -> float:
    sandbox = await start_sandbox(accounts)
    try:
        venue, ids = _bench_venue(sandbox)
        async with pipeline_engine(venue, ids, sandbox.host_url, BENCH_SERVER) as (eng, waiter):
            path = PipelinePath(eng, list(ids), waiter).series(f"cap{run}-warm", Metrics())
            for i in range(4 * accounts):
                await path.fire(i, time.monotonic_ns())
            await _flatten(venue, list(ids))
            path.series(f"cap{run}", Metrics())
            result = await closed_loop("sandbox", orders, concurrency, path.fire)
            # No flatten after: the sandbox is stopped with its book (closing 750 positions
            # per account took over the 5 s reply timeout at load average 8).
            if result.errors:
                print(f"  sandbox run {run}: {result.error_kinds}", file=sys.stderr)
            return result.rate
    finally:
        await sandbox.stop()


async def _paper_run(accounts: int, orders: int, concurrency: int, run: int) -> float:
    aliases = [f"acct{i + 1}" for i in range(accounts)]
    venue = PaperVenue(aliases, balance=1e12)
    ids = {a: str(900_001 + n) for n, a in enumerate(aliases)}
    async with pipeline_engine(venue, ids, "http://127.0.0.1:9", BENCH_SERVER) as (eng, waiter):
        path = PipelinePath(eng, aliases, waiter).series(f"paper{run}-warm", Metrics())
        for i in range(200):
            await path.fire(i, time.monotonic_ns())
        path.series(f"paper{run}", Metrics())
        result = await closed_loop("paper", orders, concurrency, path.fire)
        return result.rate


async def orders_mode(runs: int, orders: int, concurrency: int, accounts: int) -> dict[str, Any]:
    sandbox_rates: list[float] = []
    paper_rates: list[float] = []
    for run in range(runs):
        sandbox_rates.append(await _sandbox_run(accounts, orders, concurrency, run))
        paper_rates.append(await _paper_run(accounts, orders * 4, concurrency, run))
        print(
            f"run {run + 1}: fast sandbox {sandbox_rates[-1]:,.0f} orders/s, "
            f"in-process venue {paper_rates[-1]:,.0f} orders/s",
            flush=True,
        )
    return {
        "mode": "capacity",
        "machine": machine(),
        "orders": orders,
        "concurrency": concurrency,
        "accounts": accounts,
        "fast_sandbox_orders_per_s": sandbox_rates,
        "paper_venue_orders_per_s": paper_rates,
        "fast_sandbox": _spread(sandbox_rates),
        "paper_venue": _spread(paper_rates),
    }


async def memory_mode(accounts: int, positions: int) -> dict[str, Any]:
    gc.collect()
    before = rss_mb()
    # The venue's own rate limits (not lifted): the engine's gate sizes its rings by them.
    sandbox = await start_sandbox(accounts, lifted=False)
    try:
        venue, ids = _bench_venue(sandbox)
        async with pipeline_engine(venue, ids, sandbox.host_url, BENCH_SERVER) as (eng, waiter):
            gc.collect()
            started = rss_mb()
            path = PipelinePath(eng, list(ids), waiter).series("mem", Metrics())
            result = await closed_loop("positions", positions, 32, path.fire)
            open_positions = sum(
                len(p) for p in await asyncio.gather(*(venue.positions(a) for a in ids))
            )
            gc.collect()
            with_positions = rss_mb()
            await _flatten(venue, list(ids))
            return {
                "mode": "memory",
                "machine": machine(),
                "accounts": accounts,
                "orders": positions,
                "order_errors": result.error_kinds,
                "open_positions_at_venue": open_positions,
                "rss_mb_before_engine": before,
                "rss_mb_engine_started": started,
                "rss_mb_with_positions": with_positions,
            }
    finally:
        await sandbox.stop()


async def soak_mode(
    minutes: float, rate: float, accounts: int, retention_s: float | None = None
) -> dict[str, Any]:
    sandbox = await start_sandbox(accounts, lifted=False)  # as memory_mode: venue-like limits
    samples: list[tuple[float, float]] = []
    try:
        venue, ids = _bench_venue(sandbox)
        async with pipeline_engine(venue, ids, sandbox.host_url, BENCH_SERVER) as (eng, waiter):
            if retention_s is not None:  # engine.journal_retention_s, shortened for a short soak
                eng.pipeline.journal.retention_ns = int(retention_s * 1e9)
            path = PipelinePath(eng, list(ids), waiter)
            t0 = time.monotonic()
            minute = 0
            errors: dict[str, int] = {}
            sent = 0
            while time.monotonic() - t0 < minutes * 60:
                # One minute in six 10 s slices, RSS after each; fresh signal ids per slice.
                for part in range(6):
                    path.series(f"soak{minute}-{part}", Metrics())
                    result = await constant_rate("soak", int(rate * 10), rate, path.fire)
                    sent += result.sent
                    for k, n in result.error_kinds.items():
                        errors[k] = errors.get(k, 0) + n
                    samples.append((time.monotonic() - t0, rss_mb()))
                await _flatten(venue, list(ids))
                minute += 1
                print(f"  minute {minute}: RSS {samples[-1][1]:.1f} MB", flush=True)
    finally:
        await sandbox.stop()
    first = statistics.median(v for t, v in samples[:6])
    last = statistics.median(v for t, v in samples[-6:])
    return {
        "mode": "soak",
        "machine": machine(),
        "minutes": minutes,
        "rate": rate,
        "accounts": accounts,
        "journal_retention_s": retention_s,
        "signals": sent,
        "errors": errors,
        "rss_mb_samples": samples,
        "rss_mb_first_minute": first,
        "rss_mb_last_minute": last,
        "growth_mb": last - first,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="mode", required=True)
    o = sub.add_parser("orders")
    o.add_argument("--runs", type=int, default=3)
    o.add_argument("--orders", type=int, default=3000)
    o.add_argument("--concurrency", type=int, default=64)
    o.add_argument("--accounts", type=int, default=4)
    m = sub.add_parser("memory")
    m.add_argument("--accounts", type=int, default=100)
    m.add_argument("--positions", type=int, default=1000)
    s = sub.add_parser("soak")
    s.add_argument("--minutes", type=float, default=30.0)
    s.add_argument("--rate", type=float, default=50.0)
    s.add_argument("--accounts", type=int, default=20)
    s.add_argument(
        "--journal-retention-s",
        type=float,
        default=None,
        help="the journal's retention for this soak (default: the engine's, 7 days), so that a "
        "short soak shows decided ids being forgotten while running",
    )
    for q in (o, m, s):
        q.add_argument("--out", type=Path, default=None, help="write the JSON here too")
    args = p.parse_args(argv)
    numbers = [v for k, v in vars(args).items() if k not in ("mode", "out")]
    if any(v is not None and v <= 0 for v in numbers):
        print("every count, rate and duration must be positive", file=sys.stderr)
        return 2
    if args.mode == "orders":
        out = uvloop.run(orders_mode(args.runs, args.orders, args.concurrency, args.accounts))
        for key in ("fast_sandbox", "paper_venue"):
            sp = out[key]
            print(
                f"{key}: median {sp['median']:,.0f} orders/s ({sp['min']:,.0f}..{sp['max']:,.0f},"
                f" +-{sp['pm_pct']:.0f} %)"
            )
    elif args.mode == "memory":
        out = uvloop.run(memory_mode(args.accounts, args.positions))
        print(
            f"RSS: {out['rss_mb_before_engine']:.1f} MB before the engine, "
            f"{out['rss_mb_engine_started']:.1f} MB with {args.accounts} accounts, "
            f"{out['rss_mb_with_positions']:.1f} MB with {out['open_positions_at_venue']} open "
            f"positions (errors {out['order_errors']})"
        )
    else:
        retention = args.journal_retention_s
        out = uvloop.run(soak_mode(args.minutes, args.rate, args.accounts, retention))
        print(
            f"soak {args.minutes:g} min at {args.rate:g}/s: RSS {out['rss_mb_first_minute']:.1f}"
            f" -> {out['rss_mb_last_minute']:.1f} MB ({out['growth_mb']:+.1f} MB), "
            f"errors {out['errors']}"
        )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
