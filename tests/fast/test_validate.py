"""Pre-validation rules, run against both the compiled module and its pure-Python twin."""

from __future__ import annotations

import math
import re
from pathlib import Path
from types import ModuleType

import pytest

from engine._fast.codes import RejectCode
from engine.model.domain import Instrument, OrderRequest, OrderType, ProtectionType, Side, Validity
from tests.fast.impls import VALIDATE

NAN = math.nan


@pytest.fixture(params=sorted(VALIDATE))
def v(request: pytest.FixtureRequest) -> ModuleType:
    return VALIDATE[request.param]


def eurusd(**kw: object) -> Instrument:
    return Instrument(278, 315, "EURUSD", 1234, (1,), **kw)  # type: ignore[arg-type]


def order(
    otype: OrderType = OrderType.MARKET,
    side: Side = Side.BUY,
    qty: float = 0.1,
    inst: Instrument | None = None,
    **kw: object,
) -> OrderRequest:
    return OrderRequest(
        account="ftmo-1",
        instrument=inst or eurusd(),
        side=side,
        type=otype,
        qty=qty,
        validity=Validity.required_for(otype),
        strategy_tag="tle-1",
        **kw,  # type: ignore[arg-type]
    )


def check(v: ModuleType, req: OrderRequest, bid: float = 1.0800, ask: float = 1.0802) -> int:
    return int(v.check_order(req, bid, ask))


def test_point_three_lots_with_step_point_zero_one_is_valid(v: ModuleType) -> None:
    assert check(v, order(qty=0.3)) == RejectCode.OK
    assert check(v, order(qty=0.1 + 0.2)) == RejectCode.OK  # 0.30000000000000004


def test_qty_off_lot_step_is_rejected_with_the_step_in_the_reason(v: ModuleType) -> None:
    req = order(qty=0.305)
    code = check(v, req)
    assert code == RejectCode.QTY_OFF_LOT_STEP
    reason = v.reject_reason(code, req)
    assert "lot step 0.01" in reason and "0.3 or 0.31" in reason


def test_qty_below_min_lot_and_above_max_lot_are_rejected(v: ModuleType) -> None:
    assert check(v, order(qty=0.001)) == RejectCode.QTY_BELOW_MIN_LOT
    assert check(v, order(qty=100.01)) == RejectCode.QTY_ABOVE_MAX_LOT
    assert check(v, order(qty=100.0)) == RejectCode.OK


@pytest.mark.parametrize("qty", [NAN, math.inf, -math.inf])
def test_non_finite_qty_is_rejected(v: ModuleType, qty: float) -> None:
    assert check(v, order(qty=qty)) == RejectCode.QTY_NOT_FINITE


@pytest.mark.parametrize("qty", [0.0, -0.1])
def test_zero_or_negative_qty_is_rejected(v: ModuleType, qty: float) -> None:
    assert check(v, order(qty=qty)) == RejectCode.QTY_NOT_POSITIVE


def test_disabled_account_is_rejected_first(v: ModuleType) -> None:
    req = order(qty=NAN)
    code = v.check_order(req, 1.08, 1.0802, False)
    assert code == RejectCode.ACCOUNT_DISABLED
    assert "ftmo-1" in v.reject_reason(code, req)


def test_market_order_must_be_ioc_and_resting_orders_gtc(v: ModuleType) -> None:
    req = order()
    req.validity = Validity.GTC
    assert check(v, req) == RejectCode.VALIDITY_MISMATCH
    assert "IOC" in v.reject_reason(RejectCode.VALIDITY_MISMATCH, req)
    lim = order(OrderType.LIMIT, price=1.07)
    lim.validity = Validity.IOC
    assert check(v, lim) == RejectCode.VALIDITY_MISMATCH


def test_limit_needs_a_price_on_the_tick(v: ModuleType) -> None:
    assert check(v, order(OrderType.LIMIT)) == RejectCode.PRICE_MISSING
    assert check(v, order(OrderType.LIMIT, price=NAN)) == RejectCode.PRICE_INVALID
    assert check(v, order(OrderType.LIMIT, price=1.081234)) == RejectCode.PRICE_OFF_TICK
    assert check(v, order(OrderType.LIMIT, price=1.08123)) == RejectCode.OK


