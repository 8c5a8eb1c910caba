"""The per-account circuit breaker, driven by a manual clock."""

from __future__ import annotations

import pytest

from engine.execution.breaker import BreakerState, CircuitBreaker, FailureKind
from engine.model.errors import CircuitOpen, ConfigError
from tests.limits.manual_time import ManualTime

S = 1_000_000_000


def breaker(t: ManualTime, **kw: object) -> CircuitBreaker:
    return CircuitBreaker(
        "ftmo-1",
        failure_threshold=3,
        cool_down_s=5.0,
        max_cool_down_s=20.0,
        clock=t.clock,
        **kw,  # type: ignore[arg-type]
    )


def test_consecutive_failures_open_it_and_requests_are_refused_with_the_reason() -> None:
    t = ManualTime()
    b = breaker(t)
    b.record_status(503)
    b.record_failure(FailureKind.TIMEOUT)
    b.check()  # two failures: still closed
    b.record_status(429)
    assert b.state is BreakerState.OPEN
    with pytest.raises(CircuitOpen) as err:
        b.check("PLACE_ORDER")
    assert err.value.account == "ftmo-1" and err.value.route == "PLACE_ORDER"
    assert err.value.retry_in == 5.0
    assert "3 consecutive venue failures (last: 429 rate limited)" in str(err.value)
    assert b.snapshot().rejected_total == 1


def test_a_success_resets_the_count() -> None:
    t = ManualTime()
    b = breaker(t)
    b.record_status(500)
    b.record_status(500)
    b.record_status(200)  # includes a business rejection: the venue answered
    b.record_status(500)
    b.record_status(500)
    assert b.state is BreakerState.CLOSED


def test_after_the_cool_down_exactly_one_probe_goes_and_its_success_closes() -> None:
    t = ManualTime()
    changes: list[BreakerState] = []
    b = breaker(t, on_change=changes.append)
    for _ in range(3):
        b.record_failure()
    t.advance(5 * S - 1)
    assert not b.allow()
    t.advance(1)
    b.check()  # the probe
    assert b.state is BreakerState.HALF_OPEN
    with pytest.raises(CircuitOpen, match="half_open"):
        b.check()  # everyone else waits for the probe
    b.record_success()
    assert b.state is BreakerState.CLOSED
    b.check()
    assert changes == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]


def test_a_failed_probe_reopens_with_a_doubled_capped_cool_down() -> None:
    t = ManualTime()
    b = breaker(t)
    for _ in range(3):
        b.record_failure()
    for expected in (10.0, 20.0, 20.0):
        t.advance(int(b.retry_in_s() * S))
        assert b.allow()
        b.record_failure(FailureKind.CONNECTION)
        assert b.state is BreakerState.OPEN
        assert b.retry_in_s() == expected
    assert b.snapshot().opened_total == 4


def test_a_lost_probe_is_replaced_after_the_probe_timeout() -> None:
    t = ManualTime()
    b = breaker(t, probe_timeout_s=2.0)
    for _ in range(3):
        b.record_failure()
    t.advance(5 * S)
    assert b.allow()  # a probe that never reports back
    t.advance(2 * S - 1)
    assert not b.allow()
    t.advance(1)
    assert b.allow()


def test_snapshot_exports_state_for_health() -> None:
    t = ManualTime()
    b = breaker(t)
    for _ in range(3):
        b.record_failure(FailureKind.TIMEOUT)
    snap = b.snapshot()
    assert (snap.state, snap.consecutive_failures, snap.last_failure, snap.retry_in_s) == (
        BreakerState.OPEN,
        3,
        "timeout",
        5.0,
    )


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="threshold"):
        CircuitBreaker("a", failure_threshold=0)
    with pytest.raises(ConfigError, match="cool-down"):
        CircuitBreaker("a", cool_down_s=10.0, max_cool_down_s=5.0)
