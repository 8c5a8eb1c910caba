"""How many Python and C calls one isolated order makes on each side of the venue call, through
the engine as ``tl-engine run`` builds it (``engine.app.daemon.build_engine`` around the
in-process PaperVenue, the benchmark's config): counted with ``sys.setprofile``.

    .venv/bin/python -m bench.reply_path_calls [--orders 6] [--verbose]

Three phases per order, split where the engine's share is split (``Metrics.record_stamps``:
share = arrival → on the wire, plus reply → outcome published):

* ``send``: from ``Pipeline.submit`` until the venue's ``place_order`` is entered;
* ``reply``: from ``place_order``'s return until the outcome's stamps are queued
  (``Metrics.record_stamps``): the reply side of the measured share (the tracker's bind, the
  rate gate's release, the breaker, the ``outcomes`` event and every bus subscriber);
* ``after``: from there until the pipeline is idle again (the journal's outcome row, the
  delivery's ack, the tracker's bookkeeping): the loop's work per signal, off the share.

The venue's own calls (inside ``place_order``) are not counted. A count, not a time: it moves
only when the code on the path changes, so it compares two trees on a busy machine where a
timing cannot. The first order of an account also builds its lane; compare the steady counts.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

from bench.engine_path import EPOCH_MINUS_MONO, signal_bytes
from bench.pipeline_path import pipeline_engine
from engine.model.delivery import Delivery
from engine.model.domain import OrderRequest
from engine.observability.metrics import Metrics
from engine.venue.paper import PaperVenue

PHASES = ("send", "reply", "after")


class _MarkedVenue(PaperVenue):
    """The paper venue; its ``place_order`` frame marks the venue call in the profile."""

    async def place_order(self, req: OrderRequest) -> Any:
        return await super().place_order(req)


_PLACE = _MarkedVenue.place_order.__code__
_STAMPS = Metrics.record_stamps.__code__


class _Calls:
    """A ``sys.setprofile`` hook counting calls per phase, the venue's own left out."""

    def __init__(self) -> None:
        self.phase = "send"
        self.python: dict[str, Counter[str]] = {p: Counter() for p in PHASES}
        self.c: Counter[str] = Counter()
        self.c_names: dict[str, Counter[str]] = {p: Counter() for p in PHASES}

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        code = frame.f_code
        phase = self.phase
        if event == "call":
            if code is _PLACE:
                self.phase = "venue"
                return
            if code is _STAMPS and phase == "reply":
                self.phase = phase = "after"
            if phase != "venue":
                self.python[phase][f"{Path(code.co_filename).stem}.{code.co_name}"] += 1
        elif event == "return":
            if code is _PLACE and phase == "venue":
                self.phase = "reply"
        elif event == "c_call" and phase != "venue":
            self.c[phase] += 1
            self.c_names[phase][getattr(arg, "__qualname__", repr(arg))] += 1


async def count(orders: int) -> list[_Calls]:
    """The calls of each order, per phase."""
    aliases = ["acct1"]
    venue = _MarkedVenue(aliases, balance=1e12)
    ids = {"acct1": "900001"}
    counted: list[_Calls] = []
    async with pipeline_engine(venue, ids, "http://127.0.0.1:9", "SANDBOX") as (engine, _):
        pipeline = engine.pipeline
        pipeline.metrics = Metrics()
        for i in range(orders):
            now = time.monotonic_ns()
            payload = signal_bytes(i, "acct1", "EURUSD", now + EPOCH_MINUS_MONO, f"calls-{i}")
            calls = _Calls()
            sys.setprofile(calls)
            try:
                pipeline.submit(Delivery(payload, now))
                await pipeline.drain()
            finally:
                sys.setprofile(None)
            if calls.phase != "after":
                raise RuntimeError(f"order {i} ended in phase {calls.phase!r}, not after")
            counted.append(calls)
    return counted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=6)
    parser.add_argument("--verbose", action="store_true", help="list the calls of the last order")
    args = parser.parse_args()
    counted = asyncio.run(count(args.orders))
    for i, calls in enumerate(counted):
        parts = ", ".join(
            f"{p} {sum(calls.python[p].values())} py / {calls.c[p]} C" for p in PHASES
        )
        print(f"order {i}: {parts}")
    if args.verbose:
        last = counted[-1]
        for phase in PHASES:
            print(f"-- {phase}: Python calls")
            for name, n in sorted(last.python[phase].items()):
                print(f"  {n} x {name}")
            print(f"-- {phase}: C calls")
            for name, n in sorted(last.c_names[phase].items()):
                print(f"  {n} x {name}")


if __name__ == "__main__":
    main()
