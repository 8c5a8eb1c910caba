"""``tl-engine demo``: the sandbox and the engine in one process, no account and no network
beyond loopback.

It starts the TradeLocker sandbox (sandbox) on a free 127.0.0.1 port, assembles the engine
exactly as the daemon does (config/demo.toml, login through the secret store, warm connections,
journal, rate gates), feeds it JSON-lines signal files through the local source, and prints one
line per outcome, in signal order at the end of each phase: every order type including an
emulated stop-limit, SL/TP, modifies, cancels, a partial close, a reverse, a fan-out group, a
pool, close-all, and a few bad signals refused with their reasons. Then a burst of market orders
paced under the venue's published limits, and the latency percentiles from
engine.observability.metrics: signal→ack and the engine's own share.

The sandbox runs its ``realistic`` profile, as TradeLocker would answer: replies in 50-100 ms
with about 1 % in a 300-1,500 ms tail, a few orders per second per account, short tokens, depth,
partial fills, slippage. Orders that read the venue first (an action by ``ref`` looks the
position up) or waited for rate budget are counted apart from those sent at once, with how long
they waited; so are the orders whose reply fell in the venue's slow tail.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from engine.app.config import Config, load_config, parse_config
from engine.app.daemon import Engine, build_engine
from engine.io.bus import EventBus
from engine.io.sources.local import LocalSignalSource
from engine.model.delivery import Delivery
from engine.model.events import Event, OrderUpdate, OutcomeEvent, Topic
from engine.secrets.store import EnvFileStore

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "config" / "demo.toml"
# The sandbox's built-in user (sandbox.seed.default_users): not a secret, but it still goes
# through the secret store the way a real login's credentials do.
# The realistic profile publishes PLACE_ORDER 5 per second per account and the demo spends 90 %
# of it (config/demo.toml [limits] share): 4 per second per account keeps the burst under the
# budget, so its orders measure the engine and the venue, not a wait for budget.
BURST_RATE = 8  # signals per second, alpha and beta alternating (4/s each)
TAIL_MS = 300  # a venue reply slower than this is the profile's slow tail (300-1,500 ms)
# Held this long before the gate (or at it), an order read the venue first or waited for budget:
# a venue read takes 50 ms or more on this profile, a wait for budget tens of ms; anything
# shorter is the engine's own time and counts against "sent at once".
WAITED_MS = 20
# Actions the adapter carries out as several venue calls inside one venue stage (a reverse reads
# the position, closes it and places the new order): measured apart from single calls.
MULTI_CALL = frozenset({"reverse"})
SLOW_MS = 150  # signal->ack above this without the venue's tail is named, with where it went
SANDBOX_ENV = {"TL_SANDBOX_EMAIL": "demo@sandbox.local", "TL_SANDBOX_PASSWORD": "demo-password"}

# The same engine settings as config/demo.toml, for an installed copy without the repo's config/.
_EMBEDDED = {
    "engine": {"max_qty_lots": 100.0, "stop_limit_poll_ms": 50},
    "logins": {
        "sandbox": {
            "base_url": "http://127.0.0.1:0",
            "server": "SANDBOX",
            "email": "env:TL_SANDBOX_EMAIL",
            "password": "env:TL_SANDBOX_PASSWORD",
        }
    },
    "accounts": {
        "alpha": {"login": "sandbox", "acc_num": 1},
        "beta": {"login": "sandbox", "acc_num": 2, "multiplier": 0.5},
    },
    "groups": {
        "both": {"members": ["alpha", "beta"]},
        "either": {"members": ["alpha", "beta"], "mode": "pool"},
    },
    "timeouts": {"order_s": 2.0, "reconcile_settle_s": 2.0, "reconcile_max_s": 10.0},
}


def _signal(n: int, **fields: Any) -> dict[str, Any]:
    return {"id": f"demo-{n:02d}", **fields}


def scripted_phases() -> list[list[dict[str, Any]]]:
    """The mix, in phases: a later phase refers to earlier signals by ``ref``."""
    eur = {"account": "alpha", "symbol": "EURUSD"}
    return [
        [
            _signal(
                1,
                action="place",
                type="market",
                side="buy",
                qty=0.10,
                stop_loss=1.07,
                sl_type="absolute",
                take_profit=1.10,
                tp_type="absolute",
                **eur,
            ),
            _signal(2, action="place", type="limit", side="buy", qty=0.20, price=1.07, **eur),
            _signal(3, action="place", type="stop", side="sell", qty=0.10, stop_price=1.06, **eur),
            _signal(
                4,
                action="place",
                type="stop_limit",
                side="buy",
                qty=0.10,
                stop_price=1.0860,
                price=1.0865,
                **eur,
            ),
            _signal(
                5,
                account="both",
                action="place",
                symbol="GBPUSD",
                type="market",
                side="sell",
                qty=0.20,
            ),
            _signal(
                6,
                account="either",
                action="place",
                symbol="US30",
                type="market",
                side="buy",
                qty=1.0,
            ),
            # Bad signals: each refused with a reason, and the engine carries on.
            _signal(7, action="place", type="market", side="buy", qty=-1, **eur),
            _signal(
                8,
                account="alpha",
                action="place",
                symbol="EURUSDX",
                type="market",
                side="buy",
                qty=0.1,
            ),
            _signal(9, action="place", type="limit", side="buy", qty=0.1, **eur),
        ],
        [
            _signal(10, action="modify", ref="demo-02", price=1.075, account="alpha"),
            _signal(
                11, action="modify_position", ref="demo-01", take_profit=1.095, account="alpha"
            ),
            _signal(12, action="close", ref="demo-01", qty=0.05, account="alpha"),
            _signal(13, action="cancel", ref="demo-02", account="alpha"),
            _signal(14, action="reverse", ref="demo-05", account="both"),
        ],
        [
            _signal(15, action="cancel_all", account="alpha"),
            _signal(16, action="close_all", account="both"),
        ],
    ]


def _describe(event: OutcomeEvent) -> str:
    status = event.status
    mark = {"accepted": "OK ", "rejected": "NO ", "expired": "EXP", "unknown": "?? "}.get(
        status, status
    )
    ids = (("order_id", event.order_id), ("position_id", event.position_id))
    venue = ", ".join(f"{k} {v}" for k, v in ids if v)
    reason = f" - {event.reason}" if event.reason else ""
    who = event.leg or event.id or "(no id)"
    action = event.action or "?"
    return f"  {mark} {who:<16} {event.account or '-':<6} {action:<16}{venue}{reason}"


async def _feed(engine: Engine, signals: list[dict[str, Any]], workdir: Path, name: str) -> None:
    """Write the phase as a JSON-lines file and run it through the local source."""
    path = workdir / f"{name}.jsonl"
    now_ms = time.time_ns() // 1_000_000
    path.write_bytes(b"".join(orjson.dumps({**s, "ts": now_ms}) + b"\n" for s in signals))
    # A malformed line in the first file too: the source hands it on, the decoder refuses it.
    if name == "phase-1":
        with path.open("ab") as fh:
            fh.write(b'{"id": "demo-broken", "account": "alpha", "action": \n')
    await engine.pipeline.run_source(LocalSignalSource(path))
    await engine.pipeline.drain()


class _OnceFilter(logging.Filter):
    """Lets one rate-limit warning through per (account, route): the gate (engine.execution.
    limits) and the metrics (engine.observability.metrics) each warn when a route nears its
    limit, and a saturated route re-enters "near" every interval. Both loggers pass their
    account and route as the first two arguments."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[str, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if record.levelno != logging.WARNING or not isinstance(args, tuple) or len(args) < 2:
            return True
        key = (str(args[0]), str(args[1]))
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


