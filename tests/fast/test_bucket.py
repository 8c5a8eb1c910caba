"""Token bucket behaviour, on both implementations. Time is an argument: no clocks, no sleeps."""

from __future__ import annotations

from types import ModuleType

import pytest

from tests.fast.impls import BUCKET

S = 1_000_000_000


@pytest.fixture(params=sorted(BUCKET))
def b(request: pytest.FixtureRequest) -> ModuleType:
    return BUCKET[request.param]


def test_margin_takes_whole_tokens_when_the_limit_is_large(b: ModuleType) -> None:
    bucket = b.TokenBucket(100, 60.0, 0.1)
    assert (bucket.capacity, bucket.interval_ns) == (90, 60 * S)


def test_margin_takes_time_when_the_limit_is_small(b: ModuleType) -> None:
    bucket = b.TokenBucket(2, 1.0, 0.1)
    assert bucket.capacity == 2
    assert bucket.interval_ns == 1_111_111_112  # 2 per 1.11 s = 1.8/s, 90 % of the limit


def test_burst_is_capped_then_each_token_returns_one_interval_after_it_was_spent(
    b: ModuleType,
) -> None:
    bucket = b.TokenBucket(10, 1.0, 0.0)
    t0 = 5 * S
    assert [bucket.try_acquire(t0 + i) for i in range(12)] == [True] * 10 + [False] * 2
    assert bucket.available(t0 + 100) == 0
    assert bucket.wait_ns(t0 + 100) == S - 100
    assert not bucket.try_acquire(t0 + S - 1)
    assert bucket.try_acquire(t0 + S)  # the first token spent at t0 is back
    assert not bucket.try_acquire(t0 + S)  # the second was spent at t0 + 1
    assert bucket.available(t0 + 2 * S) == 10


