"""Per-account circuit breaker: stop sending to a venue that is down, not to one that is noisy.

CLOSED: requests flow, and every result lands in a sliding window of ``window_s`` (ten buckets).
The breaker opens when, over that window, at least ``min_calls`` calls were made and the failed
share of them reaches ``failure_rate``. What counts (docs/execution.md, "The circuit breaker"):

* the venue answered (an acceptance or a business rejection): a call, no failure;
* a 5xx reply, a connection refused or a request that could not be sent: one failure;
* a 429: a quarter of a failure (the rate gate pauses the route; a 429 is a sign of load, not of
  an outage, so 429s alone never open the breaker);
* a request written with no reply (dropped connection, timeout): ambiguous, a call but no
  failure while any call in the window was answered; when none was (the venue answers nothing),
  every one of them counts as a failure.

OPEN: :meth:`CircuitBreaker.check` raises :class:`engine.model.errors.CircuitOpen` at once (the
request is never sent, so its outcome is a definitive local refusal). Results of requests sent
before it opened change nothing while it is open. After the cool-down, HALF_OPEN lets up to
``probes`` probe calls through at a time: ``probes`` answered probes close it; a failed probe (or,
with none answered, ``probes`` silent ones) reopens it with the cool-down doubled, up to
``max_cool_down_s``. Probes that never report back are replaced after ``probe_timeout_s``, so the
breaker cannot stick half-open.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass

from engine.execution.settings import LimitsSettings
from engine.model.clock import LIVE, Clock
from engine.model.errors import CircuitOpen, ConfigError

log = logging.getLogger(__name__)

__all__ = ["BreakerSnapshot", "BreakerState", "CircuitBreaker", "FailureKind"]

_BUCKETS = 10  # the window slides in tenths
THROTTLE_WEIGHT = 0.25  # a 429 counts as this much of a failure


class BreakerState(enum.IntEnum):
    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2

    @property
    def wire(self) -> str:
        return self.name.lower()


class FailureKind(enum.IntEnum):
    RATE_LIMITED = 0  # HTTP 429: a quarter of a failure
    SERVER_ERROR = 1  # a 5xx reply: a failure
    TIMEOUT = 2  # written, no reply in time: ambiguous
    CONNECTION = 3  # refused, or not sent at all: a failure
    NO_REPLY = 4  # written, the connection dropped before a reply: ambiguous

    @property
    def text(self) -> str:
        return _FAILURE_TEXT[self]


_FAILURE_TEXT = {
    FailureKind.RATE_LIMITED: "429 rate limited",
    FailureKind.SERVER_ERROR: "5xx server error",
    FailureKind.TIMEOUT: "timeout",
    FailureKind.CONNECTION: "venue unreachable or refused, not sent",
    FailureKind.NO_REPLY: "no reply",
}
_AMBIGUOUS = frozenset({FailureKind.TIMEOUT, FailureKind.NO_REPLY})


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """The breaker's state for /health and metrics."""

    account: str
    state: BreakerState
    calls: int  # calls in the window now
    failed: float  # of which failed, as the opening rule counts them
    opened_total: int
    rejected_total: int
    retry_in_s: float  # until the next probe may go (0 unless open)
    last_failure: str | None
    reason: str | None  # why it last opened