_RATE_LIMIT_LOGGERS = ("engine.execution.limits", "engine.observability.metrics")


@dataclass
class _Timing:
    """One order leg's stamps, as the pipeline hands them to the metrics (monotonic ns)."""

    leg: str
    action: str
    arrived: int
    validated: int
    gated: int
    on_wire: int
    acked: int
    signal_ns: int  # the signal's ts as monotonic ns

    @property
    def before_gate_ms(self) -> float:
        """Arrival to the gate: venue reads the action needs first (a close or a modify by
        ``ref`` looks the order or position up), the account's earlier signals (a bulk action
        waits for them), and any wait for read budget."""
        return (self.validated - self.arrived) / 1e6

    @property
    def waited_ms(self) -> float:
        """Held at the rate gate for PLACE_ORDER / MODIFY_* budget."""
        return (self.gated - self.validated) / 1e6 if self.gated else 0.0

    @property
    def into_engine_ms(self) -> float:
        """The signal's ts to its arrival: the feeding side's lateness (a stalled loop)."""
        return (self.arrived - self.signal_ns) / 1e6

    @property
    def venue_ms(self) -> float:
        return (self.acked - self.on_wire) / 1e6

    @property
    def signal_to_ack_ms(self) -> float:
        return (self.acked - self.signal_ns) / 1e6


