"""The per-account circuit breaker, driven by the injected ManualClock: noise never opens it, an
outage opens it within the window, probes close it after recovery, a failed probe reopens it."""

from __future__ import annotations

import random

import pytest

from engine.execution.breaker import BreakerState, CircuitBreaker, FailureKind
from engine.execution.settings import LimitsSettings
from engine.model.clock import ManualClock
from engine.model.errors import CircuitOpen, ConfigError

OK = None  # the venue answered


def breaker(clock: ManualClock, **kw: object) -> CircuitBreaker:
    settings: dict[str, object] = {
        "failure_rate": 0.5,
        "min_calls": 20,
        "window_s": 10.0,
        "cool_down_s": 5.0,
        "max_cool_down_s": 20.0,
        "probes": 3,
    }
    settings.update(kw)
    return CircuitBreaker("ftmo-1", clock=clock, **settings)  # type: ignore[arg-type]


def result(b: CircuitBreaker, kind: FailureKind | None) -> None:
    if kind is None:
        b.record_success()
    else:
        b.record_failure(kind)


def noisy(rng: random.Random) -> FailureKind | None:
    """5 % 503, 3 % 429, 20 % written with no reply (half timeouts, half dropped), else OK."""
    x = rng.random()
    if x < 0.05:
        return FailureKind.SERVER_ERROR
    if x < 0.08:
        return FailureKind.RATE_LIMITED
    if x < 0.18:
        return FailureKind.NO_REPLY
    if x < 0.28:
        return FailureKind.TIMEOUT
    return OK


async def open_it(clock: ManualClock, b: CircuitBreaker) -> None:
    for _ in range(20):
        b.record_failure(FailureKind.SERVER_ERROR)
    assert b.state is BreakerState.OPEN


@pytest.mark.parametrize("per_s", [3, 20, 200])
@pytest.mark.parametrize("seed", range(5))
async def test_noise_never_opens_it(per_s: int, seed: int) -> None:
    clock = ManualClock()
    b = breaker(clock)
    rng = random.Random(seed)
    for _ in range(per_s * 120):  # two minutes of traffic
        b.check()
        result(b, noisy(rng))
        await clock.advance(1 / per_s)
    assert b.state is BreakerState.CLOSED and b.opened_total == 0
    snap = b.snapshot()
    assert snap.calls >= per_s * 9  # the window held its calls: the rule had data to act on


async def test_noise_in_one_burst_never_opens_it() -> None:
    clock = ManualClock()
    b = breaker(clock)
    rng = random.Random(7)
    for _ in range(2_000):
        result(b, noisy(rng))
    assert b.opened_total == 0


@pytest.mark.parametrize("kind", [FailureKind.SERVER_ERROR, FailureKind.CONNECTION])
async def test_an_outage_opens_it_within_the_window(kind: FailureKind) -> None:
    clock = ManualClock()
    b = breaker(clock)
    for _ in range(100):  # ten healthy seconds fill the window with successes
        b.record_success()
        await clock.advance(0.1)
    down_at = clock.monotonic()
    b.record_failure(kind)
    while b.state is BreakerState.CLOSED:
        await clock.advance(0.1)
        assert clock.monotonic() - down_at <= 10.0, "still closed a whole window into the outage"
        b.record_failure(kind)
    with pytest.raises(CircuitOpen) as err:
        b.check("PLACE_ORDER")
    assert err.value.account == "ftmo-1" and err.value.route == "PLACE_ORDER"
    assert err.value.retry_in == 5.0
    assert f"calls failed in the last 10 s; last: {kind.text}" in str(err.value)
    assert "request not sent" in str(err.value)
    assert b.snapshot().rejected_total == 1


async def test_fewer_calls_than_the_minimum_never_open_it() -> None:
    clock = ManualClock()
    b = breaker(clock)
    for _ in range(19):
        b.record_failure(FailureKind.CONNECTION)
    assert b.state is BreakerState.CLOSED
    await clock.advance(10.0)  # those failures leave the window
    for _ in range(19):
        b.record_failure(FailureKind.CONNECTION)
    assert b.state is BreakerState.CLOSED
    b.record_failure(FailureKind.CONNECTION)  # the 20th within the window
    assert b.state is BreakerState.OPEN


