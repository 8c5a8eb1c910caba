"""TradeLocker's rate-limit taxonomy: ``/trade/config`` ``rateLimits`` parsing and the route
each engine action spends (engine.tradelocker.rate_limits)."""

from __future__ import annotations

import pytest

from engine.model.domain import Action, RateLimit
from engine.model.errors import ConfigError
from engine.tradelocker.rate_limits import RouteType, parse_rate_limits, routes_for
from engine.tradelocker.venue import TradeLockerVenue

CONFIG = [
    {"rateLimitType": "PLACE_ORDER", "measure": "SECONDS", "intervalNum": 1, "limit": 10},
    {"rateLimitType": "MODIFY_ORDER", "measure": "SECONDS", "intervalNum": 1, "limit": 5},
    {"rateLimitType": "GET_ORDERS", "measure": "MINUTES", "intervalNum": 1, "limit": 60},
    {"rateLimitType": "SOMETHING_NEW", "measure": "SECONDS", "intervalNum": 1, "limit": 1},
]


def test_rate_limits_parse_from_trade_config_and_skip_unknown_types() -> None:
    limits = parse_rate_limits(CONFIG)
    assert limits == [
        RateLimit(RouteType.PLACE_ORDER, 10, 1.0),
        RateLimit(RouteType.MODIFY_ORDER, 5, 1.0),
        RateLimit(RouteType.GET_ORDERS, 60, 60.0),
    ]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"rateLimitType": "PLACE_ORDER", "measure": "DAYS", "intervalNum": 1, "limit": 1},
            r"rateLimits\[0\]\.measure",
        ),
        (
            {"rateLimitType": "PLACE_ORDER", "measure": "SECONDS", "intervalNum": 1, "limit": 0},
            r"rateLimits\[0\]\.limit",
        ),
        ({"measure": "SECONDS", "intervalNum": 1, "limit": 3}, r"rateLimitType"),
    ],
)
def test_malformed_rate_limit_is_a_config_error_naming_the_field(
    entry: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_rate_limits([entry])


def test_engine_operations_map_to_venue_route_types() -> None:
    assert routes_for(Action.PLACE) == (RouteType.PLACE_ORDER,)
    assert routes_for(Action.MODIFY) == (RouteType.MODIFY_ORDER,)
    assert routes_for(Action.CANCEL) == (RouteType.MODIFY_ORDER,)  # conservative, see module doc
    assert routes_for(Action.CLOSE) == (RouteType.MODIFY_POSITION,)
    assert routes_for(Action.MODIFY_POSITION) == (RouteType.MODIFY_POSITION,)
    assert routes_for(Action.REVERSE) == (RouteType.MODIFY_POSITION, RouteType.PLACE_ORDER)
    # The venue answers with the same table (Venue.route_for), and its keys are the names.
    venue = TradeLockerVenue([], [])
    assert all(venue.route_for(a) == routes_for(a) for a in Action)
    assert RouteType.PLACE_ORDER == "PLACE_ORDER"