def test_price_must_be_on_the_tick_of_its_tier(v: ModuleType) -> None:
    index = Instrument(
        9,
        9,
        "US30",
        5,
        (1,),
        lot_step=0.1,
        min_lot=0.1,
        tick_sizes=((0.0, 0.01), (100.0, 0.05), (1000.0, 0.5)),
    )
    assert check(v, order(OrderType.LIMIT, inst=index, qty=1.0, price=99.99)) == RejectCode.OK
    assert check(v, order(OrderType.LIMIT, inst=index, qty=1.0, price=100.01)) == (
        RejectCode.PRICE_OFF_TICK
    )
    assert check(v, order(OrderType.LIMIT, inst=index, qty=1.0, price=100.05)) == RejectCode.OK
    req = order(OrderType.LIMIT, inst=index, qty=1.0, price=1000.25)
    assert check(v, req) == RejectCode.PRICE_OFF_TICK
    assert "tick 0.5" in v.reject_reason(RejectCode.PRICE_OFF_TICK, req)


def test_stop_order_needs_a_stop_price(v: ModuleType) -> None:
    assert check(v, order(OrderType.STOP)) == RejectCode.STOP_PRICE_MISSING
    assert check(v, order(OrderType.STOP, price=1.09)) == RejectCode.STOP_PRICE_MISSING
    assert check(v, order(OrderType.STOP, stop_price=1.09)) == RejectCode.OK


def test_stop_limit_needs_both_prices_consistent_with_the_side(v: ModuleType) -> None:
    assert check(v, order(OrderType.STOP_LIMIT, stop_price=1.09)) == RejectCode.PRICE_MISSING
    assert check(v, order(OrderType.STOP_LIMIT, price=1.09)) == RejectCode.STOP_PRICE_MISSING
    buy = order(OrderType.STOP_LIMIT, price=1.0895, stop_price=1.09)
    assert check(v, buy) == RejectCode.STOP_LIMIT_INCONSISTENT
    assert "at or above" in v.reject_reason(RejectCode.STOP_LIMIT_INCONSISTENT, buy)
    ok = order(OrderType.STOP_LIMIT, price=1.0905, stop_price=1.09)
    assert check(v, ok) == RejectCode.OK
    sell = order(OrderType.STOP_LIMIT, Side.SELL, price=1.0705, stop_price=1.07)
    assert check(v, sell) == RejectCode.STOP_LIMIT_INCONSISTENT
    assert check(v, order(OrderType.STOP_LIMIT, Side.SELL, price=1.07, stop_price=1.07)) == 0


def test_buy_stop_loss_must_be_below_and_take_profit_above_the_ask(v: ModuleType) -> None:
    req = order(stop_loss=1.0810)
    assert check(v, req) == RejectCode.SL_WRONG_SIDE
    assert "below the current ask 1.0802" in v.reject_reason(
        RejectCode.SL_WRONG_SIDE, req, 1.08, 1.0802
    )
    assert check(v, order(take_profit=1.0790)) == RejectCode.TP_WRONG_SIDE
    assert check(v, order(stop_loss=1.0790, take_profit=1.0850)) == RejectCode.OK


def test_sell_protection_is_mirrored_around_the_bid(v: ModuleType) -> None:
    assert check(v, order(side=Side.SELL, stop_loss=1.0790)) == RejectCode.SL_WRONG_SIDE
    assert check(v, order(side=Side.SELL, take_profit=1.0810)) == RejectCode.TP_WRONG_SIDE
    assert check(v, order(side=Side.SELL, stop_loss=1.0810, take_profit=1.0750)) == 0


def test_pending_order_protection_is_judged_against_its_own_price(v: ModuleType) -> None:
    # A buy limit far below the market: its stop-loss sits below the limit, not below the ask.
    assert check(v, order(OrderType.LIMIT, price=1.05, stop_loss=1.04)) == RejectCode.OK
    assert check(v, order(OrderType.LIMIT, price=1.05, stop_loss=1.06)) == (
        RejectCode.SL_WRONG_SIDE
    )


