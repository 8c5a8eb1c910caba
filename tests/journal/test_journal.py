"""The decision journal against a real SQLite file, including a process killed mid-write."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from engine.model.domain import Action, Outcome, OutcomeStatus
from engine.state.journal import EntryState, Journal, JournalError

ROOT = Path(__file__).resolve().parents[2]


def accepted(sid: str, order_id: str = "1001") -> Outcome:
    return Outcome(
        sid,
        "acct-a",
        OutcomeStatus.ACCEPTED,
        Action.PLACE,
        order_id=order_id,
        strategy_tag="t-" + sid,
    )


async def test_unseen_signal_is_not_decided(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db")
    assert journal.decided("never-seen") is None
    await journal.close()


async def test_begun_signal_survives_restart_as_pending_with_its_tag(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db")
    await journal.begin("s1", "acct-a", "tagS1")
    await journal.close()

    reopened = Journal(tmp_path / "j.db")
    [rec] = reopened.pending()
    assert (rec.signal_id, rec.account, rec.strategy_tag) == ("s1", "acct-a", "tagS1")
    assert rec.pending and rec.state is EntryState.PENDING
    await reopened.close()


async def test_recorded_outcome_survives_restart_and_is_no_longer_pending(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db")
    await journal.begin("s1", "acct-a", "t-s1")
    await journal.record(accepted("s1", "42"))
    await journal.close()

    reopened = Journal(tmp_path / "j.db")
    rec = reopened.decided("s1")
    assert rec is not None
    assert rec.state is EntryState.DECIDED
    assert rec.status is OutcomeStatus.ACCEPTED
    assert rec.order_id == "42"
    assert rec.strategy_tag == "t-s1"
    assert rec.decided_ns is not None and rec.decided_ns >= rec.begun_ns
    assert reopened.pending() == []
    await reopened.close()


async def test_rejection_without_begin_is_recorded_with_its_reason(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db")
    await journal.record(
        Outcome("bad", "acct-a", OutcomeStatus.REJECTED, Action.PLACE, reason="qty must be > 0")
    )
    await journal.close()
    rec = Journal(tmp_path / "j.db").decided("bad")
    assert rec is not None and rec.status is OutcomeStatus.REJECTED
    assert rec.reason == "qty must be > 0"


async def test_begin_after_decision_does_not_reopen_the_signal(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db")
    await journal.begin("s1", "acct-a", "t-s1")
    await journal.record(accepted("s1"))
    await journal.begin("s1", "acct-a", "t-other")
    assert journal.pending() == []
    await journal.close()
    reopened = Journal(tmp_path / "j.db")
    rec = reopened.decided("s1")
    assert rec is not None and rec.state is EntryState.DECIDED and rec.strategy_tag == "t-s1"
    await reopened.close()


async def test_many_concurrent_writes_are_all_durable(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db", max_batch=64)
    await asyncio.gather(*(journal.begin(f"s{i}", "acct-a", f"t{i}") for i in range(2000)))
    await asyncio.gather(*(journal.record(accepted(f"s{i}")) for i in range(0, 2000, 2)))
    await journal.close()
    with sqlite3.connect(tmp_path / "j.db") as conn:
        counts = dict(conn.execute("SELECT state, count(*) FROM signals GROUP BY state").fetchall())
    assert counts == {0: 1000, 1: 1000}


async def test_old_decisions_are_pruned_but_pending_rows_are_kept(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db")
    await journal.begin("open", "acct-a", "t-open")
    await journal.record(accepted("done"))
    await journal.close()
    reopened = Journal(tmp_path / "j.db", retention_s=-1.0)
    assert reopened.decided("done") is None
    assert [r.signal_id for r in reopened.pending()] == ["open"]
    await reopened.close()


async def test_write_after_close_fails_clearly(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db")
    await journal.close()
    with pytest.raises(JournalError, match="closed"):
        await journal.begin("s1", "acct-a", "t")


def test_unusable_path_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "adir").mkdir()
    with pytest.raises(JournalError, match="cannot open the journal"):
        Journal(tmp_path / "adir")


def test_unknown_synchronous_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="FULL or NORMAL"):
        Journal(tmp_path / "j.db", synchronous="OFF")  # type: ignore[arg-type]


def test_process_killed_mid_write_leaves_a_consistent_journal(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "journal" / "crash_writer.py"), str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    begun: set[str] = set()
    decided: set[str] = set()
    try:
        for line in child.stdout:
            kind, sid = line.split()
            (begun if kind == "begun" else decided).add(sid)
            if len(decided) >= 500:
                break
        # SIGKILL: no atexit, no close(), possibly in the middle of a commit.
        child.send_signal(signal.SIGKILL)
        for line in child.stdout:  # what it printed before dying was also promised
            kind, sid = line.split()
            (begun if kind == "begun" else decided).add(sid)
    finally:
        child.kill()
        child.wait()
    assert len(decided) >= 500

    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    journal = Journal(path)
    for sid in begun:
        rec = journal.decided(sid)
        assert rec is not None, f"{sid} was promised begun but is missing"
    for sid in decided:
        rec = journal.decided(sid)
        assert rec is not None and rec.state is EntryState.DECIDED, f"{sid} lost its outcome"
        assert rec.order_id == sid.removeprefix("sig-")
    # Whatever is pending was begun and never decided: exactly the rows to reconcile.
    for rec in journal.pending():
        assert rec.signal_id not in decided
        assert rec.strategy_tag == "tag" + rec.signal_id.removeprefix("sig-")
    asyncio.run(journal.close())
