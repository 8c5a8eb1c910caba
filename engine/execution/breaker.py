"""Per-account circuit breaker: stop hammering a venue that is refusing or failing.

CLOSED: requests flow; ``failure_threshold`` consecutive failures (429, 5xx, timeouts, dropped
connections) open it. OPEN: :meth:`CircuitBreaker.check` raises
:class:`engine.model.errors.CircuitOpen` at once (the request is never sent, so its outcome is a
definitive local refusal). After the cool-down, HALF_OPEN lets exactly one probe through; its
success closes the breaker, its failure re-opens it with a doubled cool-down (capped). A probe
whose result never comes back (the caller crashed) is replaced after ``probe_timeout_s`` so the
breaker cannot stick half-open.

A business rejection (the venue said no to an order) is a success here: the venue is answering.
Results of requests sent before the breaker opened change nothing while it is open.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from engine.model.errors import CircuitOpen, ConfigError

log = logging.getLogger(__name__)

__all__ = ["BreakerSnapshot", "BreakerState", "CircuitBreaker", "FailureKind"]


class BreakerState(enum.IntEnum):
    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2

    @property
    def wire(self) -> str:
        return self.name.lower()


class FailureKind(enum.IntEnum):
    RATE_LIMITED = 0  # HTTP 429
    SERVER_ERROR = 1  # HTTP 5xx
    TIMEOUT = 2
    CONNECTION = 3  # refused, reset, dropped

    @property
    def text(self) -> str:
        return _FAILURE_TEXT[self]


_FAILURE_TEXT = {
    FailureKind.RATE_LIMITED: "429 rate limited",
    FailureKind.SERVER_ERROR: "5xx server error",
    FailureKind.TIMEOUT: "timeout",
    FailureKind.CONNECTION: "connection failure",
}


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """The breaker's state for /health and metrics."""

    account: str
    state: BreakerState
    consecutive_failures: int
    opened_total: int
    rejected_total: int
    retry_in_s: float  # until the next probe may go (0 unless open)
    last_failure: str | None


class CircuitBreaker:
    """One account's breaker. Single event loop; ``clock`` returns monotonic nanoseconds."""

    def __init__(
        self,
        account: str,
        *,
        failure_threshold: int = 5,
        cool_down_s: float = 5.0,
        max_cool_down_s: float = 60.0,
        probe_timeout_s: float = 30.0,
        clock: Callable[[], int] = time.monotonic_ns,
        on_change: Callable[[BreakerState], None] | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ConfigError(f"breaker failure threshold must be >= 1, got {failure_threshold}")
        if not cool_down_s > 0 or max_cool_down_s < cool_down_s:
            raise ConfigError(
                f"breaker cool-down must be > 0 and <= its maximum, got {cool_down_s}"
                f" (max {max_cool_down_s})"
            )
        self.account = account
        self.failure_threshold = failure_threshold
        self.cool_down_s = cool_down_s
        self._base_cool_ns = int(cool_down_s * 1e9)
        self._max_cool_ns = int(max_cool_down_s * 1e9)
        self._probe_timeout_ns = int(probe_timeout_s * 1e9)
        self._clock = clock
        self._on_change = on_change
        self.state = BreakerState.CLOSED
        self.consecutive_failures = 0
        self.opened_total = 0
        self.rejected_total = 0
        self._cool_ns = self._base_cool_ns
        self._open_until = 0
        self._probe_started = 0
        self._last_failure: FailureKind | None = None

    # -- the gate ------------------------------------------------------------------------------

    def allow(self) -> bool:
        """True when a request may go now (in HALF_OPEN, the caller becomes the probe)."""
        if self.state is BreakerState.CLOSED:
            return True
        now = self._clock()
        if self.state is BreakerState.OPEN:
            if now < self._open_until:
                return False
            self._set(BreakerState.HALF_OPEN)
            self._probe_started = now
            return True
        if now - self._probe_started >= self._probe_timeout_ns:
            self._probe_started = now  # the last probe never reported back: send another
            return True
        return False

    def check(self, route: str | None = None) -> None:
        """Raise :class:`CircuitOpen` unless a request may go now."""
        if self.state is BreakerState.CLOSED or self.allow():
            return
        self.rejected_total += 1
        retry_in = self.retry_in_s()
        last = self._last_failure.text if self._last_failure is not None else "failures"
        raise CircuitOpen(
            f"account {self.account}: circuit breaker is {self.state.wire} after"
            f" {self.consecutive_failures} consecutive venue failures (last: {last}); request not"
            f" sent, next probe in {retry_in:.1f}s",
            account=self.account,
            route=route,
            retry_in=retry_in,
        )

    # -- results -----------------------------------------------------------------------------

    def record_success(self) -> None:
        """The venue answered (including a business rejection)."""
        if self.state is BreakerState.CLOSED:
            self.consecutive_failures = 0
        elif self.state is BreakerState.HALF_OPEN:
            self.consecutive_failures = 0
            self._cool_ns = self._base_cool_ns
            self._set(BreakerState.CLOSED)

    def record_failure(self, kind: FailureKind = FailureKind.SERVER_ERROR) -> None:
        """The venue failed: 429, 5xx, timeout or a dropped connection."""
        self._last_failure = kind
        self.consecutive_failures += 1
        if self.state is BreakerState.CLOSED:
            if self.consecutive_failures >= self.failure_threshold:
                self._open(self._base_cool_ns)
        elif self.state is BreakerState.HALF_OPEN:
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

    def retry_in_s(self) -> float:
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0, self._open_until - self._clock()) / 1e9

    def snapshot(self) -> BreakerSnapshot:
        return BreakerSnapshot(
            account=self.account,
            state=self.state,
            consecutive_failures=self.consecutive_failures,
            opened_total=self.opened_total,
            rejected_total=self.rejected_total,
            retry_in_s=self.retry_in_s(),
            last_failure=None if self._last_failure is None else self._last_failure.text,
        )

    # -- transitions -----------------------------------------------------------------------------

    def _open(self, cool_ns: int) -> None:
        self._cool_ns = cool_ns
        self._open_until = self._clock() + cool_ns
        self.opened_total += 1
        self._set(BreakerState.OPEN)

    def _set(self, state: BreakerState) -> None:
        if state is self.state:
            return
        self.state = state
        if state is BreakerState.OPEN:
            log.warning(
                "account %s: circuit breaker opened after %d consecutive venue failures"
                " (last: %s); probing again in %.1fs",
                self.account,
                self.consecutive_failures,
                self._last_failure.text if self._last_failure is not None else "unknown",
                self._cool_ns / 1e9,
            )
        elif state is BreakerState.CLOSED:
            log.info("account %s: circuit breaker closed, the venue is answering", self.account)
        else:
            log.info("account %s: circuit breaker half-open, sending one probe", self.account)
        if self._on_change is not None:
            self._on_change(state)
