"""The journal forgets decided ids while running, and only after the retention (injected clock).

A real SQLite journal on disk; time is a ManualClock, so "a week later" is a call, not a wait.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from engine.model.clock import ManualClock
from engine.model.domain import Action, Outcome, OutcomeStatus
from engine.state import journal as journal_mod
from engine.state.journal import EntryState, Journal

RETENTION_S = 100.0


def outcome(sid: str, status: OutcomeStatus = OutcomeStatus.ACCEPTED) -> Outcome:
    return Outcome(sid, "acct-a", status, Action.PLACE, order_id="1", strategy_tag="t-" + sid)


async def traffic(journal: Journal, clock: ManualClock, prefix: str, n: int, step_s: float) -> None:
    """``n`` other signals decided ``step_s`` apart: the records that drive the pruning."""
    writes = []
    for i in range(n):
        await clock.advance(step_s)
        writes.append(journal.record(outcome(f"{prefix}-{i}")))
    await asyncio.gather(*writes)


async def test_an_id_is_remembered_for_the_whole_retention_while_running(tmp_path: Path) -> None:
    clock = ManualClock()
    journal = Journal(tmp_path / "j.db", retention_s=RETENTION_S, clock=clock)
    await journal.begin("sig", "acct-a", "t-sig")
    await journal.record(outcome("sig"))
    # 99.9 s of traffic after its decision: every record tries to prune.
    await traffic(journal, clock, "other", 999, 0.1)
    rec = journal.decided("sig")
    assert rec is not None and rec.state is EntryState.DECIDED
    assert rec.status is OutcomeStatus.ACCEPTED
    # Past the retention, the next records forget it.
    await traffic(journal, clock, "later", 5, 0.1)
    assert journal.decided("sig") is None
    await journal.close()


async def test_memory_stays_flat_under_steady_traffic(tmp_path: Path) -> None:
    clock = ManualClock()
    journal = Journal(tmp_path / "j.db", retention_s=RETENTION_S, clock=clock)
    sizes = []
    for chunk in range(6):  # 600 s of traffic at 10 signals/s: six retention windows
        await traffic(journal, clock, f"c{chunk}", 1000, 0.1)
        sizes.append(len(journal))
    # About rate x retention (1,000) ids held, not the 6,000 seen.
    assert all(size <= 1000 + 2 for size in sizes[1:]), sizes
    assert journal.decided("c5-999") is not None
    assert journal.decided("c0-0") is None
    await journal.close()


async def test_a_later_decision_restarts_the_retention(tmp_path: Path) -> None:
    clock = ManualClock()
    journal = Journal(tmp_path / "j.db", retention_s=RETENTION_S, clock=clock)
    await journal.begin("sig", "acct-a", "t-sig")
    await journal.record(outcome("sig", OutcomeStatus.UNKNOWN))
    await clock.advance(60)
    await journal.record(outcome("sig", OutcomeStatus.ACCEPTED))  # reconciled: decided again
    await traffic(journal, clock, "other", 800, 0.1)  # 140 s after the first, 80 s after this
    rec = journal.decided("sig")
    assert rec is not None and rec.status is OutcomeStatus.ACCEPTED
    await traffic(journal, clock, "more", 300, 0.1)
    assert journal.decided("sig") is None
    await journal.close()


async def test_a_pending_id_is_never_forgotten(tmp_path: Path) -> None:
    clock = ManualClock()
    journal = Journal(tmp_path / "j.db", retention_s=RETENTION_S, clock=clock)
    await journal.begin("open", "acct-a", "t-open")
    await traffic(journal, clock, "other", 3000, 0.1)  # three retentions later
    rec = journal.decided("open")
    assert rec is not None and rec.pending
    assert [r.signal_id for r in journal.pending()] == ["open"]
    await journal.close()


async def test_forgotten_rows_leave_the_database_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_mod, "_DELETE_EVERY", 50)
    clock = ManualClock()
    path = tmp_path / "j.db"
    journal = Journal(path, retention_s=RETENTION_S, clock=clock)
    await journal.begin("open", "acct-a", "t-open")
    await traffic(journal, clock, "other", 3000, 0.1)
    await journal.close()
    with sqlite3.connect(path) as conn:
        (rows,) = conn.execute("SELECT COUNT(*) FROM signals").fetchone()
        (pending,) = conn.execute("SELECT COUNT(*) FROM signals WHERE state = 0").fetchone()
    assert pending == 1
    # 2,000 of the 3,000 decided rows expired; all but the last < 50 forgotten were deleted.
    assert rows <= 1 + 1000 + 2 + 50, rows
    # The reopened journal still knows every id within the retention.
    reopened = Journal(path, retention_s=RETENTION_S, clock=clock)
    assert reopened.decided("other-2999") is not None
    assert reopened.decided("other-2001") is not None
    assert reopened.decided("other-0") is None
    await reopened.close()
