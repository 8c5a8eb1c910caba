"""How many Python calls an isolated order makes from ``Pipeline.submit`` to the venue's
``place_order``: the pipeline's own path (decode, legs, lane, prepare, journal begin, breaker,
rate gate), counted with ``sys.setprofile``, against the in-process PaperVenue.

    .venv/bin/python -m bench.send_path_calls

A count, not a time: it moves only when the code on the path changes (a wrapper, a helper, a
dispatch frame), so it is the check that a refactoring added no call frame to the send path.
The first order of an account also builds its lane; the steady count is the one to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

import orjson

from engine.execution.accounts import Accounts, AccountSession
from engine.execution.breaker import CircuitBreaker
from engine.execution.limits import AccountLimiter
from engine.execution.pipeline import Pipeline
from engine.execution.reconcile import Reconciler
from engine.execution.settings import AccountSettings
from engine.io.bus import EventBus
from engine.model.delivery import Delivery
from engine.model.domain import Action, OrderRequest, RateLimit
from engine.state.journal import Journal
from engine.venue.paper import ROUTES, PaperVenue

# A budget the order never waits for: the gate's fast path, as for an isolated order.
LIMITS = [RateLimit(route, 10**6, 1.0) for route in ROUTES[Action.PLACE]]


class _MarkedVenue(PaperVenue):
    """The paper venue, noting when an order reaches it (the end of the counted path)."""

    reached = False

    async def place_order(self, req: OrderRequest) -> Any:
        self.reached = True
        return await super().place_order(req)


_PLACE = _MarkedVenue.place_order.__code__


class _Calls:
    """A ``sys.setprofile`` hook counting calls until the venue's place_order is entered."""

    def __init__(self, venue: _MarkedVenue) -> None:
        self.venue = venue
        self.python: Counter[str] = Counter()
        self.c = 0

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if self.venue.reached:
            return
        if event == "call":
            code = frame.f_code
            if code is not _PLACE:
                self.python[f"{Path(code.co_filename).stem}.{code.co_name}"] += 1
        elif event == "c_call":
            self.c += 1


async def count(orders: int) -> list[_Calls]:
    """The calls of each order, from submit to place_order."""
    venue = _MarkedVenue(["a1"])
    gate = AccountLimiter("a1", LIMITS, routes=venue.route_for)
    session = AccountSession(
        AccountSettings("a1", "paper", acc_num=1), venue, gate, CircuitBreaker("a1")
    )
    accounts = Accounts([session], ())
    await accounts.start()
    counted: list[_Calls] = []
    with tempfile.TemporaryDirectory(prefix="tl-bench-calls-") as tmp:
        journal = Journal(Path(tmp) / "journal.sqlite", synchronous="NORMAL")
        bus = EventBus()
        bus.subscribe(lambda topic, event: None)
        pipeline = Pipeline(accounts, journal, bus, reconciler=Reconciler(venue))
        for i in range(orders):
            payload = orjson.dumps(
                {"id": f"s{i}", "account": "a1", "action": "place", "symbol": "EURUSD",
                 "type": "market", "side": "buy", "qty": 0.1}
            )  # fmt: skip
            venue.reached = False
            calls = _Calls(venue)
            sys.setprofile(calls)
            try:
                pipeline.submit(Delivery(payload, 0))
            finally:
                sys.setprofile(None)
            if not venue.reached:
                raise RuntimeError("the order did not reach the venue inside submit")
            await pipeline.drain()
            counted.append(calls)
        await pipeline.close()
        await journal.close()
    return counted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=4)
    parser.add_argument("--verbose", action="store_true", help="list the calls of the last order")
    args = parser.parse_args()
    counted = asyncio.run(count(args.orders))
    for i, calls in enumerate(counted):
        python = sum(calls.python.values())
        print(f"order {i}: {python} Python calls, {calls.c} C calls (submit -> place_order)")
    if args.verbose:
        for name, n in sorted(counted[-1].python.items()):
            print(f"  {n} x {name}")


if __name__ == "__main__":
    main()