class CircuitBreaker:
    """One account's breaker. Single event loop; time from the injected ``clock``."""

    def __init__(
        self,
        account: str,
        *,
        failure_rate: float = 0.5,
        min_calls: int = 20,
        window_s: float = 10.0,
        cool_down_s: float = 5.0,
        max_cool_down_s: float = 60.0,
        probes: int = 3,
        probe_timeout_s: float = 30.0,
        clock: Clock = LIVE,
        on_change: Callable[[BreakerState], None] | None = None,
    ) -> None:
        if not 0 < failure_rate <= 1:
            raise ConfigError(f"breaker failure rate must be in (0, 1], got {failure_rate}")
        if min_calls < 1 or probes < 1:
            raise ConfigError(
                f"breaker min calls and probes must be >= 1, got {min_calls} and {probes}"
            )
        if not window_s > 0:
            raise ConfigError(f"breaker window must be > 0 s, got {window_s}")
        if not cool_down_s > 0 or max_cool_down_s < cool_down_s:
            raise ConfigError(
                f"breaker cool-down must be > 0 and <= its maximum, got {cool_down_s}"
                f" (max {max_cool_down_s})"
            )
        self.account = account
        self.failure_rate = failure_rate
        self.min_calls = min_calls
        self.window_s = window_s
        self.cool_down_s = cool_down_s
        self.probes = probes
        self._base_cool_ns = int(cool_down_s * 1e9)
        self._max_cool_ns = int(max_cool_down_s * 1e9)
        self._probe_timeout_ns = int(probe_timeout_s * 1e9)
        self._now_ns = clock.monotonic_ns
        self._on_change = on_change
        self.state = BreakerState.CLOSED
        self.opened_total = 0
        self.rejected_total = 0
        self._cool_ns = self._base_cool_ns
        self._open_until = 0
        self._last_failure: FailureKind | None = None
        # Failures (5xx, unreachable) since the last answered call, and when the last one was:
        # what /health reads to say "down" before enough calls were made to open the breaker.
        self.failing_streak = 0
        self._streak_ns = 0
        self._reason: str | None = None
        # The window: per bucket, calls, answered calls, failures (weighted) and ambiguous
        # calls; the totals are their sums, kept so reading the rate costs nothing.
        self._bucket_ns = max(1, int(window_s * 1e9) // _BUCKETS)
        self._calls = [0] * _BUCKETS
        self._answered = [0] * _BUCKETS
        self._failed = [0.0] * _BUCKETS
        self._ambiguous = [0] * _BUCKETS
        self._n_calls = 0
        self._n_answered = 0
        self._n_failed = 0.0
        self._n_ambiguous = 0
        self._bucket = self._now_ns() // self._bucket_ns  # the bucket number now
        # Half-open: probes out, answered, silent, and when the last one went.
        self._probes_out = 0
        self._probe_ok = 0
        self._probe_silent = 0
        self._probe_started = 0

    @classmethod
    def from_settings(
        cls, account: str, limits: LimitsSettings, clock: Clock = LIVE
    ) -> CircuitBreaker:
        return cls(
            account,
            failure_rate=limits.breaker_failure_rate,
            min_calls=limits.breaker_min_calls,
            window_s=limits.breaker_window_s,
            cool_down_s=limits.breaker_cooldown_s,
            probes=limits.breaker_probes,
            clock=clock,
        )

    # -- the gate ------------------------------------------------------------------------------

    def allow(self) -> bool:
        """True when a request may go now (in HALF_OPEN, the caller becomes a probe)."""
        if self.state is BreakerState.CLOSED:
            return True
        now = self._now_ns()
        if self.state is BreakerState.OPEN:
            if now < self._open_until:
                return False
            self._probes_out = self._probe_ok = self._probe_silent = 0
            self._set(BreakerState.HALF_OPEN)
        if self._probes_out >= self.probes:
            if now - self._probe_started < self._probe_timeout_ns:
                return False
            self._probes_out = 0  # the probes out never reported back: send others
        self._probes_out += 1
        self._probe_started = now
        return True

    @property
    def accepting(self) -> bool:
        """Whether a request would be let through now, without taking a probe slot: closed, cooled
        down, or half-open with a probe slot free. A pool picks an account by this, so an account
        whose cool-down ended gets the call that probes it (by ``state`` alone, it never would)."""
        if self.state is BreakerState.CLOSED:
            return True
        now = self._now_ns()
        if self.state is BreakerState.OPEN:
            return now >= self._open_until
        return self._probes_out < self.probes or now - self._probe_started >= self._probe_timeout_ns

    def check(self, route: str | None = None) -> None:
        """Raise :class:`CircuitOpen` unless a request may go now."""
        if self.state is BreakerState.CLOSED or self.allow():
            return
        self.rejected_total += 1
        retry_in = self.retry_in_s()
        raise CircuitOpen(
            f"account {self.account}: circuit breaker is {self.state.wire} ({self._reason});"
            f" request not sent, next probe in {retry_in:.1f}s",
            account=self.account,
            route=route,
            retry_in=retry_in,
        )

    # -- results -------------------------------------------------------------------------------

    def record_success(self) -> None:
        """The venue answered (including a business rejection)."""
        self.failing_streak = 0
        state = self.state
        if state is BreakerState.CLOSED:
            now = self._now_ns()
            if now // self._bucket_ns != self._bucket:
                self._slide(now)
            i = self._bucket % _BUCKETS
            self._calls[i] += 1
            self._answered[i] += 1
            self._n_calls += 1
            self._n_answered += 1
        elif state is BreakerState.HALF_OPEN:
            self._probe_done()
            self._probe_ok += 1
            if self._probe_ok >= self.probes:
                self._cool_ns = self._base_cool_ns
                self._clear_window()
                self._set(BreakerState.CLOSED)

    def record_failure(self, kind: FailureKind = FailureKind.SERVER_ERROR) -> None:
        """The venue did not answer this call well; ``kind`` says how (and how much it counts)."""
        self._last_failure = kind
        if kind is FailureKind.SERVER_ERROR or kind is FailureKind.CONNECTION:
            self.failing_streak += 1
            self._streak_ns = self._now_ns()
        if self.state is BreakerState.CLOSED:
            now = self._now_ns()
            if now // self._bucket_ns != self._bucket:
                self._slide(now)
            i = self._bucket % _BUCKETS
            self._calls[i] += 1
            self._n_calls += 1
            if kind in _AMBIGUOUS:
                self._ambiguous[i] += 1
                self._n_ambiguous += 1
            else:
                weight = THROTTLE_WEIGHT if kind is FailureKind.RATE_LIMITED else 1.0
                self._failed[i] += weight
                self._n_failed += weight
            if self._n_calls >= self.min_calls:
                failed = self.failed_in_window()
                if failed >= self.failure_rate * self._n_calls:
                    self._reason = (
                        f"{failed:g} of {self._n_calls} calls failed in the last"
                        f" {self.window_s:g} s; last: {kind.text}"
                    )
                    self._open(self._base_cool_ns)
        elif self.state is BreakerState.HALF_OPEN:
            self._probe_done()
            if kind is FailureKind.RATE_LIMITED:
                return  # the rate gate's business: no verdict on the venue's health
            if kind in _AMBIGUOUS:
                self._probe_silent += 1
                if self._probe_ok or self._probe_silent < self.probes:
                    return
                self._reason = f"{self._probe_silent} probes got no reply"
            else:
                self._reason = f"a probe failed: {kind.text}"
            self._open(min(self._cool_ns * 2, self._max_cool_ns))

    def record_status(self, status: int) -> None:
        """Classify an HTTP status: 429 and 5xx are failures, anything else the venue answered."""
        if status == 429:
            self.record_failure(FailureKind.RATE_LIMITED)
        elif status >= 500:
            self.record_failure(FailureKind.SERVER_ERROR)
        else:
            self.record_success()

    # -- observation ---------------------------------------------------------------------------

    def failed_in_window(self) -> float:
        """The failures the opening rule counts in the window now (ambiguous calls count only
        while no call in the window was answered)."""
        if self._n_answered:
            return self._n_failed
        return self._n_failed + self._n_ambiguous

    def failing(self, at_least: int = 3) -> int:
        """The number of calls that failed in a row (5xx or unreachable, none answered since),
        when at least ``at_least`` did and the last one is within the window; else 0."""
        if self.failing_streak < at_least:
            return 0
        if self._now_ns() - self._streak_ns > self.window_s * 1e9:
            return 0
        return self.failing_streak

    def retry_in_s(self) -> float:
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0, self._open_until - self._now_ns()) / 1e9

    def snapshot(self) -> BreakerSnapshot:
        if self.state is BreakerState.CLOSED:
            self._slide(self._now_ns())
        return BreakerSnapshot(
            account=self.account,
            state=self.state,
            calls=self._n_calls,
            failed=self.failed_in_window(),
            opened_total=self.opened_total,
            rejected_total=self.rejected_total,
            retry_in_s=self.retry_in_s(),
            last_failure=None if self._last_failure is None else self._last_failure.text,
            reason=self._reason,
        )

    # -- the window ----------------------------------------------------------------------------

    def _slide(self, now: int) -> None:
        """Move the window to ``now``: the buckets it leaves are forgotten."""
        bucket = now // self._bucket_ns
        for b in range(max(self._bucket + 1, bucket - _BUCKETS + 1), bucket + 1):
            i = b % _BUCKETS
            self._n_calls -= self._calls[i]
            self._n_answered -= self._answered[i]
            self._n_failed -= self._failed[i]
            self._n_ambiguous -= self._ambiguous[i]
            self._calls[i] = self._answered[i] = self._ambiguous[i] = 0
            self._failed[i] = 0.0
        if bucket > self._bucket:
            self._bucket = bucket

    def _clear_window(self) -> None:
        for i in range(_BUCKETS):
            self._calls[i] = self._answered[i] = self._ambiguous[i] = 0
            self._failed[i] = 0.0
        self._n_calls = self._n_answered = self._n_ambiguous = 0
        self._n_failed = 0.0
        self._bucket = self._now_ns() // self._bucket_ns

    # -- transitions ---------------------------------------------------------------------------

    def _probe_done(self) -> None:
        if self._probes_out:
            self._probes_out -= 1

    def _open(self, cool_ns: int) -> None:
        self._cool_ns = cool_ns
        self._open_until = self._now_ns() + cool_ns
        self.opened_total += 1
        self._clear_window()
        self._set(BreakerState.OPEN)

    def _set(self, state: BreakerState) -> None:
        if state is self.state:
            return
        self.state = state
        if state is BreakerState.OPEN:
            log.warning(
                "account %s: circuit breaker opened (%s); probing again in %.1fs",
                self.account,
                self._reason,
                self._cool_ns / 1e9,
            )
        elif state is BreakerState.CLOSED:
            log.info("account %s: circuit breaker closed, the venue is answering", self.account)
        else:
            log.info(
                "account %s: circuit breaker half-open, sending up to %d probes",
                self.account,
                self.probes,
            )
        if self._on_change is not None:
            self._on_change(state)