def _percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile (``q`` in 0..100) of ``values`` (not empty)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    return (
        f"p50 {_percentile(values, 50):.1f} ms, p99 {_percentile(values, 99):.1f} ms, "
        f"max {max(values):.1f} ms"
    )


def _legs(timings: list[_Timing], limit: int = 6) -> str:
    names = ", ".join(t.leg for t in timings[:limit])
    return f" ({names}{' ...' if len(timings) > limit else ''})" if timings else ""


def _timing_summary(timings: list[_Timing]) -> list[str]:
    """The demo's own verdict lines, per order leg that reached the venue: signal→ack of those
    sent at once (nothing to read first, no wait for budget), with and without the replies in
    the venue's slow tail; then those that read or waited first, and for how long."""
    multi = [t for t in timings if t.action in MULTI_CALL]
    single = [t for t in timings if t.action not in MULTI_CALL]
    at_once = [t for t in single if t.before_gate_ms < WAITED_MS and t.waited_ms < WAITED_MS]
    tail = [t for t in at_once if t.venue_ms >= TAIL_MS]
    reads = [t for t in single if t.before_gate_ms >= WAITED_MS and t.waited_ms < WAITED_MS]
    waited = [t for t in single if t.waited_ms >= WAITED_MS]
    lines = [
        f"signal->ack, {len(at_once)} orders sent at once (no read first, no wait for rate "
        f"budget): {_spread([t.signal_to_ack_ms for t in at_once])}",
    ]
    if tail:
        slow = ", ".join(f"{t.leg} {t.venue_ms:.0f} ms" for t in tail[:5])
        lines.append(f"  {len(tail)} met the venue's slow tail (reply >= {TAIL_MS} ms): {slow}")
        rest = [t.signal_to_ack_ms for t in at_once if t not in tail]
        lines.append(f"  the other {len(rest)}: {_spread(rest)}")
    late = [t for t in at_once if t not in tail and t.signal_to_ack_ms > SLOW_MS]
    if late:
        lines.append(
            f"  over {SLOW_MS} ms without the tail: "
            + ", ".join(
                f"{t.leg} (into the engine {t.into_engine_ms:.0f} ms after its ts, venue "
                f"{t.venue_ms:.0f} ms)"
                for t in late[:5]
            )
        )
    lines.append(
        f"read the venue or waited for the account's earlier signals first: {len(reads)} orders"
        f"{_legs(reads)}, signal->ack {_spread([t.signal_to_ack_ms for t in reads])}, of it "
        f"before the gate {_spread([t.before_gate_ms for t in reads])}"
    )
    lines.append(
        f"waited for rate budget at the gate: {len(waited)} orders{_legs(waited)}"
        + (f", wait {_spread([t.waited_ms for t in waited])}" if waited else "")
    )
    if multi:
        lines.append(
            f"reverse, several venue calls in one (a positions read within the 2/s read budget, "
            f"the close, the new order): {len(multi)}{_legs(multi)}, signal->ack "
            f"{_spread([t.signal_to_ack_ms for t in multi])}"
        )
    return lines


def _signal_order(phase: list[dict[str, Any]]) -> Callable[[OutcomeEvent], tuple[int, str]]:
    """Sort key: the signal's place in its phase file (legs of one signal by leg name); bytes that
    did not decode come last, as the broken line is the file's last."""
    index = {s["id"]: i for i, s in enumerate(phase)}
    return lambda e: (index.get(e.id, len(index)), e.leg or "")


