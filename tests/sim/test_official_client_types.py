"""The OFFICIAL ``tradelocker`` client, unmodified and type-checked by typeguard, over its whole
public surface against the sandbox.

When typeguard is importable the client decorates its methods with ``typeguard.typechecked``, so
every argument, return value and annotated local is checked against the client's own types
(``tradelocker.types``); its own test suite runs that way against the real venue. A reply shape
the client's types do not allow (a null where none is allowed, an extra key in a literal-keyed
dict, a number where a string is declared) fails here. typeguard checks only the first item of a
collection by default, so the replies whose declared type can hold item by item are checked again
with every item. ``ConfigType`` cannot: it is a union of dicts keyed by disjoint literals, which
only a first-item check lets a whole ``/trade/config`` through; its parts are checked one by one.

Every public method of ``TLAPI`` passes against the sandbox; none is excluded. A method the client
adds later fails the surface check below until this test calls it.

The client sleeps 1 s before every request (its retry wrapper); only that sleep is patched out.
The ``fast`` profile is used: shapes are the same in both profiles, and some fifty requests in a
few seconds would only meet the realistic profile's rate limits.
"""

from __future__ import annotations

import asyncio
import inspect
import types
from collections.abc import Callable
from typing import Any

import pytest

from sandbox import Sandbox
from tests.sim.client import EMAIL, PASSWORD, SERVER

typeguard = pytest.importorskip(
    "typeguard", reason="typeguard is a dev dependency: the client checks its types only with it"
)

EURUSD_SYMBOL_ID = 315
NO_DATA_WEEK_MS = 1_673_218_800_000  # the client's own no-data probe: one instant, weekly bars


