"""The guards against the sandbox's own prop-firm rules, on the ``realistic`` profile (50-100 ms
replies, 2 reads per second per route, realistic execution and market hours).

The sandbox enforces a daily loss limit on 700001 (a1) and a trailing maximum drawdown on 700002
(a2): a breach closes everything and restricts the account. A scripted strategy that would breach
both unguarded (orders whose stop losses add up past the limit, a position without a stop loss
left to run into the limit) runs through the whole engine with the same rules in its config: the
sandbox records no breach, and the engine's ``guards`` events show each guard acting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.app.config import parse_config
from engine.app.daemon import Engine, build_engine
from engine.app.guards_scene import run_guards_scene
from engine.model.delivery import Delivery
from engine.model.events import Event, GuardEvent, OutcomeEvent, Topic
from sandbox import Sandbox
from sandbox.seed import config_from_dict
from tests.fixtures.engine import demo_secrets, engine_config_data
from tests.fixtures.waiting import eventually

EURUSD = 278
LIMITS = {
    "accountRules": {
        "accounts": {
            "700001": {"dailyLossLimit": 1000},
            "700002": {"maxDrawdown": 1000, "drawdownMode": "trailing"},
        }
    }
}
RULES = {
    "a1": {"daily_loss": 1000.0, "no_sl_move_pct": 0.5, "instruments": ["EURUSD"]},
    "a2": {
        "max_drawdown": 1000.0,
        "drawdown_mode": "trailing",
        "no_sl_move_pct": 0.5,
        "instruments": ["EURUSD"],
    },
}
GUARDS = {"safety_margin": 0.1, "warn_levels": [0.4], "halt_level": 0.7, "poll_ms": 600}


class Run:
    def __init__(self, sb: Sandbox, engine: Engine) -> None:
        self.sb = sb
        self.engine = engine
        self.events: list[Event] = []
        engine.bus.subscribe(lambda topic, ev: self.events.append(ev))

    def price(self, bid: float) -> None:
        self.sb.state.set_price(EURUSD, bid=round(bid, 5), ask=round(bid + 0.0001, 5))

    async def order(self, sid: str, account: str, **fields: Any) -> OutcomeEvent:
        body = {"id": sid, "account": account, "action": "place", "symbol": "EURUSD"}
        body |= {"side": "buy", "type": "market", "qty": 1.0, **fields}
        self.engine.pipeline.submit(Delivery(orjson.dumps(body), 0))
        await self.engine.pipeline.drain()
        return next(e for e in self.events if isinstance(e, OutcomeEvent) and e.id == sid)

    def guard(self, account: str, kind: str, rule: str | None = None) -> list[GuardEvent]:
        return [
            e
            for e in self.events
            if isinstance(e, GuardEvent)
            and e.account == account
            and e.kind == kind
            and (rule is None or e.rule == rule)
        ]

    def positions(self, account_id: str) -> int:
        return len(self.sb.state.accounts[account_id].positions)

    def breaches(self) -> dict[str, str]:
        return {
            a.id: a.restriction
            for a in self.sb.state.accounts.values()
            if a.restriction is not None
        }


async def start(tmp_path: Path, guarded: bool) -> Run:
    sb = Sandbox(config_from_dict(LIMITS, "realistic"), price_interval_ms=0)
    await sb.start("127.0.0.1", 0)
    sb.state.set_price(EURUSD, bid=1.10000, ask=1.10010)
    data = engine_config_data(sb.base_url, tmp_path)
    data["timeouts"] = {"order_s": 5.0, "reconcile_settle_s": 6.0}
    if guarded:
        data |= {"rules": RULES, "guards": GUARDS}
    engine = await build_engine(
        parse_config(data), secrets=await demo_secrets(), with_control=False, sources=[]
    )
    return Run(sb, engine)


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[Run]:
    run = await start(tmp_path, guarded=True)
    try:
        yield run
    finally:
        await run.engine.stop()
        await run.sb.stop()


@pytest.fixture
async def unguarded(tmp_path: Path) -> AsyncIterator[Run]:
    run = await start(tmp_path, guarded=False)
    try:
        yield run
    finally:
        await run.engine.stop()
        await run.sb.stop()


async def test_unguarded_the_strategy_breaches_both_firms_limits(unguarded: Run) -> None:
    """The same script with no [rules]: every order goes out, and the sandbox closes and
    restricts both accounts (so the guarded run below proves the guards, not a tame script)."""
    run = unguarded
    assert run.engine.pipeline.guards is None
    for sid, account, sl in (("a1-1", "a1", 1.0940), ("a1-2", "a1", 1.0940), ("a2-1", "a2", None)):
        fields = {"stop_loss": sl, "sl_type": "absolute"} if sl is not None else {}
        assert (await run.order(sid, account, **fields)).status == "accepted"
    run.price(1.10300)
    run.price(1.09900)
    run.price(1.09600)
    run.price(1.09400)
    # (The sandbox looks at an account's limits on a quote only while it holds a position on
    # the instrument: a1's loss, realised by its stop losses, is seen at its next order.)
    third = await run.order("a1-3", "a1", stop_loss=1.0900, sl_type="absolute")
    assert third.status == "accepted"
    run.price(1.08500)
    breaches = run.breaches()
    assert set(breaches) == {"700001", "700002"}, breaches
    assert breaches["700001"].startswith("daily loss limit 1000.00 breached")
    assert breaches["700002"].startswith("maximum drawdown 1000.00 breached")


async def test_a_strategy_that_would_breach_both_limits_unguarded_breaches_neither(
    guarded: Run,
) -> None:
    run = guarded
    book = run.engine.pipeline.guards
    assert book is not None and set(book.accounts) == {"a1", "a2"}

    # -- a1, daily loss 1,000 (900 with the 10 % margin) ---------------------------------------
    # Two buys with a stop 60 pips away: 600 each. Unguarded both go out, and a fall to the stop
    # loses 1,200: a breach. Guarded, the second is refused with the numbers.
    first = await run.order("a1-1", "a1", stop_loss=1.0940, sl_type="absolute")
    assert first.status == "accepted", first.reason
    second = await run.order("a1-2", "a1", stop_loss=1.0940, sl_type="absolute")
    assert second.status == "rejected"
    assert second.reason is not None and second.reason.startswith("daily loss guard:")
    assert "over 900.00 (1000.00 limit less the 10 % safety margin) on a1" in second.reason
    assert run.positions("700001") == 1
    assert run.guard("a1", "refused", "daily_loss")

    # -- a2, trailing drawdown 1,000 ------------------------------------------------------------
    # A buy without a stop loss (worst case taken as a 0.5 % move: 550). Up 300, then down: the
    # drawdown from the high is 1,000 at 1.09710, a breach if nothing acts.
    naked = await run.order("a2-1", "a2")
    assert naked.status == "accepted", naked.reason
    run.price(1.10300)  # equity ~100,290: the new high
    for _ in range(2):  # a read that began after the move: the guard has seen the new high
        await asyncio.wait_for(book.next_read("a2"), 20.0)
    assert book.accounts["a2"].peak > 100_250
    run.price(1.09900)  # ~400 below the high: 40 %, the warning level
    await eventually(lambda: run.guard("a2", "warning", "drawdown"), "a drawdown warning")
    run.price(1.09600)  # ~700 below the high: 70 %, the halt level
    await eventually(lambda: run.guard("a2", "halted", "drawdown"), "a2 halted")
    await eventually(lambda: run.positions("700002") == 0, "a2 flattened")
    run.price(1.09400)  # unguarded, the position would now be 900 + below the high: breached

    # -- a1 again: the fall the stop loss does not cover fast enough ---------------------------
    # 1.09400 is a fall of ~610 on a1's open buy (its stop at 1.0940 may fill): halt at 70 %.
    await eventually(
        lambda: run.guard("a1", "halted", "daily_loss") or run.positions("700001") == 0,
        "a1 halted or stopped out at its stop loss",
    )
    refused = await run.order("a1-3", "a1", stop_loss=1.0900, sl_type="absolute")
    assert refused.status == "rejected"
    assert refused.reason is not None and "guard:" in refused.reason
    run.price(1.08500)  # far past both firms' limits for anything still open

    assert run.breaches() == {}
    assert len(run.guard("a1", "refused")) == 2
    halted = run.guard("a2", "halted")[0]
    assert "drawdown at" in halted.reason and "positions closed" in halted.reason
    warned = run.guard("a2", "warning")[0]
    assert warned.level == 0.4 and warned.used is not None and warned.used >= 0.4
    assert [t for t in Topic if t == "guards"] == [Topic.GUARDS]


async def test_the_demo_scene_ends_without_a_breach() -> None:
    """engine.app.guards_scene, the scene the lead's demo may call, on its own sandbox."""
    lines: list[str] = []
    assert await run_guards_scene(lines.append) == 0, "\n".join(lines)
    text = "\n".join(lines)
    assert "g-2 on funded1: rejected: daily loss guard:" in text
    assert "guard halted: funded2 halted: drawdown at" in text
    # With the Streams API live the guards spend none of the accounts' read budget.
    for alias in ("funded1", "funded2"):
        assert f"guards: {alias}'s figures from the Streams API; 0 reads" in text, text
    assert lines[-1] == "sandbox: no account breached its firm's rules"


