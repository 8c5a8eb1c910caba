"""A demo scene of the prop-firm guards (docs/guards.md), for ``tl-engine demo`` to call:

    from engine.app.guards_scene import run_guards_scene
    status = await run_guards_scene(print)       # 0: the sandbox recorded no breach

The built-in sandbox on the ``realistic`` profile with a firm's rules on two accounts (a daily
loss limit of 1,000 on the first, a trailing drawdown of 1,000 on the second), and the engine with
the same rules in its config. A scripted strategy that breaches both limits when nothing guards
it (tests/guards/test_guards_on_sandbox.py runs it both ways) runs through the engine: the daily
loss guard refuses the order that would pass its limit, the drawdown guard warns, then halts the
account and flattens it before the firm's limit; every guard event and outcome is printed, and
the sandbox's own verdict at the end.

The login has the Streams API (the sandbox serves it), as a prop trader's would: the guards take
equity, positions and orders from the live state and send no periodic read, so the scene spends
none of the accounts' read budget (without a stream they would read every 2 s here: 25 % of the
profile's 2 reads per second per route, ``guards.read_share``).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from engine.app.config import parse_config
from engine.app.daemon import Engine, build_engine
from engine.model.delivery import Delivery
from engine.model.events import Event, GuardEvent, OutcomeEvent, Topic
from engine.secrets.store import EnvFileStore

__all__ = ["run_guards_scene"]

EURUSD = 278
_ENV = {"TL_SANDBOX_EMAIL": "demo@sandbox.local", "TL_SANDBOX_PASSWORD": "demo-password"}
FIRM_RULES = {
    "accountRules": {
        "accounts": {
            "700001": {"dailyLossLimit": 1000},
            "700002": {"maxDrawdown": 1000, "drawdownMode": "trailing"},
        }
    }
}


def _config(base_url: str, workdir: Path) -> dict[str, Any]:
    return {
        "engine": {"journal_path": str(workdir / "journal.sqlite"), "state_dir": str(workdir)},
        "logins": {
            "sandbox": {
                "base_url": base_url,
                "server": "SANDBOX",
                "email": "env:TL_SANDBOX_EMAIL",
                "password": "env:TL_SANDBOX_PASSWORD",
                "stream_url": base_url.replace("http://", "ws://"),
                "developer_api_key": "env:TL_SANDBOX_DEV_KEY",
            }
        },
        "accounts": {
            "funded1": {"login": "sandbox", "acc_num": 1},
            "funded2": {"login": "sandbox", "acc_num": 2},
        },
        "timeouts": {"order_s": 5.0, "reconcile_settle_s": 6.0},
        "guards": {"warn_levels": [0.4], "halt_level": 0.7, "poll_ms": 600},
        "rules": {
            "default": {"no_sl_move_pct": 0.5, "instruments": ["EURUSD"]},
            "funded1": {"daily_loss": 1000.0},
            "funded2": {"max_drawdown": 1000.0, "drawdown_mode": "trailing"},
        },
    }


async def run_guards_scene(out: Callable[[str], None], wait_s: float = 20.0) -> int:
    """The scene; 0 when the sandbox recorded no breach, 1 otherwise."""
    from sandbox import Sandbox
    from sandbox.seed import config_from_dict

    sb = Sandbox(config_from_dict(FIRM_RULES, "realistic"), price_interval_ms=0)
    await sb.start("127.0.0.1", 0)
    workdir = Path(tempfile.mkdtemp(prefix="tl-engine-guards-"))
    engine: Engine | None = None
    events: list[Event] = []
    seen = asyncio.Event()

    def price(bid: float) -> None:
        sb.state.set_price(EURUSD, bid=round(bid, 5), ask=round(bid + 0.0001, 5))
        out(f"  market: EURUSD bid {bid:.5f}")

    def on_event(topic: Topic, event: Event) -> None:
        events.append(event)
        if isinstance(event, GuardEvent):
            out(f"  guard {event.kind}: {event.reason}")
            seen.set()
        elif isinstance(event, OutcomeEvent):
            why = f": {event.reason}" if event.reason else ""
            out(f"  {event.id} on {event.account}: {event.status}{why}")

    async def guard_event(account: str, kind: str) -> None:
        deadline = time.monotonic() + wait_s
        while not any(
            isinstance(e, GuardEvent) and e.account == account and e.kind == kind for e in events
        ):
            seen.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                out(f"  (no {kind} event on {account} within {wait_s:g} s)")
                return
            try:
                await asyncio.wait_for(seen.wait(), left)
            except TimeoutError:
                pass

    async def new_high(account: str) -> None:
        """Until a read of the account that began after the price moved has been applied."""
        assert engine is not None and engine.pipeline.guards is not None
        for _ in range(2):  # the first may have begun before the move
            await asyncio.wait_for(engine.pipeline.guards.next_read(account), wait_s)

    async def order(sid: str, account: str, **fields: Any) -> None:
        body: dict[str, Any] = {"id": sid, "account": account, "action": "place"}
        body |= {"symbol": "EURUSD", "side": "buy", "type": "market", "qty": 1.0, **fields}
        assert engine is not None
        engine.pipeline.submit(Delivery(orjson.dumps(body), time.monotonic_ns(), origin="demo"))
        await engine.pipeline.drain()

    try:
        price(1.10000)
        env = _ENV | {"TL_SANDBOX_DEV_KEY": sb.state.config.developer_api_key}
        secrets = EnvFileStore(environ=env)
        await secrets.start()
        engine = await build_engine(
            parse_config(_config(sb.base_url, workdir)),
            secrets=secrets,
            with_control=False,
            sources=[],
        )
        engine.bus.subscribe(on_event)
        try:
            async with asyncio.timeout(wait_s):
                for live in engine.streams:
                    await live.wait_live()
        except TimeoutError:
            out(f"  (the Streams API is not live after {wait_s:g} s: the guards read instead)")
        book = engine.pipeline.guards
        assert book is not None
        spent = {a: g.reads for a, g in book.accounts.items()}
        out(
            "prop-firm guards: funded1 has a daily loss limit of 1,000, funded2 a trailing "
            "drawdown of 1,000 (the sandbox enforces both; the engine guards them with a 10 % "
            "margin, warns at 40 %, halts at 70 %)"
        )
        out("funded1: two buys of 1 lot with a stop 60 pips away (600 each)")
        await order("g-1", "funded1", stop_loss=1.0940, sl_type="absolute")
        await order("g-2", "funded1", stop_loss=1.0940, sl_type="absolute")
        out("funded2: a buy of 1 lot without a stop loss, then the market rises and falls")
        await order("g-3", "funded2")
        price(1.10300)
        await new_high("funded2")
        price(1.09900)
        await guard_event("funded2", "warning")
        price(1.09600)
        await guard_event("funded2", "halted")
        price(1.09400)
        out("funded1: one more buy with a stop 40 pips away")
        await order("g-4", "funded1", stop_loss=1.0900, sl_type="absolute")
        price(1.08500)
        for alias, g in book.accounts.items():
            reads = g.reads - spent[alias]
            how = (
                "from the Streams API"
                if g.source == "stream"
                else f"read every {g.interval_s:g} s at background priority"
            )
            out(f"guards: {alias}'s figures {how}; {reads} reads of its state, positions, orders")
        breaches = {a.id: a.restriction for a in sb.state.accounts.values() if a.restriction}
        if breaches:
            out(f"sandbox: breached: {breaches}")
            return 1
        out("sandbox: no account breached its firm's rules")
        return 0
    finally:
        if engine is not None:
            await engine.stop()
        await sb.stop()
