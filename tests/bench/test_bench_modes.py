"""The benchmark's separate modes, each run end to end at a tiny scale against real processes.

The sandbox (``tl-engine sim``) and, for the daemon mode, ``tl-engine run`` run as their own
processes, as in the real benchmark. Nothing here asserts a time: each test checks that the
mode counts what it says (every signal has its outcome, the legs are grouped per signal, the
memory is read) and reports it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=240
    )


def test_daemon_mode_feeds_a_real_daemon_over_post_signals_and_reads_its_own_stamps(
    tmp_path: Path,
) -> None:
    out = tmp_path / "daemon.json"
    proc = _run("bench.daemon_mode", "--count", "20", "--rate", "40", "--accounts", "2",
                "--out", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    # 2 warm-up signals (one per account) and the 20 of the series, each with one outcome.
    assert result["outcomes"] == 22
    assert {a: s.get("accepted") for a, s in result["outcomes_by_account"].items()} == {
        "acct1": 11,
        "acct2": 11,
    }
    assert result["stages_us"]["engine_share"]["count"] == 22
    assert result["stages_us"]["generation_to_arrival"]["count"] == 22
    assert result["post_to_202_us"]["count"] == 20 and not result["post_errors"]
    assert "engine share (daemon) p50:" in proc.stdout


def test_fanout_mode_times_the_last_of_each_signals_legs(tmp_path: Path) -> None:
    out = tmp_path / "fanout.json"
    proc = _run("bench.fanout", "--legs", "3", "--rate", "20", "--count", "6", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert not result["errors"]
    assert result["arrival_to_last_leg_on_wire"]["count"] == 6
    assert result["arrival_to_last_leg_acked"]["count"] == 6
    # The last leg on the wire comes before the last leg acknowledged, signal by signal.
    assert (
        result["arrival_to_last_leg_on_wire"]["max_us"]
        <= result["arrival_to_last_leg_acked"]["max_us"]
    )
    # Every leg of every signal (3 warm-up signals and 6 measured) went through the pipeline.
    assert result["per_leg_stages"]["engine_share"]["count"] == 3 * (3 + 6)
    # The transport's write stamp of each signal's last leg: after the pipeline's stamp (taken
    # before the venue call), before the acknowledgement.
    written = result["arrival_to_last_leg_written"]
    assert written["count"] == 6
    assert result["arrival_to_last_leg_on_wire"]["max_us"] <= written["max_us"]
    assert written["max_us"] <= result["arrival_to_last_leg_acked"]["max_us"]
    assert result["submit_cpu"]["count"] == 6


def test_fanout_ab_mode_splits_the_series_between_the_transport_now_and_before(
    tmp_path: Path,
) -> None:
    out = tmp_path / "fanout-ab.json"
    proc = _run("bench.fanout", "--legs", "3", "--rate", "20", "--count", "6", "--ab",
                "--out", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert not result["errors"]
    assert result["arrival_to_last_leg_written"]["count"] == 3
    assert result["before"]["arrival_to_last_leg_written"]["count"] == 3
    assert "before: arrival -> last leg's bytes written" in proc.stdout


def test_memory_mode_opens_the_positions_it_reports(tmp_path: Path) -> None:
    out = tmp_path / "memory.json"
    proc = _run("bench.capacity", "memory", "--accounts", "3", "--positions", "9",
                "--out", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert not result["order_errors"]
    assert result["open_positions_at_venue"] == 9
    assert 0 < result["rss_mb_before_engine"] <= result["rss_mb_engine_started"]


def test_scaleout_report_counts_lost_twice_and_the_gap_across_the_kill() -> None:
    from bench.scaleout import Outcomes, _kill_report

    ms = 1_000_000
    kill = 10_000 * ms
    produced = {
        "s1": (9_000 * ms, "acct1"),  # before the kill, answered at once
        "s2": (10_500 * ms, "acct1"),  # after it: its account trades again 4 s later
        "s3": (10_600 * ms, "acct2"),  # never answered: lost
        "s4": (9_500 * ms, "acct2"),
    }
    out = Outcomes()
    out.by_id["s1"].append(("accepted", "acct1", 9_010 * ms))
    out.by_id["s2"].append(("accepted", "acct1", 14_500 * ms))
    out.by_id["s4"].append(("unknown", "acct2", 9_600 * ms))
    report = _kill_report(produced, out, kill, positions=3, processes=3)
    assert report["lost_no_outcome"] == 1
    assert report["statuses"] == {"accepted": 2, "unknown": 1}
    # 3 positions at the venue for 2 accepted signals: one order beyond them (or the unknown one).
    assert report["twice_positions_beyond_accepted"] == 1
    assert report["after_kill_count"] == 1
    assert report["after_kill_produced_to_outcome_max_ms"] == 4_000
    assert report["longest_gap_across_kill_ms"] == 14_500 - 9_010
