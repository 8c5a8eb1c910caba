"""A power cut between "order on the wire" and "intent on disk", on the real sandbox.

The intent log survives the death of the process but not of the OS, so after a reboot a
re-delivered signal may have no journal row although an earlier run sent it. The engine then
looks it up at the venue by its derived tag before executing: the sandbox must end with one
order for it, not two; a signal that never reached the venue is still executed (once); and a
signal generated after the restart is not suspect, so it goes straight to the venue.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import orjson

from engine.execution.tags import strategy_tag
from sandbox import Sandbox
from tests.fixtures.engine import Live, start_engine


def place(signal_id: str, ts_ns: int) -> dict[str, object]:
    return {
        "id": signal_id,
        "ts": ts_ns,
        "account": "a1",
        "action": "place",
        "symbol": "EURUSD",
        "type": "market",
        "side": "buy",
        "qty": 0.01,
    }


def orders_tagged(live: Live, tag: str) -> list[object]:
    return [o for o in live.sim_orders(1) if o.strategy_id == tag]


async def test_after_a_power_cut_a_redelivered_signal_is_found_by_tag_not_placed_twice(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    before_run, after_cut = tmp_path / "run1", tmp_path / "disk-after-power-cut"
    before_run.mkdir()
    after_cut.mkdir()
    generated = time.time_ns()
    sent, never_sent = place("sent", generated), place("never-sent", generated + 1)

    first = await start_engine(sandbox, before_run)
    assert (await first.run(**place("durable", generated - 1))).status == "accepted"
    # The disk as the power cut leaves it: "durable" is committed; what follows never reaches
    # it; the run-state file says a run was open, in a boot that is not this one.
    for name in ("journal.sqlite", "journal.sqlite-wal"):
        shutil.copy(before_run / name, after_cut / name)
    run_state = orjson.loads((before_run / "journal.sqlite.run").read_bytes())
    assert run_state["open"] is True
    run_state["boot_id"] = "boot-before-the-power-cut"
    (after_cut / "journal.sqlite.run").write_bytes(orjson.dumps(run_state))

    first_outcome = await first.run(**sent)
    assert first_outcome.status == "accepted"
    await first.engine.stop()
    tag = strategy_tag("sent", generated)
    assert first_outcome.tag == tag

    second = await start_engine(sandbox, after_cut)
    try:
        assert second.engine.journal.run_state.rebooted
        # The source re-delivers what it never saw acknowledged, and more.
        replayed = await second.run(**place("durable", generated - 1))
        found = await second.run(**sent)
        executed = await second.run(**never_sent)
        fresh_ts = time.time_ns() + 10**9
        assert not second.engine.journal.suspect(fresh_ts)
        fresh = await second.run(**place("fresh", fresh_ts))
    finally:
        await second.engine.stop()

    assert replayed.replayed is True
    assert found.status == "accepted" and found.resolved_from_unknown is True
    assert found.order_id == first_outcome.order_id
    assert "not sent again" in found.reason
    assert len(orders_tagged(second, tag)) == 1, "the redelivered signal was placed twice"

    assert executed.status == "accepted" and not executed.resolved_from_unknown
    assert len(orders_tagged(second, strategy_tag("never-sent", generated + 1))) == 1
    assert fresh.status == "accepted" and not fresh.resolved_from_unknown
    # Every decision is durable now: a further re-delivery is answered from the journal.
    third = await start_engine(sandbox, after_cut)
    try:
        again = await third.run(**sent)
    finally:
        await third.engine.stop()
    assert again.replayed is True and len(orders_tagged(third, tag)) == 1
