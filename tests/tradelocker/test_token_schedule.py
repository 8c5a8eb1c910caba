"""When the background refresh is due, for short and long tokens and skewed clocks: the margin
scales with the lifetime and a floor keeps any token from being refreshed in a loop. Against the
sandbox's real JWTs, with the token manager on an injected clock (engine.model.clock.ManualClock)
so the refresh loop's waits are driven by the test."""

from __future__ import annotations

import time

import pytest

from engine.model.clock import ManualClock
from engine.tradelocker.auth import TokenManager
from tests.fixtures.waiting import eventually
from tests.tradelocker.sandbox import EMAIL, PASSWORD, SERVER, running_sandbox


def manager(base_url: str, clock: ManualClock) -> TokenManager:
    return TokenManager(
        base_url, name="demo", email=EMAIL, password=PASSWORD, server=SERVER, clock=clock
    )


@pytest.mark.parametrize(
    ("lifetime_s", "due_after_s"),
    [
        (60.0, 36.0),  # 0.6 of the life; exp - 300 s would be 240 s in the past
        (3600.0, 2160.0),  # unchanged for the documented 1 h token
        (600.0, 360.0),
    ],
)
async def test_the_refresh_is_due_within_the_tokens_life(
    lifetime_s: float, due_after_s: float
) -> None:
    async with running_sandbox(access_token_lifetime_s=lifetime_s) as sandbox:
        clock = ManualClock()  # wall time = the real time: the sandbox's clock
        tokens = manager(sandbox.base_url, clock)
        await tokens.start()
        try:
            await clock.until_sleeping()
            # iat is whole seconds, so the token may have been issued up to 1 s before "now".
            assert tokens.refresh_due_at - clock.time() == pytest.approx(due_after_s, abs=1.5)
            await clock.advance(due_after_s - 5.0)
            assert tokens.health().refresh_count == 0
            await clock.advance(6.5)
            await eventually(lambda: tokens.health().refresh_count == 1, "the due refresh")
            await clock.until_sleeping()
            # And then it waits for the next one. (The sandbox issued the new token by the real
            # clock, which the test's clock has left behind: the floor is what schedules it.)
            assert tokens.health().refresh_count == 1
            assert tokens.refresh_due_at > clock.time()
        finally:
            await tokens.close()


async def test_a_clock_ahead_of_the_venues_does_not_turn_into_a_refresh_storm() -> None:
    # Our clock runs 50 s ahead of the venue's: a fresh 60 s token looks 50 s old, its refresh
    # long overdue by its own iat/exp, and every new token looks the same.
    async with running_sandbox(access_token_lifetime_s=60.0) as sandbox:
        clock = ManualClock(wall_offset_s=time.time() + 50.0)
        tokens = manager(sandbox.base_url, clock)
        await tokens.start()
        try:
            await clock.until_sleeping()
            assert tokens.health().refresh_count == 0  # not refreshed the moment it arrived
            due_in = tokens.refresh_due_at - clock.time()
            assert 0.0 < due_in <= 5.0  # the floor: min(5 s, half the ~10 s it has left)
            await clock.advance(due_in)
            await eventually(lambda: tokens.health().refresh_count == 1, "the floored refresh")
            await clock.until_sleeping()
            assert tokens.health().refresh_count == 1
            assert tokens.refresh_due_at > clock.time()
        finally:
            await tokens.close()