async def test_429s_alone_never_open_it_they_are_the_rate_gates_business() -> None:
    clock = ManualClock()
    b = breaker(clock)
    for _ in range(500):
        b.record_failure(FailureKind.RATE_LIMITED)
    assert b.state is BreakerState.CLOSED
    assert b.snapshot().failed == 500 * 0.25


async def test_dropped_replies_are_ambiguous_while_the_venue_answers_others() -> None:
    clock = ManualClock()
    b = breaker(clock)
    b.record_success()
    for _ in range(200):  # 1 answered, 200 with no reply: the venue is still answering
        b.record_failure(FailureKind.NO_REPLY)
    assert b.state is BreakerState.CLOSED
    assert b.snapshot().failed == 0


async def test_a_silent_venue_opens_it_once_no_call_in_the_window_was_answered() -> None:
    clock = ManualClock()
    b = breaker(clock)
    for _ in range(100):
        b.record_success()
        await clock.advance(0.1)
    silent_at = clock.monotonic()
    b.record_failure(FailureKind.TIMEOUT)
    while b.state is BreakerState.CLOSED:
        await clock.advance(0.1)
        # The last answer leaves the window after window_s, give or take a bucket (a tenth).
        assert clock.monotonic() - silent_at <= 11.0
        b.record_failure(FailureKind.TIMEOUT)
    assert clock.monotonic() - silent_at >= 9.0, "it opened while answers were in the window"
    assert "last: timeout" in (b.snapshot().reason or "")


async def test_after_the_cool_down_probes_go_and_enough_answers_close_it() -> None:
    clock = ManualClock()
    changes: list[BreakerState] = []
    b = breaker(clock, on_change=changes.append)
    await open_it(clock, b)
    await clock.advance(5.0 - 1e-9)
    assert not b.allow()
    await clock.advance(1e-9)
    for _ in range(3):
        b.check()  # three probes may be out at a time
    assert b.state is BreakerState.HALF_OPEN
    with pytest.raises(CircuitOpen, match="half_open"):
        b.check()  # everyone else waits for a probe to report
    b.record_success()
    b.check()  # an answered probe frees its slot for another
    b.record_success()
    assert b.state is BreakerState.HALF_OPEN
    b.record_success()  # three answered
    assert b.state is BreakerState.CLOSED
    b.check()
    assert changes == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]
    # Closed afresh: the failures that opened it are forgotten.
    assert b.snapshot().calls == 0


async def test_a_failed_probe_reopens_it_with_a_doubled_capped_cool_down() -> None:
    clock = ManualClock()
    b = breaker(clock)
    await open_it(clock, b)
    for expected in (10.0, 20.0, 20.0):
        await clock.advance(b.retry_in_s())
        assert b.allow()
        b.record_success()  # one answered probe is not enough ...
        assert b.allow()
        b.record_failure(FailureKind.SERVER_ERROR)  # ... and a failed one reopens it
        assert b.state is BreakerState.OPEN
        assert b.retry_in_s() == expected
    assert b.snapshot().opened_total == 4
    # Recovery resets the cool-down to its base.
    await clock.advance(b.retry_in_s())
    for _ in range(3):
        assert b.allow()
        b.record_success()
    assert b.state is BreakerState.CLOSED
    await open_it(clock, b)
    assert b.retry_in_s() == 5.0


async def test_probes_with_no_reply_reopen_it_only_when_none_was_answered() -> None:
    clock = ManualClock()
    b = breaker(clock)
    await open_it(clock, b)
    await clock.advance(5.0)
    for _ in range(3):
        assert b.allow()
    b.record_failure(FailureKind.RATE_LIMITED)  # the rate gate's business: no verdict
    b.record_failure(FailureKind.NO_REPLY)
    assert b.state is BreakerState.HALF_OPEN
    b.record_failure(FailureKind.TIMEOUT)
    assert b.state is BreakerState.HALF_OPEN
    assert b.allow()
    b.record_failure(FailureKind.NO_REPLY)  # the third silent probe, none answered
    assert b.state is BreakerState.OPEN
    assert b.snapshot().reason == "3 probes got no reply"


