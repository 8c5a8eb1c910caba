"""The health pass: every second, each account's auth, stream, breaker and limiter into the health
board (``/health``, ``tl_component_healthy``) and each rate-limit bucket's use into its gauges.

With hundreds of accounts the pass is real work (every account, every route of its gate), and it
runs on the event loop beside the order path, so it is cheap and cut in slices:

* the gate is read through :meth:`AccountLimiter.bucket_use` (a utilisation per budgeted route),
  not ``stats()``, which builds a ``RouteStats`` per route and counts its queue and in-flight;
* the gauges go through :meth:`Metrics.set_rate_uses`, which builds and checks each label key once
  and sets nothing when the value did not change; the board checks a detail for secrets only
  when it changed;
* after every :data:`SLICE_ACCOUNTS` accounts the pass yields to the loop, so a signal arriving
  during a pass waits for one slice, not for the whole pass (``bench/RESULTS.md`` has the times).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from engine.execution.accounts import Accounts
from engine.execution.breaker import BreakerState, CircuitBreaker
from engine.observability.metrics import Metrics
from engine.state.live import LiveState

# Accounts per slice: with the TradeLocker adapter's 18 budgeted routes an account costs about
# 10-20 us, so a slice of 8 stays within a few hundred microseconds.
SLICE_ACCOUNTS = 8


async def report_health(
    accounts: Accounts, streams: Sequence[LiveState], metrics: Metrics, interval_s: float = 1.0
) -> None:
    """The daemon's health task: a pass every ``interval_s`` (run as a task; cancel to stop)."""
    stream_of = {v.alias: live for live in streams for v in live.accounts()}
    while True:
        await health_pass(accounts, stream_of, metrics)
        await asyncio.sleep(interval_s)


async def health_pass(
    accounts: Accounts,
    stream_of: Mapping[str, LiveState],
    metrics: Metrics,
    slice_accounts: int = SLICE_ACCOUNTS,
) -> None:
    """One pass over every enabled account, yielding to the loop every ``slice_accounts``."""
    board = metrics.health
    set_uses = metrics.set_rate_uses
    done = 0
    # A copy: the accounts may change (a reload) while the pass is between slices.
    for alias, session in list(accounts.sessions.items()):
        if not session.enabled:
            continue
        h = session.refresh_health()
        board.set(alias, "auth", "ok" if h.auth_ok else "failed", h.auth_ok)
        live = stream_of.get(alias)
        if live is None:
            board.set(alias, "stream", "not configured", True, "REST only")
        else:
            h.stream_ok = live.is_live
            board.set(alias, "stream", live.phase.value, h.stream_ok, live.last_error)
        breaker = session.breaker
        state = breaker.state.wire if breaker is not None else "none"
        failing = all_failing(breaker)
        if failing:
            board.set(alias, "breaker", f"{state}, calls failing", False, failing)
        else:
            board.set(alias, "breaker", state, not h.breaker_open)
        gate = session.gate
        board.set(
            alias,
            "limiter",
            f"{h.rate_utilisation:.0%} of PLACE_ORDER",
            True,
            "queued" if gate is not None and gate.queued() else "",
        )
        if gate is not None:
            set_uses(alias, gate.bucket_use())
        done += 1
        if done % slice_accounts == 0:
            await asyncio.sleep(0)


def all_failing(breaker: CircuitBreaker | None) -> str:
    """Why the venue looks down while the breaker is still closed (too few calls to open it):
    the last calls all failed and none was answered since; "" otherwise. A REST-only engine with
    light traffic would otherwise say healthy through a whole outage."""
    if breaker is None or breaker.state is not BreakerState.CLOSED:
        return ""
    failed = breaker.failing()
    if not failed:
        return ""
    return f"the last {failed} venue calls failed and none was answered since"