async def run_demo(
    burst: int, venue_latency_ms: str, out: Callable[[str], None], bus: EventBus | None = None
) -> int:
    """The demo; ``bus`` (optional) is the engine's event bus, for a caller to subscribe to.
    ``venue_latency_ms`` "profile" keeps the realistic profile's latency (50-100 ms, 1 % tail);
    anything else replaces it (``0``: none, ``20-40``: that range with no tail)."""
    from sandbox import Sandbox
    from sandbox.seed import load_seed
    from sandbox.sessions import open_start_ms

    # The realistic profile, its venue clock started where every market the demo trades is open
    # (the wall time on a weekday before 21:00 UTC, else the latest weekday noon): the demo's
    # US30 order would otherwise meet the indices' daily break (22:00-23:00 UTC) or a weekend.
    seed = load_seed(None, profile="realistic")
    seed.clock_start = open_start_ms(time.time_ns() // 1_000_000)
    sandbox = Sandbox(seed, price_interval_ms=0)
    if venue_latency_ms not in ("", "profile"):
        sandbox.faults.update({"latency": venue_latency_ms})
    once = _OnceFilter()
    for name in _RATE_LIMIT_LOGGERS:
        logging.getLogger(name).addFilter(once)
    await sandbox.start("127.0.0.1", 0)
    workdir = Path(tempfile.mkdtemp(prefix="tl-engine-demo-"))
    engine: Engine | None = None
    try:
        cfg = _config(workdir)
        secrets = EnvFileStore(environ=dict(SANDBOX_ENV))
        await secrets.start()
        latency = (
            "50-100 ms replies, ~1 % in 300-1,500 ms"
            if venue_latency_ms in ("", "profile")
            else f"{venue_latency_ms} ms replies"
        )
        out(
            f"sandbox: {sandbox.base_url}  (TradeLocker API on loopback, realistic profile: "
            f"{latency}, PLACE_ORDER 5/s and reads 2/s per account; prices held still)"
        )
        engine = await build_engine(
            cfg,
            secrets=secrets,
            base_url_override=sandbox.base_url,
            with_control=False,
            sources=[],
            bus=bus,
        )
        out(
            f"engine: accounts {', '.join(engine.accounts.sessions)}; groups "
            f"{', '.join(f'{g.name} ({g.mode})' for g in engine.accounts.groups.values())}"
        )
        shown: list[OutcomeEvent] = []
        pending: list[OutcomeEvent] = []  # this phase's outcomes, printed in signal order
        timings: list[_Timing] = []
        triggered = asyncio.Event()
        metrics = engine.metrics
        record_stamps = metrics.record_stamps
        epoch_minus_mono = time.time_ns() - time.monotonic_ns()

        def on_event(topic: Topic, event: Event) -> None:
            if isinstance(event, OutcomeEvent):
                shown.append(event)
                pending.append(event)
            elif isinstance(event, OrderUpdate) and (event.kind or "").startswith("stop_limit"):
                triggered.set()
                out(
                    f"  --> {event.kind}: {event.emulated_id} became venue order "
                    f"{event.order_id} (ask {event.ask})"
                )

        def tap(
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
            # The pipeline publishes a leg's outcome, then hands its stamps to the metrics: the
            # last outcome published is this leg's.
            record_stamps(
                account, status, generated_epoch_ns, arrived, validated, gated, on_wire, acked, done
            )
            if on_wire and acked and generated_epoch_ns and shown:
                signal_ns = generated_epoch_ns - epoch_minus_mono
                last = shown[-1]
                timings.append(
                    _Timing(
                        last.leg or "",
                        last.action or "",
                        arrived,
                        validated,
                        gated,
                        on_wire,
                        acked,
                        signal_ns,
                    )
                )

        metrics.record_stamps = tap  # type: ignore[method-assign]

        def flush(phase: list[dict[str, Any]]) -> None:
            for event in sorted(pending, key=_signal_order(phase)):
                out(_describe(event))
            pending.clear()

        engine.bus.subscribe(on_event)
        phases = scripted_phases()
        out("\nphase 1: every order type, SL/TP, a fan-out group, a pool, three bad signals")
        await _feed(engine, phases[0], workdir, "phase-1")
        flush(phases[0])
        out(
            "\nthe market trades up through the stop-limit's stop (1.0860): the engine places "
            "its limit order"
        )
        sandbox.state.set_price("EURUSD", bid=1.08605, ask=1.08612)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(triggered.wait(), 5.0)
        out("\nphase 2: modify, SL/TP on a position, partial close, cancel, reverse")
        await _feed(engine, phases[1], workdir, "phase-2")
        flush(phases[1])
        out("\nphase 3: cancel all, close all")
        await _feed(engine, phases[2], workdir, "phase-3")
        flush(phases[2])
        scripted = len(shown)

        if burst:
            out(
                f"\nburst: {burst} market orders at {BURST_RATE}/s, alpha and beta alternating "
                f"({BURST_RATE // 2}/s each: under PLACE_ORDER's 5/s), outcomes counted, not "
                "printed; then close all"
            )
            await _paced_burst(engine, burst)
            closes = [
                {"id": "burst-close-a", "account": "alpha", "action": "close_all"},
                {"id": "burst-close-b", "account": "beta", "action": "close_all"},
            ]
            await _feed(engine, closes, workdir, "burst-close")
            pending.clear()
            counts: dict[str, int] = {}
            closed: dict[str, int] = {}
            for e in shown[scripted:]:
                tally = closed if e.id.startswith("burst-close") else counts
                tally[e.status] = tally.get(e.status, 0) + 1
            out(
                "  burst orders: "
                + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
                + "; close all: "
                + ", ".join(f"{v} {k}" for k, v in sorted(closed.items()))
            )

        metrics.fold()
        statuses = [e.status for e in shown]
        out(
            f"\n{len(shown)} outcomes: {statuses.count('accepted')} accepted, "
            f"{statuses.count('rejected')} rejected with a reason, "
            f"{statuses.count('unknown')} unknown"
        )
        for line in _timing_summary(timings):
            out(line)
        out("")
        out(metrics.table(title="latency, all accounts (signal ts -> venue ack)"))
        out(
            "signal_to_ack: the full budget from the signal's ts; engine_share: arrival to ack "
            "minus the venue's time on the wire (a wait for rate budget is the engine's share)."
        )
        return 0
    finally:
        for name in _RATE_LIMIT_LOGGERS:
            logging.getLogger(name).removeFilter(once)
        if engine is not None:
            await engine.stop()
        await sandbox.stop()


async def _paced_burst(engine: Engine, n: int) -> None:
    """Constant-rate load: each signal's ts is its intended send time, so a late send shows up
    in the latency instead of being hidden (no coordinated omission)."""
    interval_ns = 1_000_000_000 // BURST_RATE
    start_wall = time.time_ns()
    start_mono = time.monotonic_ns()
    for i in range(n):
        due = start_mono + i * interval_ns
        delay = (due - time.monotonic_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
        payload = orjson.dumps(
            {
                "id": f"burst-{i:04d}",
                "ts": start_wall + i * interval_ns,
                "account": "alpha" if i % 2 else "beta",
                "action": "place",
                "symbol": "EURUSD",
                "type": "market",
                "side": "buy" if i % 4 < 2 else "sell",
                "qty": 0.02,
            }
        )
        engine.pipeline.submit(Delivery(payload, time.monotonic_ns(), origin="demo"))
    await engine.pipeline.drain()


def _config(workdir: Path) -> Config:
    cfg = load_config(DEMO_CONFIG) if DEMO_CONFIG.is_file() else parse_config(_EMBEDDED)
    return replace(
        cfg,
        journal=replace(cfg.journal, path=str(workdir / "journal.sqlite"), state_dir=str(workdir)),
    )


def cli(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    parser.add_argument(
        "--burst",
        type=int,
        default=80,
        help=f"market orders in the latency burst, {BURST_RATE}/s (default 80: 10 s)",
    )
    parser.add_argument(
        "--venue-latency-ms",
        default="profile",
        help="the sandbox's reply latency: 'profile' (default: TradeLocker-like 50-100 ms with "
        "~1%% of replies in 300-1500 ms), or ms / a range like 20-40 (no tail), 0 for none",
    )

    parser.add_argument(
        "--no-guards-scene",
        action="store_true",
        help="skip the last scene: the prop-firm guards keeping two funded accounts inside their "
        "daily loss and drawdown limits (docs/guards.md)",
    )

    async def both(args: argparse.Namespace) -> int:
        status = await run_demo(args.burst, args.venue_latency_ms, print)
        if status or args.no_guards_scene:
            return status
        from engine.app.guards_scene import run_guards_scene

        print("\n== prop-firm guards: a strategy that would breach the firm's limits unguarded")
        once = _OnceFilter()  # each rate-limit warning once, as in the scenes before
        for name in _RATE_LIMIT_LOGGERS:
            logging.getLogger(name).addFilter(once)
        try:
            return await run_guards_scene(print)
        finally:
            for name in _RATE_LIMIT_LOGGERS:
                logging.getLogger(name).removeFilter(once)

    def run(args: argparse.Namespace) -> int:
        if args.burst < 0:
            print("--burst must be 0 or more", file=sys.stderr)
            return 2
        try:
            import uvloop

            return uvloop.run(both(args))
        except ImportError:
            return asyncio.run(both(args))

    return run