def test_unknown_reference_price_skips_only_the_side_check(v: ModuleType) -> None:
    assert v.check_order(order(stop_loss=1.0810), NAN, NAN) == RejectCode.OK
    assert v.check_order(order(stop_loss=1.081234), NAN, NAN) == RejectCode.SL_OFF_TICK


def test_offset_protection_must_be_positive(v: ModuleType) -> None:
    off = ProtectionType.OFFSET
    assert check(v, order(stop_loss=-5.0, stop_loss_type=off)) == RejectCode.SL_OFFSET_NOT_POSITIVE
    assert check(v, order(take_profit=0.0, take_profit_type=off)) == (
        RejectCode.TP_OFFSET_NOT_POSITIVE
    )
    assert (
        check(v, order(stop_loss=15.0, stop_loss_type=off, take_profit=30.5, take_profit_type=off))
        == RejectCode.OK
    )


def test_trailing_stop_needs_a_positive_trailing_offset(v: ModuleType) -> None:
    tr = ProtectionType.TRAILING_OFFSET
    req = order(stop_loss_type=tr)
    assert check(v, req) == RejectCode.TRAILING_OFFSET_MISSING
    assert "trailingOffset" in v.reject_reason(RejectCode.TRAILING_OFFSET_MISSING, req)
    assert check(v, order(stop_loss_type=tr, trailing_offset=-1.0)) == (
        RejectCode.TRAILING_OFFSET_MISSING
    )
    assert check(v, order(stop_loss_type=tr, trailing_offset=20.0)) == RejectCode.OK
    assert check(v, order(take_profit=20.0, take_profit_type=tr)) == (
        RejectCode.TP_TRAILING_NOT_ALLOWED
    )


def test_non_finite_protection_is_rejected(v: ModuleType) -> None:
    assert check(v, order(stop_loss=math.inf)) == RejectCode.SL_INVALID
    assert check(v, order(take_profit=NAN)) == RejectCode.TP_INVALID


def test_strategy_tag_longer_than_the_venue_accepts_is_rejected(v: ModuleType) -> None:
    req = order()
    req.strategy_tag = "x" * 32
    assert check(v, req) == RejectCode.TAG_TOO_LONG
    assert "at most 31" in v.reject_reason(RejectCode.TAG_TOO_LONG, req)


def test_the_tag_limit_is_the_one_the_venue_declares(v: ModuleType) -> None:
    # TradeLocker declares 32 (engine.tradelocker.order_body.MAX_TAG_LENGTH): 32 passes, 33 not.
    req = order()
    req.strategy_tag = "x" * 32
    assert v.check_order(req, NAN, NAN, True, 32) == RejectCode.OK
    req.strategy_tag = "x" * 33
    assert v.check_order(req, NAN, NAN, True, 32) == RejectCode.TAG_TOO_LONG
    assert "33 characters; the venue accepts at most 32" in v.reject_reason(
        RejectCode.TAG_TOO_LONG, req, NAN, NAN, 32
    )
    req.strategy_tag = "x" * 17
    assert v.check_order(req, NAN, NAN, True, 16) == RejectCode.TAG_TOO_LONG


def test_every_code_has_a_reason_without_placeholders(v: ModuleType) -> None:
    req = order(OrderType.STOP_LIMIT, price=1.09, stop_price=1.09, stop_loss=1.0)
    for code in RejectCode:
        reason = v.reject_reason(code, req, 1.08, 1.0802)
        assert reason and "{" not in reason


def test_pxd_codes_match_the_python_enum() -> None:
    pxd = (Path(__file__).parents[2] / "engine" / "_fast" / "validate.pxd").read_text()
    pairs = dict(re.findall(r"^\s+([A-Z_]+) = (\d+)$", pxd, flags=re.M))
    assert {name: int(val) for name, val in pairs.items()} == {c.name: c.value for c in RejectCode}