async def test_results_of_requests_sent_before_it_opened_change_nothing_while_open() -> None:
    clock = ManualClock()
    b = breaker(clock)
    await open_it(clock, b)
    for _ in range(10):
        b.record_success()
        b.record_failure(FailureKind.SERVER_ERROR)
    assert b.state is BreakerState.OPEN and b.retry_in_s() == 5.0


async def test_lost_probes_are_replaced_after_the_probe_timeout() -> None:
    clock = ManualClock()
    b = breaker(clock, probe_timeout_s=2.0)
    await open_it(clock, b)
    await clock.advance(5.0)
    for _ in range(3):
        assert b.allow()  # probes that never report back
    await clock.advance(2.0 - 1e-9)
    assert not b.allow()
    await clock.advance(1e-9)
    assert b.allow()


async def test_snapshot_exports_state_for_health() -> None:
    clock = ManualClock()
    b = breaker(clock)
    for _ in range(20):
        b.record_failure(FailureKind.CONNECTION)
    snap = b.snapshot()
    assert (snap.state, snap.last_failure, snap.retry_in_s, snap.opened_total) == (
        BreakerState.OPEN,
        "venue unreachable or refused, not sent",
        5.0,
        1,
    )
    assert snap.reason == (
        "20 of 20 calls failed in the last 10 s; last: venue unreachable or refused, not sent"
    )


async def test_the_limits_settings_build_it() -> None:
    b = CircuitBreaker.from_settings(
        "a",
        LimitsSettings(
            breaker_failure_rate=0.6,
            breaker_min_calls=7,
            breaker_window_s=4.0,
            breaker_cooldown_s=2.0,
            breaker_probes=2,
        ),
        ManualClock(),
    )
    assert (b.failure_rate, b.min_calls, b.window_s, b.cool_down_s, b.probes) == (
        0.6,
        7,
        4.0,
        2.0,
        2,
    )


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="failure rate"):
        CircuitBreaker("a", failure_rate=0)
    with pytest.raises(ConfigError, match="min calls"):
        CircuitBreaker("a", min_calls=0)
    with pytest.raises(ConfigError, match="window"):
        CircuitBreaker("a", window_s=0)
    with pytest.raises(ConfigError, match="cool-down"):
        CircuitBreaker("a", cool_down_s=10.0, max_cool_down_s=5.0)


async def test_accepting_says_whether_a_call_would_go_without_taking_a_probe_slot() -> None:
    clock = ManualClock()
    b = breaker(clock, probes=1)
    assert b.accepting
    await open_it(clock, b)
    assert not b.accepting
    await clock.advance(5.0)
    assert b.accepting and b.state is BreakerState.OPEN  # cooled down: the next call probes
    assert b.allow()
    assert not b.accepting  # the one probe slot is taken
    b.record_success()
    assert b.accepting and b.state is BreakerState.CLOSED


async def test_failing_says_the_venue_is_down_before_the_breaker_can_open() -> None:
    """/health reads ``failing()``: three 5xx/unreachable calls in a row with none answered since
    mean the venue is down, though far fewer calls than ``min_calls`` were made; an answer, a
    429, a dropped reply or a quiet window longer than the window says nothing of the kind."""
    clock = ManualClock()
    b = breaker(clock)
    for kind in (FailureKind.SERVER_ERROR, FailureKind.CONNECTION):
        result(b, kind)
    assert b.failing() == 0  # two in a row: not yet
    result(b, FailureKind.RATE_LIMITED)
    result(b, FailureKind.NO_REPLY)
    assert b.failing() == 0  # load and silence do not count
    result(b, FailureKind.SERVER_ERROR)
    assert b.failing() == 3 and b.state is BreakerState.CLOSED
    await clock.advance(10.5)
    assert b.failing() == 0  # nothing heard for longer than the window: no verdict
    result(b, FailureKind.SERVER_ERROR)
    assert b.failing() == 4
    result(b, OK)
    assert b.failing() == 0