def test_no_window_of_one_interval_ever_holds_more_than_capacity(b: ModuleType) -> None:
    bucket = b.TokenBucket(5, 1.0, 0.0)
    granted = [t for t in range(0, 10 * S, S // 50) if bucket.try_acquire(t)]
    for i, t in enumerate(granted):
        assert sum(1 for u in granted[i:] if u < t + S) <= 5
    assert len(granted) == 50  # and the full sustained rate is used


def test_pause_refuses_until_the_retry_after_and_never_shortens(b: ModuleType) -> None:
    bucket = b.TokenBucket(10, 1.0, 0.0)
    bucket.pause_until(3 * S)
    bucket.pause_until(2 * S)
    assert bucket.paused_until_ns == 3 * S
    assert not bucket.try_acquire(3 * S - 1)
    assert bucket.wait_ns(S) == 2 * S
    assert bucket.available(S) == 0
    assert bucket.try_acquire(3 * S)


def test_exhaust_makes_the_next_token_one_interval_away(b: ModuleType) -> None:
    bucket = b.TokenBucket(10, 1.0, 0.0)
    bucket.exhaust(7 * S)
    assert bucket.wait_ns(7 * S) == S
    assert not bucket.try_acquire(8 * S - 1)
    assert bucket.try_acquire(8 * S)


def test_near_limit_reports_when_the_alert_share_was_spent_within_an_interval(
    b: ModuleType,
) -> None:
    bucket = b.TokenBucket(10, 1.0, 0.0, 0.8)
    for i in range(7):
        bucket.try_acquire(i)
    assert not bucket.near_limit(10)
    bucket.try_acquire(8)
    assert bucket.near_limit(10)
    assert not bucket.near_limit(S + 100)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 1.0), "whole number of requests"),
        ((2.5, 1.0), "whole number of requests"),
        ((5, 0.0), "positive number of seconds"),
        ((5, 1.0, 1.0), "safety margin"),
    ],
)
def test_bad_limits_are_refused_with_a_clear_error(
    b: ModuleType, args: tuple[object, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        b.TokenBucket(*args)


def test_available_counts_exactly_the_tokens_returned_on_a_large_lifted_limit(
    b: ModuleType,
) -> None:
    # available() is read every second per route by the health loop: on a 1,000,000/s limit it
    # must count by binary search, and count right at every boundary.
    bucket = b.TokenBucket(1_000_000, 1.0, 0.1)
    cap = bucket.capacity
    assert bucket.available(0) == cap
    t0 = 10 * S
    spends = [t0 + i * 1000 for i in range(5000)]  # 5,000 spends 1 µs apart
    assert all(bucket.try_acquire(t) for t in spends)
    assert bucket.available(spends[-1]) == cap - 5000
    # Exactly one interval after the k-th spend, k + 1 of them have returned.
    for k in (0, 1, 2499, 4998, 4999):
        now = spends[k] + bucket.interval_ns
        returned = sum(1 for t in spends if now - t >= bucket.interval_ns)
        assert returned == k + 1
        assert bucket.available(now) == cap - 5000 + returned
    bucket.exhaust(t0 + S)
    assert bucket.available(t0 + S) == 0
    assert bucket.available(t0 + S + bucket.interval_ns) == cap


def test_a_held_token_returns_one_interval_after_its_reply_not_after_its_send(
    b: ModuleType,
) -> None:
    bucket = b.TokenBucket(2, 1.0, 0.0)
    assert bucket.take(0) and bucket.take(0)
    assert bucket.in_flight == 2
    assert not bucket.take(5 * S)  # both still in flight: no reply, no token back
    assert bucket.available(5 * S) == 0
    assert bucket.near_limit(5 * S)
    bucket.give_back(5 * S)  # the first reply, five seconds late
    assert bucket.in_flight == 1
    assert not bucket.take(6 * S - 1)
    assert bucket.wait_ns(5 * S) == S
    assert bucket.take(6 * S)
    bucket.give_back(6 * S)
    bucket.give_back(6 * S)
    bucket.give_back(6 * S)  # one more than held: nothing happens
    assert bucket.in_flight == 0
    assert bucket.available(7 * S) == 2


def test_every_token_in_flight_waits_at_least_an_interval(b: ModuleType) -> None:
    bucket = b.TokenBucket(3, 1.0, 0.0)
    for _ in range(3):
        assert bucket.take(0)
    assert bucket.wait_ns(10 * S) == S  # unknown until a reply: the least it can be


def _arrivals_in_one_window(arrivals: list[int], window: int) -> int:
    """The most arrivals any sliding window of ``window`` ns holds (the venue's count)."""
    arrivals = sorted(arrivals)
    return max(sum(1 for u in arrivals[i:] if u < t + window) for i, t in enumerate(arrivals))


def _burst(b: ModuleType, hold: bool) -> list[int]:
    """A burst at a window edge: the first batch is slow (it reaches the venue just before its
    reply, 900 ms after it was sent), the next is fast (it arrives 10 ms after it was sent).
    Returns when each request reached the venue."""
    bucket = b.TokenBucket(10, 1.0, 0.0)
    arrivals: list[int] = []
    replies: list[int] = []
    now = 0
    sent = 0
    while sent < 30:
        while replies and replies[0] <= now:
            replies.pop(0)
            if hold:
                bucket.give_back(now)
        granted = bucket.take(now) if hold else bucket.try_acquire(now)
        if granted:
            slow = sent < 10
            arrivals.append(now + (900 if slow else 10) * 1_000_000)
            replies.append(now + (1000 if slow else 20) * 1_000_000)
            replies.sort()
            sent += 1
        else:
            now += 1_000_000  # 1 ms steps
    return arrivals


def test_a_burst_at_a_window_edge_never_puts_more_than_the_limit_into_a_venue_window(
    b: ModuleType,
) -> None:
    # Counted only at send time, slow-then-fast replies pack 20 arrivals into one second...
    assert _arrivals_in_one_window(_burst(b, hold=False), S) > 10
    # ...counted until the reply, never more than the limit, whatever the latencies.
    assert _arrivals_in_one_window(_burst(b, hold=True), S) <= 10


def test_ready_is_a_completed_awaitable_that_never_suspends(b: ModuleType) -> None:
    # The rate gate's fast path returns it for a free token: awaiting it must give None at once,
    # every time (the same object is awaited by every granted request).
    async def await_it_three_times() -> list[object]:
        return [await b.READY, await b.READY, await b.READY]

    coro = await_it_three_times()
    with pytest.raises(StopIteration) as done:
        coro.send(None)  # one step, no event loop: it would yield here if READY suspended
    assert done.value.value == [None, None, None]
    assert isinstance(b.READY, b.Ready)
