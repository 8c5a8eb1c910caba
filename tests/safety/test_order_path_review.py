"""Adversarial review of the order path: each test is a scenario that once doubled an order or
lost a signal's outcome, run against the in-process sandbox and the daemon's own wiring."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from engine.app.daemon import build_engine
from engine.execution.reconcile import Reconciler
from engine.execution.stoplimit import StopLimitBook
from engine.execution.tags import strategy_tag
from engine.model.delivery import Delivery
from engine.model.domain import OrderRequest, OrderType, OutcomeStatus, Side, Validity
from engine.model.events import OutcomeEvent
from engine.state.journal import Journal
from sandbox import Sandbox
from tests.fixtures.engine import Live, demo_secrets, engine_config

READS = ("ORDERS", "ORDERS_HISTORY", "POSITIONS")


async def _engine(
    sandbox: Sandbox, journal_dir: Path, *, settle_s: float, max_s: float, **engine: Any
) -> Live:
    cfg = engine_config(sandbox.base_url, journal_dir, None, **engine)
    cfg = replace(cfg, reconcile=replace(cfg.reconcile, settle_s=settle_s, max_s=max_s))
    eng = await build_engine(cfg, secrets=await demo_secrets(), with_control=False, sources=[])
    live = Live(sandbox, eng)
    eng.bus.subscribe(
        lambda topic, ev: live.outcomes.append(ev) if isinstance(ev, OutcomeEvent) else None
    )
    return live


def _tagged(live: Live, tag: str) -> int:
    return sum(1 for o in live.sim_orders(1) if o.strategy_id == tag)


@contextlib.contextmanager
def place_arrivals(sandbox: Sandbox) -> Iterator[asyncio.Event]:
    """An event set when an order POST reaches the sandbox (before its injected latency): the
    marker that an order is in the venue's hands. The sandbox's fault injector is scripted for
    it, as ``fires`` is below; restored on exit."""
    faults = sandbox.faults
    latency_for = faults.latency_for
    arrived = asyncio.Event()

    def noting(op: str) -> float:
        if op == "PLACE_ORDER":
            arrived.set()
        return latency_for(op)

    faults.latency_for = noting  # type: ignore[method-assign]
    try:
        yield arrived
    finally:
        faults.latency_for = latency_for  # type: ignore[method-assign]


async def poll_rounds(book: StopLimitBook, rounds: int) -> None:
    """Wait until the book's quote watch has completed ``rounds`` more rounds."""
    for _ in range(rounds):
        book.polled.clear()
        await asyncio.wait_for(book.polled.wait(), 30)  # a hang guard, not a speed assertion


