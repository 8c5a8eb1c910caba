"""The pipeline reads time from the clock it is given: the age check and the stamps follow an
injected ManualClock, not the machine's clocks."""

from __future__ import annotations

from pathlib import Path

import orjson

from engine.execution.accounts import Accounts, AccountSession
from engine.execution.pipeline import Pipeline
from engine.execution.reconcile import Reconciler
from engine.execution.settings import AccountSettings
from engine.io.bus import EventBus
from engine.model.clock import ManualClock
from engine.model.delivery import Delivery
from engine.model.events import OutcomeEvent
from engine.state.journal import Journal
from engine.venue.paper import PaperVenue

MKT = {"account": "a1", "action": "place", "symbol": "EURUSD", "type": "market", "side": "buy"}
# Wall time on the manual clock: 2001-09-09, decades before the machine's own clock.
WALL_S = 1_000_000_000.0


def signal(signal_id: str, ts_ms: int) -> Delivery:
    return Delivery(orjson.dumps({"id": signal_id, "ts": ts_ms, "qty": 0.1, **MKT}), 0)


async def test_age_and_stamps_come_from_the_injected_clock(tmp_path: Path) -> None:
    clock = ManualClock(start_s=5_000.0, wall_offset_s=WALL_S)
    venue = PaperVenue(["a1"])
    accounts = Accounts([AccountSession(AccountSettings("a1", "paper", acc_num=1), venue)], ())
    await accounts.start()
    journal = Journal(tmp_path / "journal.sqlite", synchronous="NORMAL")
    bus = EventBus()
    outcomes: dict[str, OutcomeEvent] = {}
    bus.subscribe(lambda t, e: outcomes.update({e.id: e}) if isinstance(e, OutcomeEvent) else None)
    pipeline = Pipeline(
        accounts,
        journal,
        bus,
        reconciler=Reconciler(venue),
        max_signal_age_ms=1_000,
        clock=clock,
    )
    now_ms = clock.time_ns() // 10**6
    try:
        # Fresh by the injected clock (the machine's would call it decades old): traded.
        pipeline.submit(signal("fresh", now_ms))
        # 1.5 s old by the injected clock (in the machine's future): expired, not traded.
        pipeline.submit(signal("old", now_ms - 1_500))
        await pipeline.drain()
    finally:
        await pipeline.close()
        await journal.close()
    assert outcomes["fresh"].status == "accepted", outcomes["fresh"]
    assert outcomes["old"].status == "expired"
    assert outcomes["old"].reason == "signal is 1500 ms old, over max_signal_age_ms: not traded"
    assert len(await venue.positions("a1")) == 1
    # The clock never moved: every stamp of the traded signal is its monotonic now.
    rec = pipeline.tracker.by_signal("fresh")
    assert rec is not None
    stamps = (rec.arrived_ns, rec.validated_ns, rec.gated_ns, rec.on_wire_ns, rec.acked_ns)
    assert stamps == (clock.monotonic_ns(),) * 5
