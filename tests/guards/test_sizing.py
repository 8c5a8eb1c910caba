"""Sizing by risk (engine.execution.sizing): hand-computed cases for FX, an index, crypto and
non-USD accounts, and properties of the rounding (never over the risk, never a step short)."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from engine._fast import lots_for_risk
from engine.execution.sizing import conversion, entry_price, risk_lots, value_per_point
from engine.model.domain import Action, Instrument, OrderType, ProtectionType, Side, Signal
from engine.model.errors import ValidationError

EURUSD = Instrument(278, 315, "EURUSD", 9001, (9101,), quote_currency="USD")
USDJPY = Instrument(280, 317, "USDJPY", 9001, (9101,), quote_currency="JPY")
US30 = Instrument(
    301, 401, "US30", 9002, (9102,), lot_size=1.0, max_lot=500.0, quote_currency="USD"
)
BTCUSD = Instrument(
    206, 206, "BTCUSD", 9003, (9103,), lot_size=1.0, max_lot=20.0, quote_currency="USD"
)
QUOTES = {"EURUSD": 1.10, "GBPUSD": 1.25, "USDJPY": 150.0}


def signal(side: Side, sl: float, **risk: float) -> Signal:
    return Signal(
        "s", "a1", Action.PLACE, side=side, type=OrderType.MARKET, stop_loss=sl,
        stop_loss_type=ProtectionType.ABSOLUTE, **risk,
    )  # fmt: skip


def lots(
    inst: Instrument,
    sig: Signal,
    bid: float,
    ask: float,
    currency: str = "USD",
    equity: float = 100_000.0,
) -> float:
    rate = conversion(inst.quote_currency, currency, QUOTES.get)
    return risk_lots(
        sig,
        inst,
        equity=equity,
        vpp=value_per_point(inst, rate),
        entry=entry_price(sig, bid, ask),
        currency=currency,
        account="a1",
    )


def test_fx_one_percent_of_equity_over_fifty_pips() -> None:
    # 1 % of 100,000 = 1,000 USD; 1.10010 - 1.09510 = 0.00500; 100,000 USD per point per lot:
    # 1,000 / (0.005 x 100,000) = 2.00 lots.
    assert lots(EURUSD, signal(Side.BUY, 1.09510, risk_pct=1.0), 1.10000, 1.10010) == 2.0


def test_an_index_sell_with_an_amount() -> None:
    # 500 USD over 39,100 - 39,000 = 100 points at 1 USD per point per lot: 5.00 lots.
    assert lots(US30, signal(Side.SELL, 39_100.0, risk_amount=500.0), 39_000.0, 39_002.0) == 5.0


def test_crypto_rounds_down_to_the_lot_step() -> None:
    # 1,000 USD over 65,000 - 63,500 = 1,500 at 1 USD per point: 0.6667 -> 0.66 lots.
    assert lots(BTCUSD, signal(Side.BUY, 63_500.0, risk_amount=1000.0), 64_990.0, 65_000.0) == 0.66


def test_a_eur_account_converts_through_the_eurusd_quote() -> None:
    # One USD is 1 / 1.10 EUR: 100,000 / 1.1 = 90,909.09 EUR per point per lot.
    # 1,000 EUR / (0.005 x 90,909.09) = 2.20 lots.
    sig = signal(Side.BUY, 1.09510, risk_amount=1000.0)
    assert lots(EURUSD, sig, 1.10000, 1.10010, currency="EUR") == 2.2


def test_a_gbp_account_on_a_usd_index() -> None:
    # One USD is 1 / 1.25 = 0.8 GBP: 400 GBP over 100 points at 0.8 GBP = 5.00 lots.
    sig = signal(Side.SELL, 39_100.0, risk_amount=400.0)
    assert lots(US30, sig, 39_000.0, 39_002.0, currency="GBP") == 5.0


def test_a_jpy_quoted_pair_on_a_usd_account() -> None:
    # One JPY is 1 / 150 USD: 100,000 / 150 = 666.67 USD per point per lot; 1,000 USD over
    # 0.50 (50 pips) = 3.00 lots.
    sig = signal(Side.BUY, 149.50, risk_pct=1.0)
    assert lots(USDJPY, sig, 149.99, 150.00) == 3.0


def test_an_offset_stop_is_the_distance_itself() -> None:
    sig = signal(Side.BUY, 0.0025, risk_amount=500.0)
    sig.stop_loss_type = ProtectionType.OFFSET
    assert lots(EURUSD, sig, 1.1, 1.1001) == 2.0


def test_below_the_minimum_lot_is_refused_with_the_numbers() -> None:
    with pytest.raises(ValidationError) as err:
        lots(EURUSD, signal(Side.BUY, 1.09510, risk_amount=4.0), 1.10000, 1.10010)
    assert err.value.reason == (
        "risk_amount 4.00 USD over a stop 0.005 away at 100000 USD per point per lot is 0.0080 "
        "lots on a1, below EURUSD's minimum of 0.01 lots: not traded"
    )


def test_capped_at_the_instruments_maximum() -> None:
    assert lots(BTCUSD, signal(Side.BUY, 64_999.0, risk_amount=1e6), 64_990.0, 65_000.0) == 20.0


def test_no_conversion_quote_is_a_clear_refusal() -> None:
    with pytest.raises(ValidationError, match="no quote converts USD to CHF for EURUSD"):
        lots(EURUSD, signal(Side.BUY, 1.0951, risk_pct=1.0), 1.1, 1.1001, currency="CHF")


def test_unknown_equity_is_a_clear_refusal() -> None:
    with pytest.raises(ValidationError, match="equity is not known yet"):
        lots(EURUSD, signal(Side.BUY, 1.0951, risk_pct=1.0), 1.1, 1.1001, equity=math.nan)


STEPS = st.sampled_from([0.01, 0.1, 1.0, 0.001])


@settings(max_examples=500, deadline=None)
@given(
    risk=st.floats(1.0, 1e6),
    distance=st.floats(1e-4, 1e4),
    vpp=st.floats(1e-3, 1e6),
    step=STEPS,
    min_steps=st.integers(1, 10),
    max_lot=st.floats(1.0, 1000.0),
)
def test_lots_never_risk_more_and_are_never_a_step_short(
    risk: float, distance: float, vpp: float, step: float, min_steps: int, max_lot: float
) -> None:
    min_lot = min_steps * step
    assume(max_lot >= min_lot)  # an instrument's maximum is never below its minimum
    got = lots_for_risk(risk, distance, vpp, step, min_lot, max_lot)
    assert not math.isnan(got)
    if got == 0.0:  # below the minimum: what the minimum would lose is over the risk
        assert min_lot * distance * vpp > risk * (1 - 1e-9)
        return
    n = got / step
    assert abs(n - round(n)) < 1e-6  # on the lot step
    assert min_lot - 1e-9 <= got <= max_lot + 1e-9
    assert got * distance * vpp <= risk * (1 + 1e-6)  # never over the risk
    if got + step <= max_lot:  # one more step would be over it (unless capped)
        assert (got + step) * distance * vpp > risk * (1 - 1e-6)
