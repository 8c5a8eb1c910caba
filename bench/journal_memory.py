"""The journal's memory under a steady stream of decided signals, on an injected clock.

    python -m bench.journal_memory [--rate 50] [--minutes 60] [--retention-s 600] [--out FILE]

A real journal (SQLite in a temporary directory) records ``--rate`` signals per second for
``--minutes`` of simulated time (a ManualClock: an hour takes seconds), and reports the ids it
holds in memory and the bytes ``tracemalloc`` counts as allocated by the process, every
simulated minute. With a retention shorter than the run the count must level off at about
rate x retention. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.journal_memory", description=__doc__.split("\n")[0]
    )
    p.add_argument("--rate", type=float, default=50.0, help="signals per second (default 50)")
    p.add_argument("--minutes", type=float, default=60.0, help="simulated minutes (default 60)")
    p.add_argument("--retention-s", type=float, default=600.0, help="the journal's retention")
    p.add_argument("--out", default=None, help="write the JSON here too")
    args = p.parse_args(argv)
    if args.rate <= 0 or args.minutes < 1 or args.retention_s <= 0:
        print("--rate and --retention-s must be positive, --minutes at least 1", file=sys.stderr)
        return 2
    out = asyncio.run(run(args.rate, args.minutes, args.retention_s))
    if args.out:
        Path(args.out).write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
