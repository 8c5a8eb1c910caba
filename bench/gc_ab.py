"""A/B of the daemon's garbage-collector setting (``[engine] gc_freeze`` and ``gc_thresholds``),
or (``--what outcome-log``) of its one log line per outcome.

    python -m bench.gc_ab [--runs 3] [--signals 1500] [--rate 50] [--what gc|outcome-log]

``--what outcome-log``: both variants frozen as the daemon is; A without the outcome lines, B with
them written as text to a log file (``[logging] outcomes``, the default of ``tl-engine run``).

Each run is its own process: the engine assembled by ``build_engine`` (as ``tl-engine run``
does) against the benchmark sandbox in a process of its own (``fast`` profile, limits lifted),
warmed with 200 orders, then, as the daemon does after warm-up, either left with CPython's
defaults (A: thresholds 700/10/10, nothing frozen) or given ``engine.app.daemon.freeze_gc`` with
the config's defaults (B: ``gc.collect(); gc.freeze()``, thresholds 50000/20/100). Then
``--signals`` market orders at ``--rate`` per second, each timed from submission to its outcome
event; the collector's own pauses are timed with ``gc.callbacks``. Runs alternate A, B, A, B, ...
Nothing is asserted; the figures go to ``bench/RESULTS.md`` by hand, with the command.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

FIELDS = ("p50_us", "p99_us", "p999_us", "max_us", "gc_runs", "gc_max_us", "gc_total_ms")


async def _one(variant: str, signals: int, rate: float, what: str) -> dict[str, Any]:
    from bench.engine_path import EPOCH_MINUS_MONO, signal_bytes
    from bench.pipeline_path import OutcomeWaiter, bench_config
    from bench.sandbox import BENCH_EMAIL, BENCH_PASSWORD, BENCH_SERVER, start_sandbox
    from engine.app import logs
    from engine.app.daemon import build_engine
    from engine.app.run import freeze_gc
    from engine.app.settings import LoggingSettings, ProcessSettings
    from engine.model.delivery import Delivery
    from engine.secrets.store import EnvFileStore

    sandbox = await start_sandbox(1)
    try:
        with tempfile.TemporaryDirectory(prefix="tl-gc-ab-") as tmp:
            cfg = bench_config(
                Path(tmp), {"a": sandbox.account_ids[0]}, sandbox.base_url, BENCH_SERVER
            )
            secrets = EnvFileStore(
                environ={"TL_BENCH_EMAIL": BENCH_EMAIL, "TL_BENCH_PASSWORD": BENCH_PASSWORD}
            )
            await secrets.start()
            outcome_log = what == "outcome-log" and variant == "B"
            if what == "outcome-log":
                logs.configure(LoggingSettings(file=str(Path(tmp) / "engine.log")))
            engine = await build_engine(
                cfg, secrets=secrets, with_control=False, sources=[], log_outcomes=outcome_log
            )
            waiter = OutcomeWaiter()
            engine.bus.subscribe(waiter.on_event)

            async def fire(i: int, prefix: str) -> int:
                sid = f"{prefix}-{i}"
                now = time.monotonic_ns()
                fut = waiter.expect(sid)
                payload = signal_bytes(i, "a", "EURUSD", now + EPOCH_MINUS_MONO, sid)
                engine.pipeline.submit(Delivery(payload, now))
                done, event = await fut
                if event.status != "accepted":
                    raise RuntimeError(f"{sid}: {event.status}: {event.reason}")
                return done - now

            try:
                await asyncio.gather(*(fire(i, "warm") for i in range(200)))
                if variant == "B" or what == "outcome-log":
                    freeze_gc(ProcessSettings())
                pauses: list[int] = []
                started: list[int] = [0]

                def on_gc(phase: str, info: dict[str, Any]) -> None:
                    if phase == "start":
                        started[0] = time.perf_counter_ns()
                    else:
                        pauses.append(time.perf_counter_ns() - started[0])

                gc.callbacks.append(on_gc)
                latencies: list[int] = []
                tasks = []
                period = 1.0 / rate
                t0 = time.monotonic()
                for i in range(signals):
                    delay = t0 + i * period - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    tasks.append(asyncio.ensure_future(fire(i, "run")))
                latencies = list(await asyncio.gather(*tasks))
                gc.callbacks.remove(on_gc)
            finally:
                await engine.stop()
            log_lines = 0
            if what == "outcome-log":
                log_lines = (Path(tmp) / "engine.log").read_text().count("engine.outcomes")
    finally:
        await sandbox.stop()
    latencies.sort()

    def q(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] / 1000

    return {
        "variant": variant,
        "p50_us": q(0.5),
        "p99_us": q(0.99),
        "p999_us": q(0.999),
        "max_us": latencies[-1] / 1000,
        "gc_runs": len(pauses),
        "gc_max_us": max(pauses, default=0) / 1000,
        "gc_total_ms": sum(pauses) / 1e6,
        "outcome_lines": log_lines,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each variant")
    parser.add_argument("--signals", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=300.0, help="signals per second")
    parser.add_argument("--what", choices=("gc", "outcome-log"), default="gc")
    parser.add_argument("--one", choices=("A", "B"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        import uvloop

        print(json.dumps(uvloop.run(_one(args.one, args.signals, args.rate, args.what))))
        return
    results: dict[str, list[dict[str, Any]]] = {"A": [], "B": []}
    for _ in range(args.runs):
        for variant in ("A", "B"):
            out = subprocess.run(
                [sys.executable, "-m", "bench.gc_ab", "--one", variant,
                 "--signals", str(args.signals), "--rate", str(args.rate), "--what", args.what],
                check=True, capture_output=True, text=True, env={**os.environ},
            )  # fmt: skip
            row = json.loads(out.stdout.strip().splitlines()[-1])
            results[variant].append(row)
            keys = ("variant", *FIELDS, "outcome_lines")
            print(" ".join(f"{k}={row[k]}" for k in keys), flush=True)
    print("\nmedian (min..max) over runs")
    if args.what == "gc":
        print("| figure | A: CPython defaults | B: gc_freeze + 50000/20/100 |")
    else:
        print("| figure | A: no outcome lines | B: one text line per outcome, to a file |")
    print("|---|---|---|")
    for f in FIELDS:
        cells = []
        for variant in ("A", "B"):
            values = [r[f] for r in results[variant]]
            cells.append(f"{statistics.median(values):.1f} ({min(values):.1f}..{max(values):.1f})")
        print(f"| {f} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
