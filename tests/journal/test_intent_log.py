"""The intent log in front of the journal: ``begin`` is safe against the death of the process
without an fsync, and the run-state file tells a restart whether intents can have been lost."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import orjson

from engine.model.clock import ManualClock
from engine.model.domain import Action, Outcome, OutcomeStatus
from engine.state.journal import IntentLog, Journal, intent_frame, read_intents

ROOT = Path(__file__).resolve().parents[2]


def sqlite_ids(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT signal_id FROM signals")}


def crashed_in_another_boot(journal_path: Path, **fields: object) -> None:
    """Leave the run-state file as a run that was open when the power went out leaves it."""
    run = journal_path.with_name(journal_path.name + ".run")
    run.write_bytes(orjson.dumps({"open": True, "boot_id": "boot-before-the-power-cut", **fields}))


def test_sigkill_right_after_begin_leaves_the_intent_for_the_restart(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    child = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "journal" / "begin_then_die.py"), str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert child.returncode == -9, child.stderr
    assert child.stdout.strip() == "begun sig-in-flight"
    # Nothing of the begin reached SQLite before the kill: only the intent log has it.
    assert sqlite_ids(path) == {"sig-done"}

    restarted = Journal(path)
    [rec] = restarted.pending()
    assert (rec.signal_id, rec.account, rec.strategy_tag) == (
        "sig-in-flight",
        "acct",
        "tag-in-flight",
    )
    # The replay made it a committed row: it no longer depends on the intent log.
    assert sqlite_ids(path) == {"sig-done", "sig-in-flight"}
    assert restarted.run_state.unclean and not restarted.run_state.rebooted


async def test_clean_close_leaves_no_intents_and_the_next_start_knows_it_was_clean(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.sqlite"
    journal = Journal(path)
    await journal.begin("s1", "acct", "t1")
    await journal.close()
    assert IntentLog.segments(tmp_path, path.name) == []
    assert sqlite_ids(path) == {"s1"}  # close committed the buffered begin row

    reopened = Journal(path)
    assert not reopened.run_state.unclean
    assert [r.signal_id for r in reopened.pending()] == ["s1"]
    await reopened.close()


async def test_every_intent_survives_segment_rotation_and_old_segments_are_deleted(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.sqlite"
    journal = Journal(path, intent_segment_bytes=4096)  # about 50 intents per segment
    for i in range(500):
        await journal.begin(f"s{i}", "acct", f"tag{i}")
        if i % 100 == 99:  # an outcome now and then commits the buffered rows
            await journal.record(Outcome(f"s{i}", "acct", OutcomeStatus.ACCEPTED, Action.PLACE))
    # Retired segments go once their rows are committed: only a few remain, not ten.
    await journal.record(Outcome("s0", "acct", OutcomeStatus.ACCEPTED, Action.PLACE))
    live_segments = IntentLog.segments(tmp_path, path.name)
    assert len(live_segments) <= 3, live_segments
    # A crash now (no close): the next start must still see every begun signal.
    restarted = Journal(path, intent_segment_bytes=4096)
    pending = {r.signal_id for r in restarted.pending()}
    assert pending == {f"s{i}" for i in range(1, 500) if i % 100 != 99}
    await restarted.close()
    await journal.close()


def test_a_torn_last_frame_ends_replay_and_keeps_every_frame_before_it() -> None:
    frames = b"".join(intent_frame(f"s{i}", "acct", f"t{i}", i) for i in range(3))
    torn = intent_frame("s3", "acct", "t3", 3)[:-4]
    assert [r[0] for r in read_intents(frames + torn + bytes(64))] == ["s0", "s1", "s2"]
    corrupt = bytearray(frames)
    corrupt[-2] ^= 0xFF  # a bit flip in the last payload: its CRC no longer matches
    assert [r[0] for r in read_intents(bytes(corrupt))] == ["s0", "s1"]


async def test_an_unclean_stop_in_the_same_boot_needs_no_venue_lookups(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    Journal(path)  # never closed: the process "died" with the OS still up
    restarted = Journal(path)
    assert restarted.run_state.unclean and not restarted.run_state.rebooted
    assert not restarted.suspect(0)
    assert not restarted.suspect(time.time_ns() - 10**9)
    await restarted.close()


async def test_after_a_reboot_older_signals_without_a_row_are_suspect(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    crashed_in_another_boot(path)
    before = time.time_ns() - 1
    journal = Journal(path)
    assert journal.run_state.rebooted
    assert journal.suspect(before)  # generated before this start: an earlier run may have sent it
    assert journal.suspect(0)  # no ts: cannot tell, so it is checked
    assert not journal.suspect(time.time_ns() + 10**9)  # generated after the restart
    await journal.close()
    # A clean stop does not end the window: a re-delivery may still come after the next start.
    assert Journal(path).suspect(before)


async def test_the_suspect_window_survives_a_second_crash_and_then_ends(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    clock = ManualClock()
    crashed_in_another_boot(path)
    old = clock.time_ns() - 1
    # Dies again, same boot, before the backlog was seen.
    Journal(path, suspect_window_s=0.5, clock=clock)
    again = Journal(path, suspect_window_s=0.5, clock=clock)
    assert again.run_state.unclean and not again.run_state.rebooted
    assert again.suspect(old)
    await again.close()
    await clock.advance(0.6)
    later = Journal(path, suspect_window_s=0.5, clock=clock)
    assert not later.suspect(old)
    await later.close()


async def test_power_durability_begin_is_committed_once_awaited(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    journal = Journal(path, begin_durability="power")
    await journal.begin("s1", "acct", "t1")
    assert sqlite_ids(path) == {"s1"}
    await journal.close()


def test_a_second_engine_process_on_the_same_journal_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    journal = Journal(path)
    opener = "import sys; from engine.state.journal import Journal; Journal(sys.argv[1])"
    other = subprocess.run(
        [sys.executable, "-c", opener, str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert other.returncode != 0
    assert "in use by another engine process" in other.stderr
    asyncio.run(journal.close())
    # Released at close: the next process may open it.
    again = subprocess.run(
        [sys.executable, "-c", opener, str(path)],
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert again.returncode == 0, again.stderr


async def test_begin_writes_exactly_the_intent_frame_of_its_row(tmp_path: Path) -> None:
    # Journal.begin builds the frame inline (the order path saves encode_intent's call): its
    # bytes in the segment must be the documented frame, or a restart could not replay them.
    clock = ManualClock()
    path = tmp_path / "journal.sqlite"
    journal = Journal(path, clock=clock)
    await journal.begin("s-1", "acct", "s0123456789abcdef01234")
    await journal.begin("s-2@b", "b", "tag-\u00e9")  # non-ASCII: orjson's UTF-8, as before
    # The segment in use (the other one, if any, is the zero-filled spare).
    written = [
        d for d in (s.read_bytes() for s in IntentLog.segments(tmp_path, path.name)) if any(d[:8])
    ]
    frames = intent_frame("s-1", "acct", "s0123456789abcdef01234", clock.time_ns())
    frames += intent_frame("s-2@b", "b", "tag-\u00e9", clock.time_ns())
    assert [d[: len(frames)] for d in written] == [frames]
    await journal.close()
