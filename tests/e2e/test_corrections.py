"""Outcomes corrected after they were reported (engine.execution.pending), end to end: the engine
(build_engine, the real TradeLocker adapter) against the sandbox's ``realistic`` profile, faults
set through ``/sandbox/faults``.

* Accepted, then rejected: the venue accepts an order (its reply carries the order id) and then
  ends it Rejected; the stream shows it, and the engine publishes exactly one correction
  (accepted -> rejected), journals it and counts it.
* Unknown left unknown after an outage: an order call whose reply was dropped while every read of
  the venue fails is reported ``unknown`` after ``reconcile_max_s``; once the venue answers again
  the pending set resolves it (found -> accepted with the order id; a call the venue answered 503
  before touching anything -> rejected, absent after the settle time), one correction each.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from engine.app.config import parse_config
from engine.app.daemon import build_engine
from engine.model.domain import OutcomeStatus
from engine.model.events import Event, OutcomeCorrection, OutcomeEvent
from sandbox import Sandbox
from tests.fixtures.engine import Live, demo_secrets, engine_config_data
from tests.fixtures.waiting import eventually

MARKET = {"action": "place", "symbol": "EURUSD", "type": "market", "side": "buy", "qty": 0.01}


async def faults(sandbox: Sandbox, spec: dict[str, Any] | None) -> None:
    """Set faults (None: back to the profile's own)."""
    async with aiohttp.ClientSession() as http:
        url = sandbox.base_url + "/sandbox/faults"
        method = http.post(url, json=spec) if spec is not None else http.delete(url)
        async with method as reply:
            assert reply.status == 200, await reply.text()


async def start(sb: Sandbox, tmp_path: Path, *, stream: bool, **timeouts: float) -> Live:
    login = {"email": "env:SB_EMAIL", "password": "env:SB_PASSWORD"}
    if stream:
        login |= {
            "stream_url": sb.base_url.replace("http://", "ws://"),
            "developer_api_key": "env:DEV_KEY",
        }
    data = engine_config_data(sb.base_url, tmp_path, login=login)
    data["timeouts"] |= timeouts
    secrets = await demo_secrets(DEV_KEY=sb.state.config.developer_api_key)
    eng = await build_engine(parse_config(data), secrets=secrets, with_control=False, sources=[])
    lv = Live(sb, eng)

    def keep(topic: Any, ev: Event) -> None:
        lv.events.append(ev)
        if isinstance(ev, OutcomeEvent):
            lv.outcomes.append(ev)

    eng.bus.subscribe(keep)
    return lv


@pytest.fixture
async def stopping() -> AsyncIterator[list[Live]]:
    engines: list[Live] = []
    yield engines
    for lv in engines:
        await lv.engine.stop()


async def run(live: Live, **fields: Any) -> OutcomeEvent:
    """The signal's outcome as first reported (corrections may follow it)."""
    live.send(**fields)
    await live.engine.pipeline.drain()
    return next(o for o in live.outcomes if o.id == fields["id"])


def corrections(live: Live, signal_id: str) -> list[OutcomeCorrection]:
    return [o for o in live.outcomes if isinstance(o, OutcomeCorrection) and o.id == signal_id]


def counted(live: Live, corrects: str, status: str) -> float:
    """``tl_outcome_corrections_total{account="a1",corrects,status}``."""
    return live.engine.metrics.corrections.values.get(("a1", corrects, status), 0.0)


async def test_an_order_accepted_then_rejected_by_the_venue_is_corrected_once(
    sandbox: Sandbox, tmp_path: Path, stopping: list[Live]
) -> None:
    live = await start(sandbox, tmp_path, stream=True)
    stopping.append(live)
    [stream] = live.engine.streams
    await asyncio.wait_for(stream.wait_live(), 30)
    await faults(sandbox, {"rejectAfterAccept": {"PLACE_ORDER": 1}})
    first = await run(live, id="r1", account="a1", **MARKET)
    assert first.status == "accepted" and first.order_id, first.reason

    await eventually(lambda: corrections(live, "r1"), "a correction from the stream", 15)
    (fix,) = corrections(live, "r1")
    assert fix.corrects == "accepted" and fix.status == "rejected"
    assert fix.order_id == first.order_id and fix.tag == first.tag
    assert fix.venue_status == "REJECTED"
    (order,) = [o for o in live.sim_orders(1) if o.strategy_id == first.tag]
    assert order.status == "Rejected", "the venue did reject it"
    journalled = live.engine.journal.decided("r1")
    assert journalled is not None and journalled.status is OutcomeStatus.REJECTED
    assert counted(live, "accepted", "rejected") == 1

    # The next order on the same account (its stream events, fills) corrects nothing again.
    second = await run(live, id="r2", account="a1", **MARKET)
    assert second.status == "accepted"
    second_rec = live.engine.pipeline.tracker.by_signal("r2")
    assert second_rec is not None
    await eventually(lambda: second_rec.venue_final, "the second order's end on the stream", 15)
    assert len(corrections(live, "r1")) == 1 and not corrections(live, "r2")


async def test_unknown_outcomes_of_an_outage_are_resolved_once_the_venue_answers(
    sandbox: Sandbox, tmp_path: Path, stopping: list[Live]
) -> None:
    live = await start(
        sandbox, tmp_path, stream=False, order_s=1.0, reconcile_settle_s=1.0, reconcile_max_s=2.0
    )
    stopping.append(live)
    reads_down = {"ORDERS": 1.0, "ORDERS_HISTORY": 1.0, "POSITIONS": 1.0}
    # The order is made and its reply dropped; no read answers: unknown after reconcile_max_s.
    await faults(sandbox, {"dropAfterAccept": {"PLACE_ORDER": 1}, "error5xx": reads_down})
    made = await run(live, id="made", account="a1", **MARKET)
    # The venue answers 503 before touching anything: no order, but the engine cannot know.
    await faults(sandbox, {"error5xx": {"PLACE_ORDER": 1, **reads_down}})
    never = await run(live, id="never", account="a1", **MARKET)
    assert made.status == "unknown" and never.status == "unknown", (made.reason, never.reason)
    assert "keeps looking" in (made.reason or "")
    assert len(live.engine.pipeline.pending) == 2
    assert live.engine.journal.decided("made").pending  # type: ignore[union-attr]

    await faults(sandbox, None)  # the venue is back
    await eventually(
        lambda: corrections(live, "made") and corrections(live, "never"), "both resolved", 60
    )
    (found,) = corrections(live, "made")
    (order,) = [o for o in live.sim_orders(1) if o.strategy_id == made.tag]
    assert found.corrects == "unknown" and found.status == "accepted"
    assert found.order_id == order.id and found.resolved_from_unknown
    (absent,) = corrections(live, "never")
    assert absent.corrects == "unknown" and absent.status == "rejected"
    assert "not placed" in (absent.reason or "") and absent.order_id is None
    assert not [o for o in live.sim_orders(1) if o.strategy_id == never.tag]
    assert len(live.engine.pipeline.pending) == 0
    for sid, status in (("made", OutcomeStatus.ACCEPTED), ("never", OutcomeStatus.REJECTED)):
        row = live.engine.journal.decided(sid)
        assert row is not None and not row.pending and row.status is status
    assert counted(live, "unknown", "accepted") == 1
    assert counted(live, "unknown", "rejected") == 1
