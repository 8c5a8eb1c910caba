"""The gate's light read for the rate-limit gauges (``bucket_use``) says what ``stats()`` says of
the same routes: the budgeted ones, each with its utilisation. Driven by a manual clock."""

from __future__ import annotations

import pytest

from engine.execution.limits import AccountLimiter
from engine.model.domain import RateLimit
from tests.limits.manual_time import ManualTime

MS = 1_000_000


def _compare(lim: AccountLimiter) -> dict[str, float]:
    use = dict(lim.bucket_use())
    from_stats = {st.route: st.utilisation for st in lim.stats() if st.capacity}
    assert use.keys() == from_stats.keys()
    for route, value in use.items():
        assert value == pytest.approx(from_stats[route]), route
    return use


def test_bucket_use_follows_the_budgeted_routes_as_stats_does() -> None:
    t = ManualTime()
    limits = [
        RateLimit("PLACE_ORDER", 4, 1.0),
        RateLimit("QUOTES", 10, 1.0),  # two windows on one route: the tighter one counts
        RateLimit("QUOTES", 20, 60.0),
    ]
    lim = AccountLimiter("a1", limits, share=1.0, clock=t.clock, call_later=t.call_later)
    lim.on_rate_limited("GET_ORDERS", 1.0)  # an unbudgeted route with trouble: in stats only
    assert {st.route for st in lim.stats()} == {"PLACE_ORDER", "QUOTES", "GET_ORDERS"}
    assert _compare(lim) == {"PLACE_ORDER": 0.0, "QUOTES": 0.0}

    assert lim.try_acquire("PLACE_ORDER") and lim.try_acquire("PLACE_ORDER")
    for _ in range(10):
        assert lim.try_acquire("QUOTES")
    assert not lim.try_acquire("QUOTES")
    use = _compare(lim)
    assert use["PLACE_ORDER"] == pytest.approx(0.5)
    assert use["QUOTES"] == pytest.approx(1.0)  # the per-second window of 10 is spent

    t.advance(1000 * MS)  # the per-second windows refill; the per-minute one does not
    use = _compare(lim)
    assert use["PLACE_ORDER"] == pytest.approx(0.0)
    assert use["QUOTES"] == pytest.approx(10 / 20, abs=0.01)
