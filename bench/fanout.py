"""Fan-out: one signal to a group of N accounts, from its arrival to the LAST leg's bytes written.

    python -m bench.fanout [--legs 50] [--rate 10] [--count 300] [--gc daemon|default] [--ab]
                           [--out FILE]

The sandbox (own process, ``fast`` profile, 0 ms, rate limits lifted) holds ``--legs`` accounts;
the engine (``build_engine``, as the daemon builds it) has them all in one ``fanout`` group, and
each signal is addressed to the group. Every leg's stamps come from the pipeline's own outcome
path (``Metrics.record_stamps``: all legs of a signal carry the signal's arrival stamp), so per
signal this reports:

* arrival -> last leg's bytes written: the fan-out goal's figure. Stamped by the order
  transport itself, right after each order's ``transport.write`` (a ``Connection`` subclass of
  this benchmark: one clock read and a list append per POST written);
* arrival -> last leg on the wire (pipeline stamp): the largest ``on_wire - arrived`` of its legs,
  the pipeline's own stamp, taken just before the venue call (so it leaves out the last leg's
  request building and write);
* arrival -> last leg acknowledged;
* the CPU time of ``Pipeline.submit`` for the signal (``time.thread_time_ns``: every leg that
  does not wait is prepared and written inside it), the figure least disturbed by other
  processes on a shared machine.

Each account has the daemon's default order connections (``engine.order_connections`` = 2): a
leg whose account's previous order is still in flight takes the second one instead of waiting.
(Until 2026-11-26 16:30 the benchmark ran with 1 per account.)

Signals are paced (``--rate``; each is ``--legs`` orders) and measured from their arrival, as the
engine's own stamps are. Positions are flattened before the series. Nothing is asserted.

``--ab`` alternates the signals of one series between the order transport as it is and as it
was before 2026-11-26 16:30 (every write probed with ``MSG_PEEK``, place-order through
``RestClient.submit``, a loop timer per request for the reply), so both meet the same machine
at the same moments; each gets its own figures ("now" and "before").

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
from collections.abc import Mapping
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
from engine.model.domain import OrderRequest, OutcomeStatus
from engine.observability.metrics import LatencyHistogram, Metrics, Summary
from engine.tradelocker import wire
from engine.tradelocker.connection import Connection, Reply
from engine.tradelocker.order_body import check_request, encode_place_order
from engine.tradelocker.venue import AccountSpec, LoginSpec, TradeLockerVenue
from engine.venue.protocol import PlaceResult

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


# Monotonic ns right after each order request's bytes were handed to the socket.
WRITES: list[int] = []


class StampedConnection(Connection):
    """The order transport's connection, stamping the moment an order's bytes are written."""

    def send(self, payload: bytes) -> asyncio.Future[Reply]:
        waiter = super().send(payload)
        if payload.startswith(b"POST"):
            WRITES.append(time.monotonic_ns())
        return waiter


def _pct(s: Summary) -> dict[str, float]:
    return {"count": s.count, "p50_us": s.p50 / 1e3, "p90_us": s.p90 / 1e3,
            "p99_us": s.p99 / 1e3, "max_us": s.max / 1e3}  # fmt: skip


async def _place_order_before(self: TradeLockerVenue, request: OrderRequest) -> PlaceResult:
    """``TradeLockerVenue.place_order`` as it was before 2026-11-26 16:30 (``--ab``'s "before"):
    through ``RestClient.submit`` and its coroutines."""
    check_request(request)
    acct = self._account(request.account)
    path = f"/trade/accounts/{acct.client.account_id}/orders"
    reply = await acct.client.submit(
        "POST",
        path,
        encode_place_order(request),
        strategy_tag=request.strategy_tag,
        send_by_ns=request.send_by_ns,
    )
    order_id = reply.get("orderId") if isinstance(reply, Mapping) else None
    if order_id is None:
        raise LegsNotAccepted(f"POST {path}: no orderId")
    return PlaceResult(order_id=str(order_id))


async def _round_trip_before(
    self: wire.OrderConnections, payload: bytes, timeout_s: float, send_by_ns: int = 0
) -> Reply:
    """``OrderConnections.round_trip`` as it was before 2026-11-26 16:40 (``--ab``'s "before"):
    a loop timer per request for the reply's deadline."""
    loop = asyncio.get_running_loop()
    waited_from = 0.0
    while True:
        conn = self._take_idle()
        if conn is None:
            if not waited_from:
                waited_from = loop.time()
            conn = await self._wait_for_connection(waited_from, timeout_s, send_by_ns)
        if send_by_ns and time.monotonic_ns() > send_by_ns:
            self._release(conn)
            raise wire.TooLate(f"{self.label}: too old to send", 0.0)
        try:
            waiter = conn.send(payload)
        except wire.NotSent:
            self._discard(conn)
            continue
        break
    timer = loop.call_later(timeout_s, conn.expire, timeout_s)
    try:
        reply = await waiter
    except wire.SentNoReply:
        self._discard(conn)
        raise
    except BaseException:
        conn.abort()
        self._discard(conn)
        raise
    finally:
        timer.cancel()
    conn.last_used = time.monotonic()
    self._release(conn)
    return reply


PLACE_NOW = TradeLockerVenue.place_order
ROUND_TRIP_NOW = wire.OrderConnections.round_trip


def _variant(venue: TradeLockerVenue, aliases: list[str], before: bool) -> None:
    """``--ab``: the transport as it was (every write probed, place-order through ``submit``,
    a timer per request) or as it is."""
    TradeLockerVenue.place_order = _place_order_before if before else PLACE_NOW  # type: ignore[method-assign]
    wire.OrderConnections.round_trip = _round_trip_before if before else ROUND_TRIP_NOW  # type: ignore[method-assign]
    for alias in aliases:
        pool = venue.client(alias).orders_transport
        assert pool is not None
        pool._probe_after = 0.0 if before else pool._ping_after / 2


async def run(
    legs: int, rate: float, count: int, gc_mode: str = "daemon", ab: bool = False
) -> dict[str, Any]:
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
        wire.Connection = StampedConnection  # type: ignore[misc]
        venue = TradeLockerVenue([login], specs)
        aliases = list(ids)
        async with pipeline_engine(
            venue, ids, sandbox.host_url, BENCH_SERVER, groups={GROUP: aliases}
        ) as (engine, _waiter):
            stamps = LegStamps(legs)
            engine.pipeline.metrics = stamps
            hist = _histograms()

            async def fire(i: int, intended: int) -> int:
                before = ab and i % 2 == 1
                if ab:
                    _variant(venue, aliases, before)
                h = hist["before" if before else "now"]
                payload = signal_bytes(
                    i, GROUP, "EURUSD", intended + EPOCH_MINUS_MONO, f"fan-{intended}-{i}"
                )
                arrived = time.monotonic_ns()
                done = stamps.expect(arrived)
                first = len(WRITES)
                cpu = time.thread_time_ns()
                engine.pipeline.submit(Delivery(payload, arrived))
                h["cpu"].record(time.thread_time_ns() - cpu)
                recs = await done
                if any(s != ACCEPTED for s, _, _ in recs):
                    raise LegsNotAccepted(f"{sum(s != ACCEPTED for s, _, _ in recs)} legs")
                # This signal's legs are the first ``legs`` orders written after its arrival
                # (signals are paced far apart compared with a fan-out's writing).
                h["written"].record(WRITES[first : first + legs][-1] - arrived)
                h["wire"].record(max(w for _, w, _ in recs) - arrived)
                last_ack = max(a for _, _, a in recs)
                h["ack"].record(last_ack - arrived)
                return last_ack

            for i in range(3):  # warm-up: every leg's lane and connection once
                await fire(i, time.monotonic_ns())
            hist = _histograms()
            await _flatten(venue, aliases)
            gc_setup = freeze_gc(ProcessSettings()) if gc_mode == "daemon" else "interpreter's"
            result = await constant_rate(f"fan-out x{legs}", count, rate, fire)
            stamps.fold()
            if ab:
                _variant(venue, aliases, False)
            await _flatten(venue, aliases)
            out: dict[str, Any] = {
                "mode": f"fan-out to {legs} accounts",
                "machine": machine(),
                "legs": legs,
                "rate_signals_per_s": rate,
                "signals": count,
                "errors": result.error_kinds,
                "gc": gc_setup,
                **_figures(hist["now"]),
                "per_leg_stages": {k: _pct(v) for k, v in stamps.summaries().items()},
            }
            if ab:
                out["before"] = _figures(hist["before"])
            return out
    finally:
        await sandbox.stop()


def _histograms() -> dict[str, dict[str, LatencyHistogram]]:
    return {
        variant: {k: LatencyHistogram() for k in ("written", "wire", "ack", "cpu")}
        for variant in ("now", "before")
    }


def _figures(h: dict[str, LatencyHistogram]) -> dict[str, dict[str, float]]:
    return {
        "arrival_to_last_leg_written": _pct(h["written"].summary()),
        "submit_cpu": _pct(h["cpu"].summary()),
        "arrival_to_last_leg_on_wire": _pct(h["wire"].summary()),
        "arrival_to_last_leg_acked": _pct(h["ack"].summary()),
    }


def _print(label: str, fig: dict[str, dict[str, float]]) -> None:
    w, a = fig["arrival_to_last_leg_on_wire"], fig["arrival_to_last_leg_acked"]
    b, c = fig["arrival_to_last_leg_written"], fig["submit_cpu"]
    print(f"{label}arrival -> last leg's bytes written: p50 {b['p50_us']:.0f} us, p99 "
          f"{b['p99_us']:.0f} us, max {b['max_us']:.0f} us ({b['count']} signals)")  # fmt: skip
    print(f"{label}arrival -> last leg on the wire (pipeline stamp): p50 {w['p50_us']:.0f} us, "
          f"p99 {w['p99_us']:.0f} us, max {w['max_us']:.0f} us")  # fmt: skip
    print(f"{label}submit's own CPU time (thread time; the legs written inside it): p50 "
          f"{c['p50_us']:.0f} us, p99 {c['p99_us']:.0f} us")  # fmt: skip
    print(f"{label}arrival -> last leg acknowledged: p50 {a['p50_us']:.0f} us, p99 "
          f"{a['p99_us']:.0f} us")  # fmt: skip


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
    p.add_argument(
        "--ab",
        action="store_true",
        help="alternate signals between the order transport as it is and as it was before "
        "2026-11-26 16:30 (every write probed, place-order through RestClient.submit, a timer "
        "per request)",
    )
    p.add_argument("--out", default=None, help="write the JSON here too")
    args = p.parse_args(argv)
    if args.legs < 1 or args.rate <= 0 or args.count < 1:
        print("--legs, --rate and --count must be positive", file=sys.stderr)
        return 2
    out = uvloop.run(run(args.legs, args.rate, args.count, args.gc, args.ab))
    print(f"{out['mode']}: {out['signals']} signals at {args.rate:g}/s, errors {out['errors']},"
          f" gc {out['gc']}")  # fmt: skip
    _print("now:    " if args.ab else "", out)
    if args.ab:
        _print("before: ", out["before"])
    if args.out:
        with open(args.out, "wb") as f:
            f.write(orjson.dumps(out, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
