"""The journal's memory under a steady stream of decided signals, on an injected clock.

    python -m bench.journal_memory [--rate 50] [--minutes 60] [--retention-s 600] [--out FILE]
    python -m bench.journal_memory --record-cost

``--record-cost``: the event loop's own cost of one ``Journal.record`` call (the call, not the
commit it queues), 7 rounds of 5,000 begun-then-recorded ids, median and every round.

A real journal (SQLite in a temporary directory) records ``--rate`` signals per second for
``--minutes`` of simulated time (a ManualClock: an hour takes seconds), and reports the ids it
holds in memory and the bytes ``tracemalloc`` counts as allocated by the process, every
simulated minute. With a retention shorter than the run the count must level off at about
rate x retention. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import orjson

from engine.model.clock import ManualClock
from engine.model.domain import Action, Outcome, OutcomeStatus
from engine.state.journal import Journal


async def run(rate: float, minutes: float, retention_s: float) -> dict[str, Any]:
    clock = ManualClock()
    step = 1.0 / rate
    per_minute = int(rate * 60)
    samples: list[tuple[int, int, float]] = []
    with tempfile.TemporaryDirectory(prefix="tl-bench-journal-") as tmp:
        journal = Journal(Path(tmp) / "j.sqlite", retention_s=retention_s, clock=clock)
        tracemalloc.start()
        try:
            for minute in range(int(minutes)):
                writes = []
                for i in range(per_minute):
                    await clock.advance(step)
                    sid = f"m{minute}-{i}"
                    journal.begin(sid, "acct", "t" + sid)
                    writes.append(
                        journal.record(
                            Outcome(
                                sid,
                                "acct",
                                OutcomeStatus.ACCEPTED,
                                Action.PLACE,
                                order_id=str(i),
                                strategy_tag="t" + sid,
                            )
                        )
                    )
                await asyncio.gather(*writes)
                current, _ = tracemalloc.get_traced_memory()
                samples.append((minute + 1, len(journal), current / 1e6))
                print(f"  minute {minute + 1}: {len(journal)} ids, {current / 1e6:.1f} MB traced",
                      flush=True)  # fmt: skip
        finally:
            tracemalloc.stop()
            await journal.close()
    return {
        "mode": "journal memory",
        "rate": rate,
        "minutes": minutes,
        "retention_s": retention_s,
        "samples_minute_ids_mb": samples,
    }


async def record_cost(rounds: int = 7, n: int = 5000) -> list[float]:
    """ns per ``record()`` call on the loop, per round (the commits are awaited outside)."""
    out: list[float] = []
    with tempfile.TemporaryDirectory(prefix="tl-bench-journal-") as tmp:
        journal = Journal(Path(tmp) / "j.sqlite")
        try:
            for r in range(rounds):
                outs = [
                    Outcome(
                        f"r{r}-{i}",
                        "acct",
                        OutcomeStatus.ACCEPTED,
                        Action.PLACE,
                        order_id="1",
                        strategy_tag=f"t{i}",
                    )
                    for i in range(n)
                ]
                for o in outs:
                    journal.begin(o.signal_id, "acct", o.strategy_tag or "")
                t0 = time.perf_counter_ns()
                writes = [journal.record(o) for o in outs]
                out.append((time.perf_counter_ns() - t0) / n)
                await asyncio.gather(*writes)
        finally:
            await journal.close()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.journal_memory", description=__doc__.split("\n")[0]
    )
    p.add_argument("--rate", type=float, default=50.0, help="signals per second (default 50)")
    p.add_argument("--minutes", type=float, default=60.0, help="simulated minutes (default 60)")
    p.add_argument("--retention-s", type=float, default=600.0, help="the journal's retention")
    p.add_argument("--out", default=None, help="write the JSON here too")
    p.add_argument("--record-cost", action="store_true", help="time Journal.record on the loop")
    args = p.parse_args(argv)
    if args.record_cost:
        per = asyncio.run(record_cost())
        print(f"Journal.record on the loop: median {statistics.median(per):.0f} ns per call "
              f"(rounds: {', '.join(f'{x:.0f}' for x in per)})")  # fmt: skip
        return 0
    if args.rate <= 0 or args.minutes < 1 or args.retention_s <= 0:
        print("--rate and --retention-s must be positive, --minutes at least 1", file=sys.stderr)
        return 2
    out = asyncio.run(run(args.rate, args.minutes, args.retention_s))
    if args.out:
        Path(args.out).write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
