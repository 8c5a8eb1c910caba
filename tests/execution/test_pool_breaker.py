"""A pool skips a member whose circuit breaker refuses calls, and comes back to it once the
cool-down ends (that call is the probe), so a member that recovered is not left out for good.
The paper venue stands in for the venue: only the breaker's state decides the pick."""

from __future__ import annotations

from engine.execution.accounts import Accounts, AccountSession
from engine.execution.breaker import BreakerState, CircuitBreaker, FailureKind
from engine.execution.settings import AccountSettings, GroupSettings
from engine.model.clock import ManualClock
from engine.venue.paper import PaperVenue

ALIASES = ("a1", "a2")


async def test_a_pool_skips_an_open_breaker_and_returns_to_it_after_the_cool_down() -> None:
    clock = ManualClock()
    venue = PaperVenue(list(ALIASES))
    breakers = {a: CircuitBreaker(a, min_calls=5, cool_down_s=5.0, clock=clock) for a in ALIASES}
    accounts = Accounts(
        [
            AccountSession(AccountSettings(a, "paper", acc_num=i + 1), venue, breaker=breakers[a])
            for i, a in enumerate(ALIASES)
        ],
        [GroupSettings("pool", ("a1", "a2"), mode="pool", balancing="round_robin")],
    )
    for _ in range(5):
        breakers["a1"].record_failure(FailureKind.CONNECTION)
    assert breakers["a1"].state is BreakerState.OPEN
    picked = {accounts.legs(f"s{i}", "pool")[0].session.alias for i in range(4)}
    assert picked == {"a2"}
    await clock.advance(5.0)
    picked = {accounts.legs(f"t{i}", "pool")[0].session.alias for i in range(4)}
    assert picked == {"a1", "a2"}
