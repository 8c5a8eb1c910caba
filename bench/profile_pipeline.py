"""Where the engine's own time goes: the whole pipeline around the in-process PaperVenue, profiled.

    .venv/bin/python -m bench.profile_pipeline --orders 20000 --concurrency 64

Prints pyinstrument's call tree (time per function, wall clock; with no network the wall clock
is the engine's CPU). The venue answers in-process, so everything shown is the engine's share:
decode, lanes, journal, rate gate, outcome events, stamps.
"""

from __future__ import annotations

import argparse
import time

import uvloop
from pyinstrument import Profiler

from bench.load import closed_loop
from bench.pipeline_path import PipelinePath, pipeline_engine
from engine.observability.metrics import Metrics
from engine.venue.paper import PaperVenue


async def profile(orders: int, concurrency: int, accounts: int) -> str:
    aliases = [f"acct{i + 1}" for i in range(accounts)]
    venue = PaperVenue(aliases, balance=1e12)
    ids = {a: str(900_001 + n) for n, a in enumerate(aliases)}
    async with pipeline_engine(venue, ids, "http://127.0.0.1:9", "SANDBOX") as (engine, waiter):
        path = PipelinePath(engine, aliases, waiter).series("warm", Metrics())
        for i in range(200):
            await path.fire(i, time.monotonic_ns())
        path.series("profiled", Metrics())
        profiler = Profiler(async_mode="disabled")
        profiler.start()
        result = await closed_loop("profiled", orders, concurrency, path.fire)
        profiler.stop()
    head = f"{orders} orders, {concurrency} in flight: {result.rate:,.0f} orders/s\n"
    return head + profiler.output_text(unicode=False, color=False, show_all=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--accounts", type=int, default=20)
    args = parser.parse_args()
    print(uvloop.run(profile(args.orders, args.concurrency, args.accounts)))


if __name__ == "__main__":
    main()
