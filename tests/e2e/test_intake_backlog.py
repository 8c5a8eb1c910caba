"""What an earlier run accepted over HTTP and never finished, at the next start: the in-process
engine (build_engine, the daemon's wiring) on the in-process sandbox, over a journal whose intake
was filled beforehand (the state a SIGKILL after 202 leaves; the subprocess version is in
test_intake_and_drain.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson

from engine.app.config import parse_config
from engine.app.daemon import build_engine
from engine.model.clock import ManualClock
from engine.model.domain import Action, Outcome, OutcomeStatus
from engine.model.events import Event, OutcomeEvent, Topic
from engine.state.journal import Journal
from sandbox import Sandbox
from tests.fixtures.engine import demo_secrets, engine_config_data, start_engine


def _place(signal_id: str, **more: object) -> bytes:
    return orjson.dumps(
        {
            "id": signal_id,
            "account": "a1",
            "action": "place",
            "symbol": "EURUSD",
            "type": "market",
            "side": "buy",
            "qty": 0.01,
            **more,
        }
    )


async def _accept(path: Path, payloads: list[tuple[str, bytes]], clock: ManualClock) -> None:
    """What POST /signals leaves in the journal before its 202, accepted at ``clock``'s time."""
    journal = Journal(path, clock=clock)
    try:
        _, durable = journal.intake.receive([i for i, _ in payloads], [p for _, p in payloads])
        await durable
    finally:
        await journal.close()


async def test_an_old_row_without_ts_expires_at_start_with_its_age_and_one_with_ts_waits(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    two_minutes_ago = ManualClock(wall_offset_s=time.time() - 120)
    fresh_ts = time.time_ns() // 1_000_000
    await _accept(
        tmp_path / "journal.sqlite",
        [("old1", _place("old1")), ("ts1", _place("ts1", ts=fresh_ts))],
        two_minutes_ago,
    )
    live = await start_engine(sandbox, tmp_path, max_signal_age_ms=5000)
    try:
        rec = live.engine.journal.decided("old1")
        assert rec is not None and rec.status is OutcomeStatus.EXPIRED
        assert rec.reason is not None and "ms old" in rec.reason
        assert "max_signal_age_ms" in rec.reason
        age_ms = int(rec.reason.split("signal is ", 1)[1].split(" ms", 1)[0])
        assert age_ms >= 120_000
        # The one with its own ts is aged from that ts, by the pipeline, when it runs.
        assert [row.signal_id for row in live.engine.journal.intake.backlog] == ["ts1"]
        assert live.sim_orders() == []
    finally:
        await live.engine.stop()


async def test_the_backlog_is_executed_once_and_an_id_already_decided_is_answered_not_resent(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    path = tmp_path / "journal.sqlite"
    now = ManualClock()
    await _accept(path, [("r1", _place("r1")), ("r2", _place("r2"))], now)
    journal = Journal(path)  # r2 was decided before the crash, its intake row not yet deleted
    await journal.record(Outcome("r2", "a1", OutcomeStatus.ACCEPTED, Action.PLACE, order_id="9"))
    await journal.close()

    data = engine_config_data(sandbox.base_url, tmp_path, control_port=0)
    cfg = parse_config({**data, "sources": [{"kind": "http"}]})
    engine = await build_engine(cfg, secrets=await demo_secrets())
    outcomes: list[OutcomeEvent] = []
    both = asyncio.Event()

    def keep(topic: Topic, event: Event) -> None:
        if isinstance(event, OutcomeEvent):
            outcomes.append(event)
            if {"r1", "r2"} <= {o.id for o in outcomes}:
                both.set()

    engine.bus.subscribe(keep)
    feeding = asyncio.ensure_future(engine.run_sources())
    try:
        await asyncio.wait_for(both.wait(), 30)
        await engine.drain(feeding)
    finally:
        await engine.stop()
    by_id = {o.id: o for o in outcomes}
    assert [o.id for o in outcomes].count("r1") == 1 and by_id["r1"].status == "accepted"
    assert by_id["r2"].replayed and by_id["r2"].order_id == "9"
    assert engine.http_intake.finished == 2 and engine.http_intake.outstanding == set()
    account = next(a for a in sandbox.state.accounts.values() if a.acc_num == 1)
    assert len([*account.orders.values(), *account.history]) == 1  # r1's only
    reopened = Journal(path)
    try:
        assert reopened.intake.backlog == []
    finally:
        await reopened.close()
