"""The engine share with the prop-firm guards on and off, side by side in one run.

    python -m bench.guards [--rounds 4] [--count 400] [--rate 200] [--accounts 4]

One sandbox (``tl-engine sim``, its own process, 0 ms latency, limits lifted) and one engine from
``build_engine`` (the real pipeline, bench/pipeline_path.py). Every account gets the same rules
(loss limits, lots, positions, order counts, allowed instruments: every check of
``engine._fast.check_guard`` runs and passes, none refuses). The rounds alternate guards off and
on (off, on, on, off, off, on, ...) so both meet the same machine and the same moments of load;
each series is ``--count`` market orders at ``--rate`` per second, positions closed between
series. The engine share (arrival to ack minus the venue's time on the wire) of all the "off"
series and of all the "on" series is printed, with the compiled check's own cost per call.
Nothing is asserted: the figures go to bench/RESULTS.md by hand, with the command.
"""

from __future__ import annotations

import argparse
import time
import timeit

import uvloop

from bench.load import constant_rate
from bench.pipeline_path import PipelinePath, pipeline_engine
from bench.runner import _bench_venue, _flatten
from bench.sandbox import BENCH_SERVER, start_sandbox
from engine._fast import COMPILED, GuardState, check_guard
from engine.execution.guard_setup import start_guards
from engine.execution.settings import GuardSettings, RuleSettings
from engine.observability.metrics import Metrics

RULES = RuleSettings(
    daily_loss=1e9,
    max_drawdown=1e9,
    max_lots_order=100.0,
    max_lots_instrument=1e6,
    max_lots_account=1e6,
    max_positions=1_000_000,
    max_orders_per_minute=10_000,
    max_orders_per_day=10_000_000,
    instruments=("EURUSD",),
)


def check_cost_ns() -> float:
    """ns per ``check_guard`` call that passes every rule (the ring and counters included), less
    the cost of the timing loop's own call (the best of five)."""
    st = GuardState(1e9, 1e9, 0.1, 100.0, 1e9, 1e9, 10**9, 10_000, 10**9)
    st.equity = st.day_ref = st.dd_top = 100_000.0
    n = 100_000
    clock = iter(range(10**9))
    with_check = min(
        timeit.repeat(lambda: check_guard(st, 278, 0.01, 22.0, next(clock) * 100.0), number=n)
    )
    loop = min(timeit.repeat(lambda: next(clock) * 100.0, number=n))
    return (with_check - loop) / n * 1e9


async def run(rounds: int, count: int, rate: float, accounts: int) -> None:
    sandbox = await start_sandbox(accounts)
    try:
        venue, account_ids = _bench_venue(sandbox)
        aliases = list(account_ids)
        async with pipeline_engine(venue, account_ids, sandbox.host_url, BENCH_SERVER) as (
            eng,
            waiter,
        ):
            book, _ = await start_guards(
                GuardSettings(),
                eng.config.accounts.values(),
                eng.config.groups.values(),
                {"default": RULES},
                eng.accounts,
                eng.bus,
            )
            assert book is not None
            path = PipelinePath(eng, aliases, waiter)
            path.series("warm", Metrics())
            for i in range(4 * accounts):
                await path.fire(i, time.monotonic_ns())
            metrics = {"off": Metrics(), "on": Metrics()}
            errors = {"off": 0, "on": 0}
            order = ["off", "on"]
            for r in range(rounds):
                for mode in order if r % 2 == 0 else order[::-1]:
                    await _flatten(venue, aliases)
                    eng.pipeline.guards = book if mode == "on" else None
                    path.series(f"{mode}-{r}", metrics[mode])
                    result = await constant_rate(f"guards {mode}", count, rate, path.fire)
                    errors[mode] += result.errors
                    print(f"  round {r + 1}, guards {mode}: {count} orders, {result.errors} errors")
            eng.pipeline.guards = book  # closed with the pipeline
            await _flatten(venue, aliases)
    finally:
        await sandbox.stop()
    print(f"\ncompiled hot path: {COMPILED}; check_guard per call: {check_cost_ns():.0f} ns")
    print(f"engine share, us, {rounds} x {count} orders each at {rate:g}/s, {accounts} accounts:")
    print("guards | p50 | p90 | p99 | p99.9 | orders | errors")
    for mode in ("off", "on"):
        m = metrics[mode]
        m.fold()
        s = m.histogram("engine_share").summary()
        print(
            f"{mode} | {s.p50 / 1e3:.1f} | {s.p90 / 1e3:.1f} | {s.p99 / 1e3:.1f} | "
            f"{s.p999 / 1e3:.1f} | {s.count} | {errors[mode]}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--accounts", type=int, default=4)
    args = parser.parse_args()
    uvloop.run(run(args.rounds, args.count, args.rate, args.accounts))


if __name__ == "__main__":
    main()
