"""Fan-out: one signal to a group of N accounts, from its arrival to the LAST leg's bytes written.

    python -m bench.fanout [--legs 50] [--rate 10] [--count 300] [--gc daemon|default] [--out FILE]

The sandbox (own process, ``fast`` profile, 0 ms, rate limits lifted) holds ``--legs`` accounts;
the engine (``build_engine``, as the daemon builds it) has them all in one ``fanout`` group, and
each signal is addressed to the group. Every leg's stamps come from the pipeline's own outcome
path (``Metrics.record_stamps``: all legs of a signal carry the signal's arrival stamp), so per
signal this reports:

* arrival -> last leg on the wire: the largest ``on_wire - arrived`` of its legs (the stamp is
  taken when the leg's request bytes are handed to its connection), the fan-out goal's figure;
* arrival -> last leg acknowledged.

Signals are paced (``--rate``; each is ``--legs`` orders) and measured from their arrival, as the
engine's own stamps are. Positions are flattened before the series. Nothing is asserted.

``--gc daemon`` (the default) sets up the garbage collector after the warm-up as ``tl-engine run``
does with its default ``[engine]`` keys (``gc_thresholds``, ``gc_freeze``: engine.app.run); with
``--gc default`` the interpreter's own thresholds stay (the figures recorded before 2026-11-26
15:00 were taken that way).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import orjson
import uvloop

from bench.engine_path import EPOCH_MINUS_MONO, signal_bytes
from bench.load import constant_rate
from bench.pipeline_path import pipeline_engine
from bench.runner import _flatten, machine
from bench.sandbox import BENCH_EMAIL, BENCH_PASSWORD, BENCH_SERVER, start_sandbox
from engine.app.run import freeze_gc
from engine.app.settings import ProcessSettings
from engine.model.delivery import Delivery
from engine.model.domain import OutcomeStatus
from engine.observability.metrics import LatencyHistogram, Metrics, Summary
from engine.tradelocker.rest import ConnectionSettings
from engine.tradelocker.venue import AccountSpec, LoginSpec, TradeLockerVenue

GROUP = "fan"
ACCEPTED = int(OutcomeStatus.ACCEPTED)


class LegStamps(Metrics):
    """The pipeline's recorder, also grouping each signal's legs by their shared arrival stamp."""

    def __init__(self, legs: int) -> None:
        super().__init__()
        self.legs = legs
        self._legs: dict[int, list[tuple[int, int, int]]] = {}
        self._waiting: dict[int, asyncio.Future[list[tuple[int, int, int]]]] = {}

    def expect(self, arrived: int) -> asyncio.Future[list[tuple[int, int, int]]]:
        fut: asyncio.Future[list[tuple[int, int, int]]] = asyncio.get_running_loop().create_future()
        self._waiting[arrived] = fut
        return fut

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
        super().record_stamps(
            account, status, generated_epoch_ns, arrived, validated, gated, on_wire, acked, done
        )
        legs = self._legs.setdefault(arrived, [])
        legs.append((status, on_wire, acked))
        if len(legs) == self.legs:
            del self._legs[arrived]
            fut = self._waiting.pop(arrived, None)
            if fut is not None and not fut.done():
                fut.set_result(legs)


class LegsNotAccepted(Exception):
    pass


def _pct(s: Summary) -> dict[str, float]:
    return {"count": s.count, "p50_us": s.p50 / 1e3, "p90_us": s.p90 / 1e3,
            "p99_us": s.p99 / 1e3, "max_us": s.max / 1e3}  # fmt: skip


async def run(legs: int, rate: float, count: int, gc_mode: str = "daemon") -> dict[str, Any]:
    sandbox = await start_sandbox(legs)
    try:
        login = LoginSpec(
            name="bench",
            base_url=sandbox.backend_url,
            email=BENCH_EMAIL,
            password=BENCH_PASSWORD,
            server=BENCH_SERVER,
            verify_tls=False,
        )
        ids = {f"acct{i + 1}": acc for i, acc in enumerate(sandbox.account_ids)}
        specs = [AccountSpec(alias=a, login="bench", account_id=i) for a, i in ids.items()]
        # One order per account per signal: one warm connection each is what a leg needs.
        venue = TradeLockerVenue([login], specs, connection=ConnectionSettings(order_connections=1))
        aliases = list(ids)
        async with pipeline_engine(
            venue, ids, sandbox.host_url, BENCH_SERVER, groups={GROUP: aliases}
        ) as (engine, _waiter):
            stamps = LegStamps(legs)
            engine.pipeline.metrics = stamps
            hist = {"wire": LatencyHistogram(), "ack": LatencyHistogram()}

            async def fire(i: int, intended: int) -> int:
                payload = signal_bytes(
                    i, GROUP, "EURUSD", intended + EPOCH_MINUS_MONO, f"fan-{intended}-{i}"
                )
                arrived = time.monotonic_ns()
                done = stamps.expect(arrived)
                engine.pipeline.submit(Delivery(payload, arrived))
                recs = await done
                if any(s != ACCEPTED for s, _, _ in recs):
                    raise LegsNotAccepted(f"{sum(s != ACCEPTED for s, _, _ in recs)} legs")
                hist["wire"].record(max(w for _, w, _ in recs) - arrived)
                last_ack = max(a for _, _, a in recs)
                hist["ack"].record(last_ack - arrived)
                return last_ack

            for i in range(3):  # warm-up: every leg's lane and connection once
                await fire(i, time.monotonic_ns())
            hist = {"wire": LatencyHistogram(), "ack": LatencyHistogram()}
            await _flatten(venue, aliases)
            gc_setup = freeze_gc(ProcessSettings()) if gc_mode == "daemon" else "interpreter's"
            result = await constant_rate(f"fan-out x{legs}", count, rate, fire)
            stamps.fold()
            await _flatten(venue, aliases)
            return {
                "mode": f"fan-out to {legs} accounts",
                "machine": machine(),
                "legs": legs,
                "rate_signals_per_s": rate,
                "signals": count,
                "errors": result.error_kinds,
                "gc": gc_setup,
                "arrival_to_last_leg_on_wire": _pct(hist["wire"].summary()),
                "arrival_to_last_leg_acked": _pct(hist["ack"].summary()),
                "per_leg_stages": {k: _pct(v) for k, v in stamps.summaries().items()},
            }
    finally:
        await sandbox.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__.split("\n")[0])
    p.add_argument("--legs", type=int, default=50)
    p.add_argument("--rate", type=float, default=10.0, help="signals per second (default 10)")
    p.add_argument("--count", type=int, default=300)
    p.add_argument(
        "--gc",
        choices=("daemon", "default"),
        default="daemon",
        help="daemon: the collector set up as tl-engine run does (default); default: as is",
    )
    p.add_argument("--out", default=None, help="write the JSON here too")
    args = p.parse_args(argv)
    if args.legs < 1 or args.rate <= 0 or args.count < 1:
        print("--legs, --rate and --count must be positive", file=sys.stderr)
        return 2
    out = uvloop.run(run(args.legs, args.rate, args.count, args.gc))
    w, a = out["arrival_to_last_leg_on_wire"], out["arrival_to_last_leg_acked"]
    print(f"{out['mode']}: {out['signals']} signals at {args.rate:g}/s, errors {out['errors']},"
          f" gc {out['gc']}")  # fmt: skip
    print(f"arrival -> last leg on the wire: p50 {w['p50_us']:.0f} us, p99 {w['p99_us']:.0f} us,"
          f" max {w['max_us']:.0f} us")  # fmt: skip
    print(f"arrival -> last leg acknowledged: p50 {a['p50_us']:.0f} us, p99 {a['p99_us']:.0f} us")
    if args.out:
        with open(args.out, "wb") as f:
            f.write(orjson.dumps(out, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
