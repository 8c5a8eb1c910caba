"""A fan-out group on the realistic sandbox: one signal sized by risk per member from its own
equity, under each member's own symbol name, reported as one ``group_outcomes`` event; a partial
fan-out under ``guards.partial_fanout = "close"`` closes the leg that went through."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.app.config import parse_config
from engine.app.daemon import Engine, build_engine
from engine.model.delivery import Delivery
from engine.model.errors import ConfigError
from engine.model.events import Event, GroupOutcome, OutcomeEvent
from sandbox import Sandbox
from sandbox.seed import AccountSpec, config_from_dict
from tests.fixtures.engine import demo_secrets, engine_config_data
from tests.fixtures.waiting import eventually

EURUSD, EURUSD_PRO = 278, 501


def sandbox() -> Sandbox:
    """Accounts of 100,000 (a1) and 50,000 (a2) USD; a second EURUSD named the way another
    firm's server names it (EURUSD.pro)."""
    config = config_from_dict({}, "realistic")
    user = config.users[0]
    user.accounts = [
        AccountSpec("700001", "Sandbox Demo 1", "USD", 100_000.0),
        AccountSpec("700002", "Sandbox Demo 2", "USD", 50_000.0),
    ]
    eurusd = next(i for i in config.instruments if i.tradable_instrument_id == EURUSD)
    config.instruments.append(
        dataclasses.replace(eurusd, tradable_instrument_id=EURUSD_PRO, symbol_id=EURUSD_PRO,
                            name="EURUSD.pro")
    )  # fmt: skip
    return Sandbox(config, price_interval_ms=0)


def config_data(sb: Sandbox, tmp_path: Path, **rules: Any) -> dict[str, Any]:
    data = engine_config_data(sb.base_url, tmp_path)
    data["timeouts"] = {"order_s": 5.0, "reconcile_settle_s": 6.0}
    data["rules"] = {"default": {}, "a2": {"symbol_suffix": ".pro"}, **rules}
    data["guards"] = {"partial_fanout": "close"}
    return data


class Run:
    def __init__(self, sb: Sandbox, engine: Engine) -> None:
        self.sb, self.engine = sb, engine
        self.events: list[Event] = []
        engine.bus.subscribe(lambda topic, ev: self.events.append(ev))

    async def signal(self, sid: str, **fields: Any) -> GroupOutcome:
        body = {"id": sid, "account": "both", "action": "place", "symbol": "EURUSD"}
        body |= {"side": "buy", "type": "market", **fields}
        self.engine.pipeline.submit(Delivery(orjson.dumps(body), 0))
        await self.engine.pipeline.drain()

        await eventually(lambda: self.groups(sid), f"the group outcome of {sid}")
        return self.groups(sid)[0]

    def groups(self, sid: str) -> list[GroupOutcome]:
        return [e for e in self.events if isinstance(e, GroupOutcome) and e.id == sid]

    def positions(self, account_id: str) -> list[tuple[int, float]]:
        account = self.sb.state.accounts[account_id]
        return sorted((p.tid, p.qty) for p in account.positions.values())


@pytest.fixture
async def run(tmp_path: Path) -> AsyncIterator[Run]:
    sb = sandbox()
    await sb.start("127.0.0.1", 0)
    for tid in (EURUSD, EURUSD_PRO):
        sb.state.set_price(tid, bid=1.10000, ask=1.10010)
    data = config_data(sb, tmp_path, a1={"max_lots_order": 1.0})
    engine = await build_engine(
        parse_config(data), secrets=await demo_secrets(), with_control=False, sources=[]
    )
    try:
        yield Run(sb, engine)
    finally:
        await engine.stop()
        await sb.stop()


