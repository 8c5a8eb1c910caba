"""Hypothesis strategies for instruments and orders: mostly valid-looking, with the edge cases
(off-grid values, NaN, inf, negatives, missing prices, wrong sides) mixed in."""

from __future__ import annotations

import math

from hypothesis import strategies as st

from engine.model.domain import Instrument, OrderRequest, OrderType, ProtectionType, Side, Validity

TICK_TIERS = [
    ((0.0, 0.00001),),
    ((0.0, 0.001),),
    ((0.0, 0.01), (100.0, 0.05), (1000.0, 0.1)),
    ((0.0, 0.25),),
    ((0.0, 1.0),),
]
LOT_STEPS = [0.01, 0.1, 1.0, 0.001, 0.05]


@st.composite
def instruments(draw: st.DrawFn) -> Instrument:
    step = draw(st.sampled_from(LOT_STEPS))
    min_lot = step * draw(st.integers(1, 10))
    return Instrument(
        tradable_instrument_id=draw(st.integers(1, 2**40)),
        symbol_id=draw(st.integers(1, 10_000)),
        name=draw(st.sampled_from(["EURUSD", "BTCUSD", "US30", "XAUUSD"])),
        trade_route_id=draw(st.integers(1, 2**40)),
        info_route_ids=(1,),
        lot_step=step,
        min_lot=min_lot,
        max_lot=draw(st.sampled_from([100.0, 50.0, 1000.0])),
        tick_sizes=draw(st.sampled_from(TICK_TIERS)),
    )


def _grid_value(draw: st.DrawFn, step: float, lo: int, hi: int) -> float:
    return draw(st.integers(lo, hi)) * step


ODD_FLOATS = st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -1.0, -0.0, 1e-9, 1e16])


@st.composite
def prices(draw: st.DrawFn, inst: Instrument, centre: float) -> float | None:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return None
    if kind == 1:
        return draw(ODD_FLOATS)
    if kind == 2:
        return draw(st.floats(0.0001, 5000.0))
    tick = inst.tick_for(centre)
    return round(centre / tick) * tick + draw(st.integers(-200, 200)) * tick


@st.composite
def orders(draw: st.DrawFn) -> tuple[OrderRequest, float, float]:
    inst = draw(instruments())
    step = inst.lot_step
    qkind = draw(st.integers(0, 6))
    if qkind == 0:
        qty = draw(ODD_FLOATS)
    elif qkind == 1:
        qty = draw(st.floats(-10.0, 200.0, allow_nan=False))
    else:
        qty = _grid_value(draw, step, 0, 3000)
    otype = draw(st.sampled_from(list(OrderType)))
    validity = (
        Validity.required_for(otype)
        if draw(st.integers(0, 5))
        else draw(st.sampled_from(list(Validity)))
    )
    centre = draw(st.sampled_from([1.08, 0.5, 95.0, 1500.0, 40000.0]))
    sl_type = draw(st.sampled_from([None, *ProtectionType]))
    tp_type = draw(st.sampled_from([None, *ProtectionType]))
    req = OrderRequest(
        account="acc",
        instrument=inst,
        side=draw(st.sampled_from(list(Side))),
        type=otype,
        qty=qty,
        validity=validity,
        strategy_tag=draw(
            st.one_of(
                st.from_regex(r"[A-Za-z0-9_-]{0,31}", fullmatch=True),
                st.text(max_size=40),
            )
        ),
        price=draw(prices(inst, centre)),
        stop_price=draw(prices(inst, centre)),
        stop_loss=draw(prices(inst, centre)),
        stop_loss_type=sl_type,
        take_profit=draw(prices(inst, centre)),
        take_profit_type=tp_type,
        trailing_offset=draw(st.one_of(st.none(), st.floats(-5, 500), ODD_FLOATS)),
    )
    bid = draw(st.one_of(st.just(math.nan), st.floats(0.5 * centre, 1.5 * centre)))
    ask = draw(st.one_of(st.just(math.nan), st.floats(0.5 * centre, 1.5 * centre)))
    return req, bid, ask
