"""Held stop-limit orders in the journal's database: durable across a restart, adopted from the
older separate file, and reconciled after a crash mid-trigger on the injected clock."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from engine.execution.reconcile import Reconciler
from engine.execution.stoplimit import StopLimitBook
from engine.io.bus import EventBus
from engine.model.clock import ManualClock
from engine.model.domain import Instrument, OrderRequest, OrderType, Side, Validity
from engine.model.events import OrderUpdate
from engine.state.journal import Journal
from engine.state.stop_limits import SCHEMA
from engine.venue.paper import PaperVenue
from tests.fixtures.clock import drive


def held_request(inst: Instrument, tag: str) -> OrderRequest:
    return OrderRequest(
        "a1", inst, Side.BUY, OrderType.STOP_LIMIT, 0.1, Validity.GTC, tag,
        price=1.3005, stop_price=1.3,
    )  # fmt: skip


async def test_a_saved_row_is_committed_when_awaited_and_loaded_by_the_next_start(
    tmp_path: Path,
) -> None:
    venue = PaperVenue(["a1"])
    inst = (await venue.instruments("a1"))[0]
    journal = Journal(tmp_path / "j.sqlite")
    await journal.stop_limits.save("emu-t1", "s1", held_request(inst, "t1"), "held", None)
    await journal.stop_limits.save("emu-t2", "s2", held_request(inst, "t2"), "cancelled", None)
    # Committed when the await returns: another connection sees it, before any close.
    with sqlite3.connect(tmp_path / "j.sqlite") as conn:
        states = dict(conn.execute("SELECT emulated_id, state FROM stop_limits").fetchall())
    assert states == {"emu-t1": "held", "emu-t2": "cancelled"}

    restarted = Journal(tmp_path / "j.sqlite")  # the first one "died" without closing
    [row] = await restarted.stop_limits.load()  # a cancelled order is not resumed
    assert (row.emulated_id, row.signal_key, row.state) == ("emu-t1", "s1", "held")
    assert row.request(inst) == held_request(inst, "t1")
    await restarted.close()
    await journal.close()


async def test_the_older_separate_database_is_adopted_once(tmp_path: Path) -> None:
    legacy = tmp_path / "journal.stoplimit.sqlite"
    with sqlite3.connect(legacy) as conn:
        conn.executescript(SCHEMA)
        conn.execute(
            "INSERT INTO stop_limits VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            ("emu-old", "old", "a1", 278, 1, 0.1, 1.3005, 1.3, None, None, None, None, None,
             "old", "triggering", None, 1),
        )  # fmt: skip
    conn.close()
    journal = Journal(tmp_path / "journal.sqlite")
    assert await journal.stop_limits.adopt(legacy) == 1
    assert not legacy.exists() and legacy.with_name(legacy.name + ".adopted").exists()
    assert await journal.stop_limits.adopt(legacy) == 0  # adopted once
    [row] = await journal.stop_limits.load()
    assert (row.emulated_id, row.state, row.instrument_id) == ("emu-old", "triggering", 278)
    await journal.close()


async def test_a_trigger_caught_by_a_crash_is_failed_only_after_the_settle_time(
    tmp_path: Path,
) -> None:
    # The last run wrote "triggering" and died; the venue shows nothing under the tag. The book
    # believes "absent" only once the settle time (30 s here) has passed since this start: on a
    # ManualClock that takes no real time, and the order is never placed.
    venue = PaperVenue(["a1"])
    inst = (await venue.instruments("a1"))[0]
    crashed = Journal(tmp_path / "j.sqlite")
    await crashed.stop_limits.save("emu-t", "s", held_request(inst, "t"), "triggering", None)

    clock = ManualClock()
    journal = Journal(tmp_path / "j.sqlite", clock=clock)
    events = EventBus()
    seen: list[dict[str, Any]] = []
    events.subscribe(lambda topic, event: seen.append(event))
    reconciler = Reconciler(venue, settle_s=30.0, max_s=120.0, clock=clock)
    book = StopLimitBook(
        venue, journal.stop_limits, events, reconciler, poll_s=1.0, clock=clock,
        instrument_for=lambda alias, iid: inst,
    )  # fmt: skip
    started = clock.monotonic()
    await drive(clock, book.start(), step_s=0.5)
    assert clock.monotonic() - started >= 30.0
    assert [e.kind for e in seen if isinstance(e, OrderUpdate)] == ["stop_limit_failed"]
    assert book.get("emu-t") is None and book.held() == []
    assert not (await venue.find_by_tag("a1", "t")).found
    # The failed state is durable: the next start resumes nothing.
    await book.close()
    assert await journal.stop_limits.load() == []
    await journal.close()
    await crashed.close()
