"""The chaos suite's runs at their short sizes (``chaos.runs.SHORT``): the daemon and the sandbox
(``realistic`` profile) as real subprocesses, signals over HTTP or through a real Kafka broker,
faults through ``/sandbox/faults``, orders counted at the sandbox by tag. Each test asserts the
run's goals on counts (duplicates, lost, phantom, unknown, 429s earned, ...); the times a run
measures (signal -> ack, takeover, catch-up) are printed by ``tl-engine chaos``, never asserted.
The full sizes and their last figures: docs/reliability.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos import kafka_runs, runs
from chaos.runs import SHORT, Result


def check(result: Result) -> None:
    report = "\n".join(result.lines())
    print(report)
    assert result.tally is None or result.tally.signals > 0, report
    assert not result.missed_counts(), report


async def test_fault_mix_no_duplicate_lost_phantom_unknown_or_429(tmp_path: Path) -> None:
    check(await runs.run_faults(SHORT, tmp_path))


async def test_sigkill_restart_and_redelivery_execute_nothing_twice_and_lose_nothing(
    tmp_path: Path,
) -> None:
    result = await runs.run_faults(SHORT, tmp_path, kill=True)
    assert result.figures["killed after signals sent"], "the daemon was never killed"
    check(result)


async def test_burst_over_the_limit_earns_no_429_and_every_unsent_signal_says_why(
    tmp_path: Path,
) -> None:
    check(await runs.run_burst(SHORT, tmp_path))


async def test_tokens_invalidated_four_times_reject_no_signal(tmp_path: Path) -> None:
    result = await runs.run_tokens(SHORT, tmp_path)
    assert result.figures["token invalidations"] == 4
    check(result)


@pytest.mark.parametrize("stream", [False, True], ids=["rest-only", "stream"])
async def test_venue_down_sends_nothing_stale_health_is_not_ready_and_nothing_stays_unknown(
    tmp_path: Path, stream: bool
) -> None:
    result = await runs.run_venue_down(SHORT, stream, tmp_path)
    check(result)
    # Undecided orders of the outage are resolved once the venue is back (a correction each).
    assert result.tally is not None and result.tally.unknown == 0, "\n".join(result.lines())


async def test_demo_burst_at_venue_latency_has_no_unknown_and_no_engine_rejection(
    tmp_path: Path,
) -> None:
    check(await runs.run_latency(SHORT, tmp_path))


@pytest.mark.kafka
async def test_kafka_kill_and_restart_no_duplicate_lost_phantom_and_lag_zero(
    kafka_broker: str, tmp_path: Path
) -> None:
    check(await kafka_runs.run_kafka_kill(SHORT, kafka_broker, tmp_path))


@pytest.mark.kafka
async def test_kafka_two_engines_one_killed_survivor_takes_over_without_doubling(
    kafka_broker: str, tmp_path: Path
) -> None:
    result = await kafka_runs.run_kafka_two(SHORT, kafka_broker, tmp_path)
    assert result.tally is not None
    # Two engines on one login share its QUOTES budget by the accounts each serves (issue 15
    # item 1, docs/kafka.md): 0 HTTP 429 is one of the counts asserted.
    check(result)
