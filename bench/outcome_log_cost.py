"""The CPU cost of the daemon's line per outcome (``engine.app.logs.OutcomeLog``), per outcome:

    python -m bench.outcome_log_cost [--events 20000] [--format text|json]

``publish`` is what runs on the order's path when the outcome is published (the check, the
latency lookup, the queueing); ``write`` is the line's formatting and writing to a log file on
the next loop turn. Both timed with ``time.thread_time_ns`` (CPU time of this thread, so other
processes' load does not count), over ``--events`` accepted outcomes written in batches of 16.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from engine.app import logs
from engine.app.settings import LoggingSettings
from engine.model.events import OutcomeEvent


async def _time(sink: logs.OutcomeLog, events: list[OutcomeEvent]) -> tuple[int, int]:
    """CPU ns in ``publish`` (as the bus calls it) and in writing the queued lines."""
    publish = write = 0
    for start in range(0, len(events), 16):
        t0 = time.thread_time_ns()
        for event in events[start : start + 16]:
            sink.publish(event)
        t1 = time.thread_time_ns()
        sink._write()  # what the loop's next turn runs (call_soon)
        t2 = time.thread_time_ns()
        publish += t1 - t0
        write += t2 - t1
        await asyncio.sleep(0)  # the scheduled turn, now with nothing queued
    return publish, write


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--format", choices=("text", "json"), default="text")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        logs.configure(LoggingSettings(file=str(Path(tmp) / "e.log"), format=args.format))
        sink = logs.OutcomeLog(lambda leg: 1_234_567)
        events = [
            OutcomeEvent(
                id=f"s{i}",
                leg=f"s{i}",
                account="a1",
                status="accepted",
                action="place",
                order_id=str(7_000_000_000 + i),
                tag=f"t{i:06x}",
            )
            for i in range(args.events)
        ]
        publish, write = asyncio.run(_time(sink, events))
        lines = (Path(tmp) / "e.log").read_text().count("\n")
    n = len(events)
    print(
        f"{args.format}: {n} outcomes, {lines} lines: publish {publish / n / 1000:.2f} us, "
        f"write {write / n / 1000:.2f} us per outcome (CPU time)"
    )


if __name__ == "__main__":
    main()
