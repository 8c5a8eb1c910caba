"""A login's QUOTES pacer shared across engine processes (docs/kafka.md, "Per-login budgets"):
the pace a share gives, rounded to whole requests per venue window, and what a process with no
share still may send. The budgets against the sandbox: tests/kafka/test_login_budget.py."""

from __future__ import annotations

import asyncio

import pytest

from engine.model.errors import ConfigError
from engine.tradelocker.quotes import QuotePacer


def test_alone_the_pace_is_the_rate() -> None:
    assert QuotePacer(4.5).requests_per_second == pytest.approx(4.5)


@pytest.mark.parametrize(
    ("rate", "fraction", "pace"),
    [
        (4.5, 0.5, 2.0),  # 2.25/s would land 3 in some 1 s window: 2 + 2 of 5, not 3 + 3
        (4.5, 1.0, 4.0),  # shared, even whole: 4 per window leaves room for a paused peer's 1
        (45.0, 1 / 3, 15.0),
        (45.0, 2 / 6, 15.0),
        (4.5, 1 / 6, 0.75),  # under one request per window: the share itself
    ],
)
def test_a_share_is_whole_requests_per_window(rate: float, fraction: float, pace: float) -> None:
    pacer = QuotePacer(rate)
    pacer.set_fraction(fraction)
    assert pacer.requests_per_second == pytest.approx(pace)


async def test_without_a_share_the_feed_waits_and_a_one_off_still_gets_a_turn() -> None:
    pacer = QuotePacer(4.5)
    pacer.set_fraction(0.0)
    assert pacer.requests_per_second == 0.0
    resumed = asyncio.ensure_future(pacer.resumed())
    async with asyncio.timeout(10):  # a hang guard: the first turn is free
        await pacer.turn()
    assert pacer.turns == 1
    assert pacer.interval >= pacer.window_s  # at most one a window
    await asyncio.sleep(0)
    assert not resumed.done()
    pacer.set_fraction(0.5)
    async with asyncio.timeout(10):
        await resumed


def test_a_share_outside_0_to_1_is_refused() -> None:
    with pytest.raises(ConfigError):
        QuotePacer(4.5).set_fraction(1.5)