class Surface:
    """Calls the client's public methods and remembers which were called."""

    def __init__(self, tl: Any) -> None:
        self.tl = tl
        self.called: set[str] = set()

    def __call__(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self.called.add(name)
        return getattr(self.tl, name)(*args, **kwargs)


def _strict(value: Any, expected: Any) -> None:
    typeguard.check_type(
        value,
        expected,
        collection_check_strategy=typeguard.CollectionCheckStrategy.ALL_ITEMS,
    )


def _session(base_url: str) -> tuple[set[str], dict[str, Any]]:
    from tradelocker import TLAPI, TLAPIException
    from tradelocker import types as tl_types

    tl = TLAPI(
        environment=base_url, username=EMAIL, password=PASSWORD, server=SERVER, log_level="error"
    )
    call = Surface(tl)
    seen: dict[str, Any] = {}
    eurusd = call("get_instrument_id_from_symbol_name", "EURUSD")
    btc = call("get_instrument_id_from_symbol_name", "BTCUSD")
    gbp = call("get_instrument_id_from_symbol_name", "GBPUSD")

    # Auth and reference data.
    assert call("get_base_url") == base_url + "/backend-api"
    old_access = call("get_access_token")
    assert call("get_refresh_token")
    call("refresh_access_tokens")
    assert call("get_access_token") != old_access
    assert call("get_all_accounts")["accNum"].tolist() == [1, 2]
    config = call("get_config")
    assert list(config) == [
        "customerAccess", "positionsConfig", "ordersConfig", "ordersHistoryConfig",
        "filledOrdersConfig", "accountDetailsConfig", "rateLimits", "limits",
    ]  # fmt: skip
    _strict(config["customerAccess"], dict[str, bool])
    _strict(config["rateLimits"], list[tl_types.RateLimitType])
    _strict(config["limits"], list[tl_types.LimitsType])
    for key in tl_types.ColumnConfigKeysType.__args__:
        _strict(config[key]["columns"], tl_types.ConfigColumnType)
    for route in tl_types.RouteNamesType.__args__:
        _strict(call("get_route_rate_limit", route), tl_types.RateLimitType)
    _strict(call("get_price_history_rate_limit"), tl_types.RateLimitType)
    assert call("max_price_history_rows") == 5000
    _strict(call("get_trade_accounts"), tl_types.TradeAccountsType)
    assert not call("get_all_instruments").empty
    assert call("get_instrument_id_from_symbol_id", EURUSD_SYMBOL_ID) == eurusd
    assert call("get_symbol_name_from_instrument_id", btc) == "BTCUSD"
    assert call("get_trade_route_id", eurusd) == "9001"
    assert call("get_info_route_id", gbp) == "9101"  # probed past the dead first INFO route
    details = call("get_instrument_details", btc)
    _strict(details, tl_types.InstrumentDetailsType)
    _strict(call("get_session_details", details["tradeSessionId"]), tl_types.SessionDetailsType)
    status = call("get_session_status_details", details["tradeSessionStatusId"])
    _strict(status, tl_types.SessionStatusDetailsType)
    assert (len(status["allowedOperations"]), len(status["allowedOrderTypes"])) == (3, 6)
    with pytest.raises(typeguard.TypeCheckError):
        call("get_session_details", "STRING_NOT_INT")

    # Market data.
    _strict(call("get_quotes", gbp), tl_types.QuotesType)
    _strict(call("get_daily_bar", btc), tl_types.DailyBarType)
    _strict(call("get_market_depth", btc), tl_types.MarketDepthlistType)
    assert call("get_latest_asking_price", btc) > call("get_latest_bid_price", btc) > 0
    assert not call("get_price_history", btc, resolution="1D", lookback_period="5D").empty
    assert call(
        "get_price_history",
        btc,
        resolution="1W",
        start_timestamp=NO_DATA_WEEK_MS,
        end_timestamp=NO_DATA_WEEK_MS,
    ).empty  # {"s": "no_data"}
    with pytest.raises(ValueError):  # more bars than QUOTES_HISTORY_BARS: refused by the client
        call("get_price_history", btc, resolution="1m", lookback_period="2Y")

    # Orders and positions, as the client's own tests place them.
    market = call(
        "create_order", btc, quantity=0.01, side="buy", type_="market", strategy_id="s" * 32
    )
    with pytest.raises(TLAPIException):  # 33 characters: the venue refuses (HTTP 400)
        call(
            "create_order", btc, quantity=0.01, side="buy", type_="market",
            strategy_id="s" * 33, _ignore_len_check=True,
        )  # fmt: skip
    trailing = call(
        "create_order", btc, quantity=0.01, side="buy", type_="market",
        stop_loss=500.0, stop_loss_type="trailingOffset",
    )  # fmt: skip
    protected = call(
        "create_order", btc, quantity=0.01, side="buy", price=0, type_="market",
        stop_loss=0.01, stop_loss_type="absolute", take_profit=10_000_000,
        take_profit_type="absolute",
    )  # fmt: skip
    limit = call(
        "create_order", btc, quantity=0.01, side="buy", price=0.01, type_="limit", validity="GTC"
    )
    assert call("modify_order", limit, {"price": "0.02", "qty": "0.02"}) is True
    assert call("get_all_orders")["price"].tolist().count(0.02) == 1
    assert call("delete_order", limit) is True
    position = call("get_position_id_from_order_id", market)
    assert call("modify_position", position, {"stopLoss": 0.01, "takeProfit": 10_000_000}) is True
    positions = call("get_all_positions")
    assert set(positions["strategyId"]) >= {"s" * 32}
    seen["trailing_leg"] = positions.loc[
        positions["id"] == call("get_position_id_from_order_id", trailing), "stopLossId"
    ].item()
    assert not call("get_all_executions").empty
    _strict(call("get_account_state"), tl_types.DictValuesType)
    assert call("close_position", order_id=protected) is True
    assert call("close_position", position_id=position) is True
    # Deprecated netting: the sell closes one of the buys instead of opening a position.
    call("create_order", btc, quantity=0.01, side="sell", type_="market", position_netting=True)
    call("create_order", btc, quantity=0.01, side="buy", price=0.01, type_="limit", validity="GTC")
    assert call("delete_all_orders_manual") is True
    call("create_order", btc, quantity=0.01, side="buy", price=0.01, type_="limit", validity="GTC")
    assert call("delete_all_orders", instrument_id_filter=btc) is True
    assert (
        call("get_all_orders", history=True, lookback_period="1D")["status"]
        .isin(["Filled", "Cancelled"])
        .all()
    )
    assert call("close_all_positions") is True
    assert call("get_all_positions").empty

    public = {
        name for name, member in inspect.getmembers(TLAPI, callable) if not name.startswith("_")
    }
    return public - call.called, seen


async def test_the_official_client_type_checks_its_whole_surface_against_the_sandbox(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import tradelocker.utils

    assert tradelocker.utils.tl_typechecked is typeguard.typechecked  # the checks are really on
    no_sleep: Callable[[float], None] = lambda _s: None  # noqa: E731
    monkeypatch.setattr(tradelocker.utils, "time", types.SimpleNamespace(sleep=no_sleep))
    async with Sandbox(profile="fast", price_interval_ms=0) as sb:
        uncalled, seen = await asyncio.to_thread(_session, sb.base_url)
        account = sb.state.accounts["700001"]
        assert uncalled == set(), f"public methods of TLAPI this test does not call: {uncalled}"
        assert seen["trailing_leg"]  # the trailing stop exists as the position's stop leg
        leg = next(o for o in account.history if o.id == str(seen["trailing_leg"]))
        assert leg.trail_distance == 500.0  # BTCUSD: 1 pip = 1.0
        assert not account.positions and not account.orders
