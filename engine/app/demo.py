"""``tl-engine demo``: the sandbox and the engine in one process, no account and no network
beyond loopback.

It starts the TradeLocker sandbox (sandbox) on a free 127.0.0.1 port, assembles the engine
exactly as the daemon does (config/demo.toml, login through the secret store, warm connections,
journal, rate gates), feeds it JSON-lines signal files through the local source, and prints one
line per outcome: every order type including an emulated stop-limit, SL/TP, modifies, cancels, a
partial close, a reverse, a fan-out group, a pool, close-all, and a few bad signals refused with
their reasons. Then a short burst of market orders, and the latency percentiles from
engine.observability.metrics: signal→ack and the engine's own share.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
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
BURST_RATE = 150  # signals per second, both accounts together (each gates at 90/s)
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


async def run_demo(
    burst: int, venue_latency_ms: str, out: Callable[[str], None], bus: EventBus | None = None
) -> int:
    """The demo; ``bus`` (optional) is the engine's event bus, for a caller to subscribe to."""
    from sandbox import Sandbox

    sandbox = Sandbox(profile="fast", price_interval_ms=0)
    if venue_latency_ms not in ("", "0"):
        sandbox.faults.update({"latency": venue_latency_ms})
    await sandbox.start("127.0.0.1", 0)
    workdir = Path(tempfile.mkdtemp(prefix="tl-engine-demo-"))
    engine: Engine | None = None
    try:
        cfg = _config(workdir)
        secrets = EnvFileStore(environ=dict(SANDBOX_ENV))
        await secrets.start()
        out(f"sandbox: {sandbox.base_url}  (TradeLocker API on loopback, prices held still)")
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
        printing = True
        triggered = asyncio.Event()

        def on_event(topic: Topic, event: Event) -> None:
            if isinstance(event, OutcomeEvent):
                shown.append(event)
                if printing:
                    out(_describe(event))
            elif isinstance(event, OrderUpdate) and (event.kind or "").startswith("stop_limit"):
                triggered.set()
                out(
                    f"  --> {event.kind}: {event.emulated_id} became venue order "
                    f"{event.order_id} (ask {event.ask})"
                )

        engine.bus.subscribe(on_event)
        phases = scripted_phases()
        out("\nphase 1: every order type, SL/TP, a fan-out group, a pool, three bad signals")
        await _feed(engine, phases[0], workdir, "phase-1")
        out(
            "\nthe market trades up through the stop-limit's stop (1.0860): the engine places "
            "its limit order"
        )
        sandbox.state.set_price("EURUSD", bid=1.08605, ask=1.08612)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(triggered.wait(), 5.0)
        out("\nphase 2: modify, SL/TP on a position, partial close, cancel, reverse")
        await _feed(engine, phases[1], workdir, "phase-2")
        out("\nphase 3: cancel all, close all")
        await _feed(engine, phases[2], workdir, "phase-3")
        scripted = len(shown)

        if burst:
            printing = False
            out(
                f"\nburst: {burst} market orders at {BURST_RATE}/s over alpha and beta, paced "
                "under their rate limits (outcomes counted, not printed), then close all"
            )
            await _paced_burst(engine, burst)
            await _feed(
                engine,
                [
                    {"id": "burst-close-a", "account": "alpha", "action": "close_all"},
                    {"id": "burst-close-b", "account": "beta", "action": "close_all"},
                ],
                workdir,
                "burst-close",
            )
            counts: dict[str, int] = {}
            closes: dict[str, int] = {}
            for e in shown[scripted:]:
                tally = closes if e.id.startswith("burst-close") else counts
                tally[e.status] = tally.get(e.status, 0) + 1
            out(
                "  burst orders: "
                + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
                + "; close all: "
                + ", ".join(f"{v} {k}" for k, v in sorted(closes.items()))
            )

        engine.metrics.fold()
        statuses = [e.status for e in shown]
        out(
            f"\n{len(shown)} outcomes: {statuses.count('accepted')} accepted, "
            f"{statuses.count('rejected')} rejected with a reason, "
            f"{statuses.count('unknown')} unknown"
        )
        out("")
        out(engine.metrics.table(title="latency, all accounts (signal ts -> venue ack)"))
        out(
            "signal_to_ack: the full budget from the signal's ts; engine_share: arrival to ack "
            "minus the venue's time on the wire."
        )
        return 0
    finally:
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
        "--burst", type=int, default=400, help="market orders in the latency burst (default 400)"
    )
    parser.add_argument(
        "--venue-latency-ms",
        default="0",
        help="latency the sandbox adds to every call, e.g. 50-100 to mimic TradeLocker",
    )

    def run(args: argparse.Namespace) -> int:
        if args.burst < 0:
            print("--burst must be 0 or more", file=sys.stderr)
            return 2
        try:
            import uvloop

            return uvloop.run(run_demo(args.burst, args.venue_latency_ms, print))
        except ImportError:
            return asyncio.run(run_demo(args.burst, args.venue_latency_ms, print))

    return run
