"""Outcomes that are true on a slow venue: never "not placed" while the order may exist.

The sandbox's latency fault (``POST /sandbox/faults``, on PLACE_ORDER only) makes replies slower
than the engine's order timeout, and the sandbox carries an order out even after its client gave
up waiting (tests/sim/test_hang_up.py).

* With the default settle time (at least the order timeout), every signal ends ``accepted`` (the
  slow ones resolved from unknown) and the sandbox holds exactly one order per tag, on the
  ``realistic`` profile (its latency, tight rate limits, partial fills and short tokens too; its
  1 % rejections after acceptance are switched off, being true rejections that "none rejected"
  would miscount).
* With the settle time forced below the order timeout (the config refuses that, so the test
  replaces it after loading), an order is called absent while the venue is still working on it:
  the late order is then recognised by its tag and reported once as a correction, and under
  ``late_order = "cancel_or_close"`` cancelled (working) or closed (filled).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp

from engine.app.config import parse_config
from engine.app.daemon import build_engine
from engine.model.domain import OutcomeStatus
from engine.model.events import Event, OutcomeCorrection, OutcomeEvent, Topic
from sandbox import Sandbox
from tests.fixtures.engine import Live, demo_secrets, engine_config_data
from tests.fixtures.waiting import eventually


async def slow_placements(sandbox: Sandbox, latency: Any, **more: Any) -> None:
    async with aiohttp.ClientSession() as http:
        faults = {"latency": {"PLACE_ORDER": latency}, **more}
        async with http.post(sandbox.base_url + "/sandbox/faults", json=faults) as reply:
            assert reply.status == 200, await reply.text()


async def engine_on(
    sandbox: Sandbox,
    tmp_path: Path,
    timeouts: dict[str, float],
    forced_settle_s: float | None = None,
    **engine: Any,
) -> Live:
    data = engine_config_data(sandbox.base_url, tmp_path, **engine)
    data["timeouts"] = timeouts
    cfg = parse_config(data)
    if forced_settle_s is not None:
        # Shorter than the order timeout: what the config load refuses, to force "absent".
        cfg = replace(cfg, reconcile=replace(cfg.reconcile, settle_s=forced_settle_s))
    eng = await build_engine(cfg, secrets=await demo_secrets(), with_control=False, sources=[])
    live = Live(sandbox, eng)

    def keep(topic: Topic, ev: Event) -> None:
        live.events.append(ev)
        if isinstance(ev, OutcomeEvent):
            live.outcomes.append(ev)

    eng.bus.subscribe(keep)
    return live


def corrections(live: Live, signal_id: str | None = None) -> list[OutcomeCorrection]:
    return [
        e
        for e in live.events
        if isinstance(e, OutcomeCorrection) and (signal_id is None or e.id == signal_id)
    ]


def entry_orders(live: Live, tag: str) -> list[Any]:
    return [o for o in live.sim_orders(1) if o.strategy_id == tag and o.role == "entry"]


async def test_replies_slower_than_the_order_timeout_end_accepted_with_one_order_per_tag(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    # The realistic profile (its latency, tight limits, partial fills, short tokens) with its 1 %
    # rejections after acceptance off: those are true rejections, not what this test counts.
    await slow_replies_end_accepted(sandbox, tmp_path, 24, rejectAfterAccept={"PLACE_ORDER": 0})


async def slow_replies_end_accepted(
    sandbox: Sandbox, tmp_path: Path, n: int, **faults: Any
) -> None:
    # The measured case: replies 1.5-3 s against a 2 s order timeout; the settle time is the
    # default (order timeout + margin).
    live = await engine_on(sandbox, tmp_path, {"order_s": 2.0, "reconcile_max_s": 30.0})
    try:
        await slow_placements(sandbox, "1500-3000", **faults)
        for i in range(n):
            live.send(
                id=f"s{i}",
                account="a1" if i % 2 else "a2",
                action="place",
                symbol="EURUSD",
                type="market" if i % 3 else "limit",
                side="buy",
                qty=0.01,
                **({} if i % 3 else {"price": 0.9}),
            )
        await live.engine.pipeline.drain()
    finally:
        await live.engine.stop()

    per_signal = Counter(o.id for o in live.outcomes)
    assert set(per_signal) == {f"s{i}" for i in range(n)}
    assert set(per_signal.values()) == {1}, "exactly one outcome per signal"
    statuses = Counter(o.status for o in live.outcomes)
    assert statuses == {"accepted": n}, [o.reason for o in live.outcomes if o.status != "accepted"]
    assert any(o.resolved_from_unknown for o in live.outcomes), "some replies outlasted 2 s"
    every = live.sim_orders(1) + live.sim_orders(2)
    tags = Counter(o.strategy_id for o in every if o.role == "entry")
    for o in live.outcomes:
        assert tags[o.tag] == 1, o
    assert corrections(live) == []


async def test_a_late_order_is_corrected_once_and_left_under_report(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    live = await engine_on(
        sandbox,
        tmp_path,
        {"order_s": 1.0, "reconcile_settle_s": 1.0, "late_order_watch_s": 15.0},
        forced_settle_s=0.2,
    )
    try:
        # The order times out at 1 s, is called absent at ~1.1 s, and exists from 2.5 s.
        await slow_placements(sandbox, 2500)
        first = await live.run(
            id="late", account="a1", action="place", symbol="EURUSD", type="limit", side="buy",
            qty=0.01, price=0.9,
        )  # fmt: skip
        assert first.status == "rejected" and "not placed" in (first.reason or "")
        assert "again under a new id" not in (first.reason or "")
        assert "check the account for that tag" in (first.reason or "")
        await eventually(lambda: corrections(live, "late"), "a correction of the late order", 15)
        await eventually(lambda: not live.engine.pipeline.late_watches, "the watch ended", 20)
        record = live.engine.journal.decided("late")
    finally:
        await live.engine.stop()

    (fix,) = corrections(live, "late")
    assert fix.status == "accepted" and fix.corrects == "rejected"
    assert fix.late_order == "reported" and fix.tag == first.tag
    (order,) = entry_orders(live, first.tag or "")
    assert fix.order_id == order.id and order.status == "New", "report leaves the order working"
    assert record is not None and record.status is OutcomeStatus.ACCEPTED
    assert record.order_id == order.id


async def test_cancel_or_close_cancels_a_late_working_order_and_closes_a_late_fill(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    live = await engine_on(
        sandbox,
        tmp_path,
        {"order_s": 1.0, "reconcile_settle_s": 1.0, "late_order_watch_s": 15.0},
        forced_settle_s=0.2,
        late_order="cancel_or_close",
    )
    try:
        await slow_placements(sandbox, 2500)
        live.send(
            id="resting", account="a1", action="place", symbol="EURUSD", type="limit", side="buy",
            qty=0.01, price=0.9,
        )  # fmt: skip
        live.send(
            id="filled", account="a1", action="place", symbol="EURUSD", type="market",
            side="buy", qty=0.01,
        )  # fmt: skip
        await live.engine.pipeline.drain()
        decided = [o for o in live.outcomes if not isinstance(o, OutcomeCorrection)]
        assert {o.id: o.status for o in decided} == {
            "resting": "rejected",
            "filled": "rejected",
        }
        await eventually(
            lambda: corrections(live, "resting") and corrections(live, "filled"),
            "a correction of each late order",
            15,
        )
        await eventually(lambda: not live.engine.pipeline.late_watches, "the watches ended", 20)
    finally:
        await live.engine.stop()

    tag = {o.id: o.tag or "" for o in live.outcomes if not isinstance(o, OutcomeCorrection)}
    (resting,) = corrections(live, "resting")
    assert resting.corrects == "rejected" and resting.late_order == "cancelled", resting.reason
    (order,) = entry_orders(live, tag["resting"])
    assert order.status == "Cancelled"
    (filled,) = corrections(live, "filled")
    assert filled.corrects == "rejected" and filled.late_order == "closed", filled.reason
    assert len(entry_orders(live, tag["filled"])) == 1
    assert filled.position_id is not None
    assert all(p.id != filled.position_id for p in live.sim_positions(1)), "its position is closed"