async def test_one_signal_sized_per_member_from_its_own_equity_and_symbol(run: Run) -> None:
    # 0.5 % of 100,000 = 500 USD over 1.10010 - 1.09510 = 50 pips at 100,000 USD per point per
    # lot: 1.00 lot on a1; 0.5 % of 50,000 = 250 USD: 0.50 lot on a2, as EURUSD.pro.
    out = await run.signal("g1", risk_pct=0.5, stop_loss=1.09510, sl_type="absolute")
    assert out.status == "accepted", out.reason
    assert sorted((leg.account, leg.status) for leg in out.legs) == [
        ("a1", "accepted"),
        ("a2", "accepted"),
    ]
    assert out.reason.startswith("2 of 2 legs went through")
    assert run.positions("700001") == [(EURUSD, 1.0)]
    assert run.positions("700002") == [(EURUSD_PRO, 0.5)]
    # The same signal delivered again: answered from the journal, nothing executed.
    run.engine.pipeline.submit(Delivery(orjson.dumps({"id": "g1", "account": "both",
        "action": "place", "symbol": "EURUSD", "side": "buy", "type": "market",
        "risk_pct": 0.5, "stop_loss": 1.09510, "sl_type": "absolute"}), 0))  # fmt: skip
    await run.engine.pipeline.drain()
    await eventually(lambda: len(run.groups("g1")) == 2, "the replay's group outcome")
    again = run.groups("g1")[1]
    assert again.status == "accepted" and all(leg.replayed for leg in again.legs)
    assert run.positions("700001") == [(EURUSD, 1.0)]
    assert run.positions("700002") == [(EURUSD_PRO, 0.5)]


async def test_a_partial_fan_out_closes_the_leg_that_went_through(run: Run) -> None:
    # 1.5 lots: over a1's max_lots_order (refused by its guard), within a2's rules.
    out = await run.signal("g2", qty=1.5)
    assert out.status == "partial" and out.policy == "close"
    legs = {leg.account: leg for leg in out.legs}
    assert legs["a1"].status == "rejected"
    assert legs["a1"].reason == "lots guard: 1.5 lots is over max_lots_order 1 on a1"
    assert legs["a2"].status == "accepted"
    assert out.closed == ("a2",) and out.close_failed == ()
    assert "closed by guards.partial_fanout = close: a2" in out.reason
    await eventually(lambda: run.positions("700002") == [], "a2's leg closed at the sandbox")
    assert run.positions("700001") == []
    leg_events = [e for e in run.events if isinstance(e, OutcomeEvent) and e.id == "g2"]
    assert sorted(e.leg or "" for e in leg_events) == ["g2@a1", "g2@a2"]


async def test_below_the_minimum_lot_a_member_is_refused_with_the_numbers(run: Run) -> None:
    # 0.004 % of 50,000 = 2 USD over 50 pips: 0.004 lots on a2, below 0.01; a1 gets 0.008:
    # both refused, nothing placed.
    out = await run.signal("g3", risk_pct=0.004, stop_loss=1.09510, sl_type="absolute")
    assert out.status == "rejected"
    reasons = {leg.account: leg.reason for leg in out.legs}
    assert reasons["a2"] == (
        "risk_pct 0.004 % of equity 50000.00 = 2.00 USD over a stop 0.005 away at 100000 USD "
        "per point per lot is 0.0040 lots on a2, below EURUSD.pro's minimum of 0.01 lots: "
        "not traded"
    )
    assert run.positions("700001") == [] and run.positions("700002") == []


async def test_a_mapping_to_an_instrument_the_account_lacks_stops_the_start(
    tmp_path: Path,
) -> None:
    sb = sandbox()
    await sb.start("127.0.0.1", 0)
    try:
        data = config_data(sb, tmp_path, a1={"symbols": {"US30": "DJ30.cash"}})
        with pytest.raises(ConfigError) as err:
            await build_engine(
                parse_config(data), secrets=await demo_secrets(), with_control=False, sources=[]
            )
        assert str(err.value).startswith(
            "rules for a1: US30 maps to 'DJ30.cash', which account a1 does not have"
        )
    finally:
        await sb.stop()