async def test_a_restart_right_after_a_crash_waits_the_settle_time_before_calling_an_order_absent(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    # The last run began an order and died while the venue was still processing its POST (3 s
    # of venue latency). The new run starts at once: reading "absent" before the venue had its
    # settle time would record the signal rejected while its order is about to exist.
    ts_ms = int(time.time() * 1000)
    tag = strategy_tag("slow", ts_ms * 1_000_000)
    journal = Journal(tmp_path / "journal.sqlite")
    await journal.begin("slow", "a1", tag)
    await journal.close()

    # The crashed run's POST, still on its way: another engine (own journal) sends the same
    # signal, so the venue receives an order under the same derived tag.
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    crashed = await _engine(sandbox, other_dir, settle_s=0.3, max_s=15.0)
    sandbox.faults.update({"latency": {"PLACE_ORDER": 3000}})
    with place_arrivals(sandbox) as arrived:
        crashed.send(
            id="slow", ts=ts_ms, account="a1", action="place", symbol="EURUSD", type="market",
            side="buy", qty=0.01,
        )  # fmt: skip
        await asyncio.wait_for(arrived.wait(), 30)
    assert _tagged(crashed, tag) == 0  # still in the venue's hands

    restarted = await _engine(sandbox, tmp_path, settle_s=4.0, max_s=15.0)
    row = restarted.engine.journal.decided("slow")
    await crashed.engine.pipeline.drain()
    sandbox.faults.clear()
    await crashed.engine.stop()
    await restarted.engine.stop()

    assert _tagged(restarted, tag) == 1
    assert row is not None and not row.pending
    assert row.status is OutcomeStatus.ACCEPTED, row.reason


async def test_a_resubmission_whose_outcome_stays_unknown_is_reconciled_by_its_own_tag_at_restart(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    live = await _engine(sandbox, tmp_path, settle_s=0.2, max_s=1.0, unknown_policy="resubmit_once")
    # The first POST fails before any effect (503): proven absent, so it is resubmitted once.
    # The resubmission is executed and its reply cut off; from that moment the venue cannot be
    # read, so its outcome stays unknown. The sandbox's fault injector is scripted (not mocked)
    # to break the reads exactly when it drops that reply, which no fixed count can time.
    faults = sandbox.faults
    fires = faults.fires

    def fires_then_break_reads(kind: str, op: str) -> bool:
        fired = fires(kind, op)
        if fired and kind == "dropAfterAccept":
            faults.update({"error5xx": {op_: 1.0 for op_ in READS}})
        return fired

    faults.fires = fires_then_break_reads  # type: ignore[method-assign]
    faults.update({"error5xx": {"PLACE_ORDER": 1}, "dropAfterAccept": {"PLACE_ORDER": 1}})
    out = await live.run(
        id="r", account="a1", action="place", symbol="EURUSD", type="market", side="buy", qty=0.01
    )
    faults.fires = fires  # type: ignore[method-assign]
    faults.clear()
    await live.engine.stop()
    assert out.status == "unknown", out
    resubmitted_tag = out.tag
    assert _tagged(live, resubmitted_tag) == 1  # the resubmission does exist at the venue

    again = await _engine(sandbox, tmp_path, settle_s=0.2, max_s=5.0)
    row = again.engine.journal.decided("r")
    await again.engine.stop()
    assert row is not None and not row.pending
    assert row.status is OutcomeStatus.ACCEPTED, row.reason
    assert row.strategy_tag == resubmitted_tag
    assert _tagged(again, resubmitted_tag) == 1


async def test_a_stop_limit_caught_mid_trigger_by_a_quick_restart_is_not_placed_twice(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    live = await _engine(sandbox, tmp_path, settle_s=0.3, max_s=15.0)
    venue = live.engine.venue
    inst = live.engine.accounts["a1"].instruments_by_name["EURUSD"]
    path = tmp_path / "held" / "journal.sqlite"
    journals: list[Journal] = []

    def book() -> StopLimitBook:
        # The daemon's wiring without a quote feed: the book polls venue.quote itself. Each
        # book opens the journal as a new process would (the first one is not closed first).
        reconciler = Reconciler(venue, settle_s=4.0, max_s=15.0, first_delay_s=0.05)
        journals.append(Journal(path))
        return StopLimitBook(
            venue, journals[-1].stop_limits, live.engine.bus, reconciler, poll_s=0.05,
            instrument_for=lambda alias, iid: inst if iid == inst.tradable_instrument_id else None,
        )  # fmt: skip

    tag = strategy_tag("sl", 1)
    sandbox.state.set_price("EURUSD", bid=1.0999, ask=1.1)
    first = book()
    await first.hold(
        "sl",
        OrderRequest(
            "a1",
            inst,
            Side.BUY,
            OrderType.STOP_LIMIT,
            0.01,
            Validity.GTC,
            tag,
            price=1.2005,
            stop_price=1.2,
        ),
    )
    # The trigger's limit order spends 3 s at the venue before it exists; the engine dies
    # meanwhile and the next one opens the same book at once, its row still "triggering".
    sandbox.faults.update({"latency": {"PLACE_ORDER": 3000}})
    sandbox.state.set_price("EURUSD", bid=1.2, ask=1.2001)
    with place_arrivals(sandbox) as arrived:
        triggering = asyncio.ensure_future(first.check_once())
        await asyncio.wait_for(arrived.wait(), 30)
    assert _tagged(live, tag) == 0

    second = book()
    await second.start()
    await triggering
    await poll_rounds(second, 2)  # a re-held order would trigger on the next poll
    await second.close()
    sandbox.faults.clear()
    await first.close()
    for journal in journals:
        await journal.close()
    await live.engine.stop()

    assert _tagged(live, tag) == 1, "the triggered limit order was placed twice"
    resumed = second.get("emu-" + tag)
    assert resumed is not None and resumed.state == "placed"


async def test_a_reverse_whose_close_is_cut_off_is_reported_unknown_not_rejected(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    live = await _engine(sandbox, tmp_path, settle_s=0.2, max_s=5.0)
    opened = await live.run(
        id="o", account="a1", action="place", symbol="EURUSD", type="market", side="buy", qty=0.01
    )
    assert opened.status == "accepted"
    [position] = live.sim_positions(1)
    # The close half of the reverse is executed and its reply cut off: the position is gone,
    # and the opening half was never sent.
    sandbox.faults.update({"dropAfterAccept": {"CLOSE_POSITION": 1}})
    out = await live.run(id="rv", account="a1", action="reverse", ref="o")
    sandbox.faults.clear()
    await live.engine.stop()

    assert live.sim_positions(1) == []  # closed, not reversed
    assert out.status == "unknown", out
    assert str(position.id) in out.reason
    row = live.engine.journal.decided("rv")
    assert row is not None and row.status is OutcomeStatus.UNKNOWN


async def test_a_signal_taken_over_while_the_other_process_is_still_sending_it_is_not_doubled(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    # This process has run for a while when a rebalance hands it a partition; the previous
    # owner's POST for a signal is still in the venue's hands (3 s latency) when the signal is
    # redelivered here.
    here = await _engine(sandbox, tmp_path, settle_s=4.0, max_s=15.0)
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other = await _engine(sandbox, other_dir, settle_s=0.3, max_s=15.0)
    ts_ms = int(time.time() * 1000)
    signal = {
        "id": "t", "ts": ts_ms, "account": "a1", "action": "place", "symbol": "EURUSD",
        "type": "market", "side": "buy", "qty": 0.01,
    }  # fmt: skip
    here.engine.pipeline._started -= 60.0  # started a minute ago (reconciliation settles from it)
    sandbox.faults.update({"latency": {"PLACE_ORDER": 3000}})
    with place_arrivals(sandbox) as arrived:
        other.send(**signal)
        await asyncio.wait_for(arrived.wait(), 30)  # the other's POST is in the venue's hands
    here.engine.pipeline.submit(Delivery(orjson.dumps(signal), 0, owned_since_ns=time.time_ns()))
    await here.engine.pipeline.drain()
    await other.engine.pipeline.drain()
    sandbox.faults.clear()
    await other.engine.stop()
    await here.engine.stop()

    tag = strategy_tag("t", ts_ms * 1_000_000)
    assert _tagged(here, tag) == 1, "the taken-over signal was placed a second time"
    [out] = [o for o in here.outcomes if o.id == "t"]
    assert out.status == "accepted" and "not sent again" in out.reason
