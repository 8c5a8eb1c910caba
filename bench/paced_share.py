"""The engine's share per signal at a paced rate, in-process, with every garbage collection that
fell inside a signal's share named: is a tail the engine's code, or the collector?

    .venv/bin/python -m bench.paced_share [--rate 200] [--count 3000] [--gc default|freeze]

The engine as ``tl-engine run`` builds it (``build_engine``) around the in-process PaperVenue: no
sandbox, no network, so the figures are the pipeline's own work at a paced rate (cold caches
between signals, as a daemon waiting for the next signal has them). The share is the pipeline's
own stamps (arrival → on the wire, plus reply → outcome published), as in ``tl-engine bench``.
``gc.callbacks`` note each collection's start and end; a signal whose share overlaps one is
counted, and the percentiles are also given without those signals.

To compare two trees on one machine, run this file with each tree on ``PYTHONPATH``, alternating
(``PYTHONPATH=/tree/a python bench/paced_share.py``; the file needs only the tree's
``bench.pipeline_path``). Prints one line; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import time
from typing import Any

from bench.load import constant_rate
from bench.pipeline_path import PipelinePath, pipeline_engine
from engine.observability.metrics import Metrics
from engine.venue.paper import PaperVenue


class _Shares(Metrics):
    """The pipeline's stamps kept per signal (called after the share's end stamp)."""

    def __init__(self) -> None:
        super().__init__()
        self.spans: list[tuple[int, int, int, int]] = []

    def record_stamps(
        self,
        account: str,
        status: int,
        generated_epoch_ns: int,
        arrived: int,
        validated: int = 0,
        gated: int = 0,
        on_wire: int = 0,
        acked: int = 0,
        done: int = 0,
    ) -> None:
        if arrived and on_wire and acked and done:
            self.spans.append((arrived, on_wire, acked, done))


def _pct(values: list[int], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e3


async def run(rate: float, count: int, freeze: bool) -> dict[str, Any]:
    aliases = ["acct1", "acct2", "acct3", "acct4"]
    venue = PaperVenue(aliases, balance=1e12)
    ids = {a: str(900_001 + n) for n, a in enumerate(aliases)}
    collections: list[tuple[int, int, int]] = []
    started: list[int] = [0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        now = time.monotonic_ns()
        if phase == "start":
            started[0] = now
        else:
            collections.append((info["generation"], started[0], now))

    async with pipeline_engine(venue, ids, "http://127.0.0.1:9", "SANDBOX") as (engine, waiter):
        path = PipelinePath(engine, aliases, waiter).series("warm", Metrics())
        await constant_rate("warm", 400, rate, path.fire)
        if freeze:
            gc.collect()
            gc.freeze()
        shares = _Shares()
        path.series("paced", shares)
        gc.callbacks.append(on_gc)
        try:
            result = await constant_rate("paced", count, rate, path.fire)
        finally:
            gc.callbacks.remove(on_gc)
    all_shares: list[int] = []
    clean: list[int] = []
    hit = 0
    for arrived, on_wire, acked, done in shares.spans:
        share = on_wire - arrived + done - acked
        all_shares.append(share)
        overlaps = any(
            (s < on_wire and e > arrived) or (s < done and e > acked) for _, s, e in collections
        )
        if overlaps:
            hit += 1
        else:
            clean.append(share)
    by_gen = [sum(1 for g, _, _ in collections if g == n) for n in range(3)]
    return {
        "signals": len(all_shares),
        "errors": result.errors,
        "late_starts": result.late_starts,
        "share_p50_us": _pct(all_shares, 0.50),
        "share_p99_us": _pct(all_shares, 0.99),
        "share_p999_us": _pct(all_shares, 0.999),
        "share_mean_us": statistics.fmean(all_shares) / 1e3 if all_shares else 0.0,
        "gc_collections_by_gen": by_gen,
        "gc_ms": sum(e - s for _, s, e in collections) / 1e6,
        "signals_with_gc_in_share": hit,
        "no_gc_p50_us": _pct(clean, 0.50),
        "no_gc_p99_us": _pct(clean, 0.99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--gc", choices=("default", "freeze"), default="default")
    args = parser.parse_args()
    out = asyncio.run(run(args.rate, args.count, args.gc == "freeze"))
    print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in out.items()}))


if __name__ == "__main__":
    main()