async def test_with_the_streams_api_a_fall_is_acted_on_without_waiting_for_a_read(
    tmp_path: Path,
) -> None:
    """guards.poll_ms a minute: only the stream's account status can tell the guard in time."""
    sb = Sandbox(config_from_dict(LIMITS, "realistic"), price_interval_ms=0)
    await sb.start("127.0.0.1", 0)
    sb.state.set_price(EURUSD, bid=1.10000, ask=1.10010)
    data = engine_config_data(
        sb.base_url,
        tmp_path,
        login={
            "email": "env:SB_EMAIL",
            "password": "env:SB_PASSWORD",
            "stream_url": sb.base_url.replace("http://", "ws://"),
            "developer_api_key": "env:DEV_KEY",
        },
    )
    data["timeouts"] = {"order_s": 5.0, "reconcile_settle_s": 6.0}
    data |= {"rules": RULES, "guards": {**GUARDS, "poll_ms": 60_000}}
    secrets = await demo_secrets(DEV_KEY=sb.state.config.developer_api_key)
    engine = await build_engine(parse_config(data), secrets=secrets, with_control=False, sources=[])
    run = Run(sb, engine)
    try:
        [live] = engine.streams
        await asyncio.wait_for(live.wait_live(), 30)
        assert (await run.order("s-1", "a2")).status == "accepted"
        await eventually(lambda: run.positions("700002") == 1, "a2's position open")
        run.price(1.09300)  # ~710 below the start: 71 %, over the 70 % halt level
        await eventually(lambda: run.guard("a2", "halted", "drawdown"), "a2 halted by the stream")
        await eventually(lambda: run.positions("700002") == 0, "a2 flattened")
        run.price(1.08500)
        assert run.breaches() == {}
    finally:
        await engine.stop()
        await sb.stop()
