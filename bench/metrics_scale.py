"""An engine with many accounts: what the latency histograms cost, and how long the health pass
holds the event loop.

    python -m bench.metrics_scale histograms [--accounts 300]
    python -m bench.metrics_scale engine [--accounts 300] [--orders-per-account 2] [--passes 20]

* ``histograms``: a bare :class:`Metrics` fed one signal with every stage stamped for each of
  ``--accounts`` accounts, folded: the Python heap it holds afterwards (tracemalloc), per
  account and per histogram, the time the fold took (the histograms are created there, on
  the event loop in the daemon), then the time of one folder slice (256 signals) once every
  histogram exists, of the all-accounts summaries, and of a scrape of ``/metrics``
  (``render_prometheus``) with 18 rate-limit buckets and 4 health components per account.
* ``engine``: the engine as ``tl-engine run`` builds it (``build_engine``, the TradeLocker
  adapter) against the sandbox with venue-like rate limits and ``--accounts`` accounts; every
  account trades ``--orders-per-account`` market orders with the stamps going to the engine's
  own :class:`Metrics` (as in the daemon), folded; then the process's RSS, and ``--passes``
  health passes over all accounts (the daemon's own health task is stopped meanwhile), each
  driven by hand one slice at a time: the time of one whole pass and of each slice (what the
  loop runs between two yields of the pass). The RSS includes the load generator and the
  adapter; compare runs with the same arguments.

Nothing is asserted; each mode prints and, with ``--out``, writes its JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import orjson
import uvloop

from bench.capacity import rss_mb
from bench.load import closed_loop
from bench.pipeline_path import PipelinePath, pipeline_engine
from bench.runner import _bench_venue, _flatten, machine
from bench.sandbox import BENCH_SERVER, start_sandbox
from engine.app.daemon import Engine
from engine.observability.metrics import Metrics

_US = 1_000


def _fed(accounts: int) -> Metrics:
    """A Metrics with one signal per account queued, every stage stamped, not yet folded."""
    now = time.monotonic_ns()
    gen_epoch = time.time_ns() - 2_000_000
    m = Metrics()
    for n in range(accounts):
        # arrived, validated, gated, on_wire, acked, done: every stage gets a value.
        m.record_stamps(
            f"acct{n + 1}", 1, gen_epoch, now, now + 20 * _US, now + 25 * _US, now + 60 * _US,
            now + 70_000 * _US, now + 70_030 * _US,
        )  # fmt: skip
    return m


def histograms_mode(accounts: int) -> dict[str, Any]:
    # The fold's time without tracemalloc (which slows every allocation), then the memory.
    m = _fed(accounts)
    t0 = time.perf_counter()
    m.fold()
    fold_s = time.perf_counter() - t0
    # Then the folder's slice in a steady state (every histogram exists): 256 signals, as
    # run_folder folds between two yields to the loop; the median of 7.
    slices = []
    for _ in range(7):
        more = _fed(accounts)
        m._pending.extend(more._pending)
        m._appended += len(more._pending)
        t0 = time.perf_counter()
        m.fold(256)
        slices.append(time.perf_counter() - t0)
        m.fold()
    del m
    gc.collect()
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    m = _fed(accounts)
    m.fold()
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    count = len(m.hists)
    # A scrape: the histograms, plus what the health pass sets for each account (18 rate-limit
    # buckets, as the TradeLocker adapter has, and the 4 components).
    for n in range(accounts):
        alias = f"acct{n + 1}"
        for r in range(18):
            m.set_rate_limit(alias, f"ROUTE_{r}", used=r % 5, limit=10)
        for component in ("auth", "stream", "breaker", "limiter"):
            m.health.set(alias, component, "ok", True)
    scrapes = []
    for _ in range(5):
        t0 = time.perf_counter()
        m.render_prometheus()
        scrapes.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    m.summaries()  # the all-accounts view, as /status and the demo read it
    summaries_s = time.perf_counter() - t0
    return {
        "mode": "histograms",
        "machine": machine(),
        "accounts": accounts,
        "histograms": count,
        "bytes_held": held - base,
        "bytes_per_account": (held - base) / accounts,
        "bytes_per_histogram": (held - base) / count,
        "fold_ms": fold_s * 1e3,
        "fold_slice_256_ms_median": statistics.median(slices) * 1e3,
        "all_accounts_summaries_ms": summaries_s * 1e3,
        "scrape_ms_first": scrapes[0] * 1e3,
        "scrape_ms_median": statistics.median(scrapes) * 1e3,
    }


async def _health_passes(eng: Engine, passes: int) -> dict[str, Any]:
    """Each pass driven by hand, one slice per ``send``: a slice is exactly what the loop runs
    between two of the pass's yields, nothing else of the loop's counted in."""
    from engine.app.health_pass import health_pass

    for task in eng._tasks:
        if task.get_name() == "health":
            task.cancel()
    await asyncio.sleep(0.1)
    stream_of = {v.alias: live for live in eng.streams for v in live.accounts()}
    totals: list[float] = []
    longest: list[float] = []
    slices: list[float] = []
    for _ in range(passes):
        coro = health_pass(eng.accounts, stream_of, eng.metrics)
        mine: list[float] = []
        while True:
            t0 = time.perf_counter()
            try:
                coro.send(None)
            except StopIteration:
                mine.append(time.perf_counter() - t0)
                break
            mine.append(time.perf_counter() - t0)
            await asyncio.sleep(0)  # the loop turns between slices, as it does in the daemon
        totals.append(sum(mine))
        longest.append(max(mine))
        slices.extend(mine)
        await asyncio.sleep(0.02)
    return {
        "passes": passes,
        "slices_per_pass": len(slices) / passes,
        "pass_ms_median": statistics.median(totals) * 1e3,
        "pass_ms_max": max(totals) * 1e3,
        "slice_us_median": statistics.median(slices) * 1e6,
        "longest_slice_us_median": statistics.median(longest) * 1e6,
        "longest_slice_us_max": max(longest) * 1e6,
    }


async def engine_mode(accounts: int, per_account: int, passes: int) -> dict[str, Any]:
    gc.collect()
    before = rss_mb()
    sandbox = await start_sandbox(accounts, lifted=False)
    try:
        venue, ids = _bench_venue(sandbox)
        async with pipeline_engine(venue, ids, sandbox.host_url, BENCH_SERVER) as (eng, waiter):
            gc.collect()
            started = rss_mb()
            # The engine's own Metrics, as the daemon's pipeline records into.
            path = PipelinePath(eng, list(ids), waiter).series("mscale", eng.metrics)
            result = await closed_loop("orders", accounts * per_account, 32, path.fire)
            eng.metrics.fold()
            gc.collect()
            traded = rss_mb()
            health = await _health_passes(eng, passes)
            await _flatten(venue, list(ids))
            return {
                "mode": "engine",
                "machine": machine(),
                "accounts": accounts,
                "orders": result.sent,
                "order_errors": result.error_kinds,
                "accounts_with_histograms": len(eng.metrics.accounts()),
                "histograms": len(eng.metrics.hists),
                "rss_mb_before_engine": before,
                "rss_mb_engine_started": started,
                "rss_mb_after_trading": traded,
                "health": health,
            }
    finally:
        await sandbox.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.metrics_scale", description=__doc__.split("\n")[0]
    )
    sub = p.add_subparsers(dest="mode", required=True)
    h = sub.add_parser("histograms")
    h.add_argument("--accounts", type=int, default=300)
    e = sub.add_parser("engine")
    e.add_argument("--accounts", type=int, default=300)
    e.add_argument("--orders-per-account", type=int, default=2)
    e.add_argument("--passes", type=int, default=20)
    for q in (h, e):
        q.add_argument("--out", type=Path, default=None, help="write the JSON here too")
    args = p.parse_args(argv)
    numbers = [v for k, v in vars(args).items() if k not in ("mode", "out")]
    if any(v <= 0 for v in numbers):
        print("every count must be positive", file=sys.stderr)
        return 2
    if args.mode == "histograms":
        out = histograms_mode(args.accounts)
        print(
            f"{out['histograms']} histograms for {args.accounts} accounts: "
            f"{out['bytes_held'] / 1e6:.1f} MB, {out['bytes_per_account'] / 1e3:.1f} KB per "
            f"account, {out['bytes_per_histogram'] / 1e3:.1f} KB per histogram; fold "
            f"{out['fold_ms']:.1f} ms, a slice of 256 signals after "
            f"{out['fold_slice_256_ms_median']:.2f} ms; all-accounts summaries "
            f"{out['all_accounts_summaries_ms']:.1f} ms; a scrape of /metrics "
            f"{out['scrape_ms_first']:.0f} ms the first, then {out['scrape_ms_median']:.0f} ms"
        )
    else:
        out = uvloop.run(engine_mode(args.accounts, args.orders_per_account, args.passes))
        hp = out["health"]
        print(
            f"RSS {out['rss_mb_before_engine']:.1f} MB before the engine, "
            f"{out['rss_mb_engine_started']:.1f} MB with {args.accounts} accounts, "
            f"{out['rss_mb_after_trading']:.1f} MB after {out['orders']} orders "
            f"({out['histograms']} histograms, errors {out['order_errors']}); health pass "
            f"median {hp['pass_ms_median']:.2f} ms (max {hp['pass_ms_max']:.2f}) in "
            f"{hp['slices_per_pass']:.0f} slices of median {hp['slice_us_median']:.0f} us, the "
            f"longest slice of a pass median {hp['longest_slice_us_median']:.0f} us "
            f"(max {hp['longest_slice_us_max']:.0f})"
        )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
