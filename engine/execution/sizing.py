"""Sizing by risk: a signal gives ``risk_pct`` (of the account's equity) or ``risk_amount`` (in
the account currency) with its stop loss instead of ``qty``; each account gets the lots that lose
that much at the stop (docs/guards.md, "Sizing by risk").

    lots = risk / (stop distance x value of one price unit per lot)
    value of one price unit per lot = contract size (lotSize) x one quote-currency unit in the
                                      account currency (from the venue's quotes)

rounded down to the lot step, capped at the instrument's maximum, refused below its minimum with
the numbers. The arithmetic is ``engine._fast.lots_for_risk`` (compiled, with its twin); this
module finds its inputs. A fan-out group sizes each member from its own equity.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from engine._fast import lots_for_risk
from engine.model.domain import Instrument, OrderType, ProtectionType, Side, Signal
from engine.model.errors import ValidationError

__all__ = ["conversion", "entry_price", "risk_lots", "stop_distance", "value_per_point"]

_NAN = math.nan


def conversion(from_ccy: str, to_ccy: str, mid_of: Callable[[str], float | None]) -> float:
    """One unit of ``from_ccy`` in ``to_ccy``: 1 when they are the same, else from the mid of
    the ``FROMTO`` pair, or 1 / the mid of ``TOFROM``; NaN when the venue quotes neither."""
    if not from_ccy or from_ccy == to_ccy:
        return 1.0
    direct = mid_of(from_ccy + to_ccy)
    if direct is not None and direct > 0.0:
        return direct
    inverse = mid_of(to_ccy + from_ccy)
    if inverse is not None and inverse > 0.0:
        return 1.0 / inverse
    return _NAN


def value_per_point(inst: Instrument, rate: float) -> float:
    """Account currency per one price unit per lot (``rate``: one quote-currency unit in the
    account currency)."""
    return inst.lot_size * rate


def entry_price(sig: Signal, bid: float, ask: float) -> float:
    """Where the order would open: the touch for a market order (ask to buy, bid to sell), the
    stop price for a stop, the limit price otherwise; NaN when unknown."""
    if sig.type is OrderType.MARKET:
        return ask if sig.side is Side.BUY else bid
    if sig.type is OrderType.STOP:
        return sig.stop_price if sig.stop_price is not None else _NAN
    return sig.price if sig.price is not None else _NAN


def stop_distance(sig: Signal, entry: float) -> float:
    """The price distance from the entry to the stop loss (an offset is that distance)."""
    sl = sig.stop_loss
    if sl is None:
        return _NAN
    if sig.stop_loss_type is ProtectionType.OFFSET:
        return sl
    return abs(entry - sl)


def risk_lots(
    sig: Signal,
    inst: Instrument,
    *,
    equity: float,
    vpp: float,
    entry: float,
    currency: str,
    account: str,
) -> float:
    """The lots ``sig`` risks on ``account``, or a ValidationError naming the numbers."""
    if sig.risk_amount is not None:
        risk = sig.risk_amount
        what = f"risk_amount {risk:.2f} {currency}"
    else:
        assert sig.risk_pct is not None
        if not math.isfinite(equity):
            raise ValidationError(
                f"risk_pct {sig.risk_pct:g} % on {account}: the account's equity is not known "
                "yet; retry, or send risk_amount",
                account,
            )
        risk = equity * sig.risk_pct / 100.0
        what = f"risk_pct {sig.risk_pct:g} % of equity {equity:.2f} = {risk:.2f} {currency}"
    if not math.isfinite(vpp):
        raise ValidationError(
            f"{what} on {account}: no quote converts {inst.quote_currency or '?'} to "
            f"{currency} for {inst.name}; send qty instead",
            account,
        )
    distance = stop_distance(sig, entry)
    if not (math.isfinite(distance) and distance > 0.0):
        raise ValidationError(
            f"{what} on {account}: the stop loss distance from the entry is unknown or zero "
            f"(entry {entry:g}, stop_loss {sig.stop_loss}); give a limit price or retry when "
            f"{inst.name} has a quote",
            account,
        )
    lots = lots_for_risk(risk, distance, vpp, inst.lot_step, inst.min_lot, inst.max_lot)
    if not lots > 0.0:
        exact = risk / (distance * vpp)
        raise ValidationError(
            f"{what} over a stop {distance:g} away at {vpp:g} {currency} per point per lot is "
            f"{exact:.4f} lots on {account}, below {inst.name}'s minimum of {inst.min_lot:g} "
            "lots: not traded",
            account,
        )
    return lots
