"""``tl-engine chaos``: every chaos run at full size (or ``--short``, the test suite's sizes),
or the ones named with ``--run``; prints each run's figures and whether each goal was met."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def cli(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    from chaos.runs import RUNS

    names = [*RUNS, "kafka-kill", "kafka-two"]
    parser.add_argument(
        "--run", action="append", choices=names, help="run only these (repeatable); default: all"
    )
    parser.add_argument("--short", action="store_true", help="the test suite's short sizes")
    parser.add_argument("--kafka", metavar="BOOTSTRAP", help="a running broker for the Kafka runs "
                        "(default: start one with scripts/kafka.sh)")  # fmt: skip
    parser.add_argument("--workdir", type=Path, help="keep logs and journals here (default: temp)")

    def run(args: argparse.Namespace) -> int:
        return asyncio.run(_main(args.run or names, args.short, args.kafka, args.workdir))

    return run


async def _main(names: list[str], short: bool, kafka: str | None, workdir: Path | None) -> int:
    from chaos.runs import FULL, RUNS, SHORT

    size = SHORT if short else FULL
    missed = 0
    broker: Any = None
    try:
        for name in names:
            where = None if workdir is None else workdir / name
            print(f"-- {name} ...", flush=True)
            try:
                if name in RUNS:
                    result = await RUNS[name](size, where)
                else:
                    from chaos import kafka_runs

                    if broker is None:
                        broker = kafka_runs.Broker(kafka)
                    result = await kafka_runs.RUNS[name](size, broker.bootstrap, where)
            except Exception as exc:  # one broken run is reported; the others still run
                print(f"== {name}: did not complete: {type(exc).__name__}: {exc}", flush=True)
                missed += 1
                continue
            print("\n".join(result.lines()), flush=True)
            missed += not result.met
    finally:
        if broker is not None:
            broker.stop()
    print(f"chaos: {len(names) - missed} of {len(names)} run(s) met every goal", file=sys.stderr)
    return 1 if missed else 0
