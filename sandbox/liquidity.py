"""How orders meet the market: execution settings (depth, partial fills, post-accept rejections,
slippage, how a close works) and the depth ladder that market and limit orders consume.

With ``depth`` on, each instrument offers a ladder of price levels per side (``InstrumentSpec.
ladder()``: ticks from the touch, lots). A buy takes the asks from the touch outwards, a sell the
bids, each level at its own price; what an order takes stays taken until the quote changes (the
venue's liquidity refreshes with every quote). A limit order takes only the levels at or better
than its price. With ``depth`` off every order fills in full at the touch (the ``fast`` profile,
the sandbox as it always was).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from sandbox.errors import ConfigError
from sandbox.instruments import InstrumentSpec

# How a close (DELETE /trade/positions/{id}) is answered.
CLOSE_INSTANT = "instant"  # always fills in full at the touch
# The official client's close_position: "Will attempt to place an IOC, then GTC closing order, so
# the execution might be delayed": what the IOC leaves becomes a working GTC closing order.
CLOSE_IOC_THEN_GTC = "iocThenGtc"
CLOSE_MODES = (CLOSE_INSTANT, CLOSE_IOC_THEN_GTC)

Slice = tuple[float, float]  # (price, lots) of one fill


@dataclass(slots=True)
class ExecutionSettings:
    depth: bool = False  # fills limited by the depth ladder (False: unlimited at the touch)
    partial_fill_share: float = 0.0  # share of executions cut to partial_fill_fraction
    partial_fill_fraction: float = 0.5
    reject_after_accept_share: float = 0.0  # accepted, then Rejected in history
    slippage_share: float = 0.0  # market orders whose price moves against them first
    slippage_ticks: int = 0  # by up to this many ticks (the slippage fault: exactly this many)
    close: str = CLOSE_INSTANT


def fast_execution() -> ExecutionSettings:
    """Today's sandbox: unlimited liquidity at the touch, nothing partial, closes instant."""
    return ExecutionSettings()


def realistic_execution() -> ExecutionSettings:
    return ExecutionSettings(
        depth=True,
        partial_fill_share=0.05,
        partial_fill_fraction=0.5,
        reject_after_accept_share=0.01,
        slippage_share=0.2,
        slippage_ticks=3,
        close=CLOSE_IOC_THEN_GTC,
    )


_KEYS = {
    "depth": "depth",
    "partialFillShare": "partial_fill_share",
    "partialFillFraction": "partial_fill_fraction",
    "rejectAfterAcceptShare": "reject_after_accept_share",
    "slippageShare": "slippage_share",
    "slippageTicks": "slippage_ticks",
    "close": "close",
}


def parse_execution(raw: Any, base: ExecutionSettings) -> ExecutionSettings:
    """The seed's ``execution`` object over ``base`` (``preset``: fast | realistic first)."""
    if raw is None:
        return base
    if not isinstance(raw, dict):
        raise ConfigError("seed: 'execution' must be an object (see docs/sandbox.md)")
    unknown = set(raw) - set(_KEYS) - {"preset"}
    if unknown:
        raise ConfigError(
            f"seed: execution: unknown keys {sorted(unknown)}; known: preset, " + ", ".join(_KEYS)
        )
    presets = {"fast": fast_execution, "realistic": realistic_execution}
    if "preset" in raw:
        if raw["preset"] not in presets:
            raise ConfigError("seed: execution.preset must be fast or realistic")
        base = presets[raw["preset"]]()
    values: dict[str, Any] = {}
    for key, attr in _KEYS.items():
        if key not in raw:
            continue
        value = raw[key]
        where = f"seed: execution.{key}"
        if attr == "depth":
            if not isinstance(value, bool):
                raise ConfigError(f"{where} must be true or false")
        elif attr == "close":
            if value not in CLOSE_MODES:
                raise ConfigError(f"{where} must be one of {', '.join(CLOSE_MODES)}")
        elif attr == "slippage_ticks":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{where} must be a non-negative integer")
        else:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{where} must be a number within 0..1")
            if not 0.0 <= value <= 1.0 or (attr == "partial_fill_fraction" and value in (0, 1)):
                raise ConfigError(f"{where} must be within 0..1 (a fraction strictly inside)")
            value = float(value)
        values[attr] = value
    return replace(base, **values)


def steps(spec: InstrumentSpec, lots: float) -> int:
    """Whole lot steps in ``lots`` (rounded down, float noise forgiven)."""
    return math.floor(lots / spec.lot_step + 1e-6)


def partial_part(spec: InstrumentSpec, lots: float, fraction: float) -> float | None:
    """The part of ``lots`` a partial fill takes (whole lot steps, at least one), or None when
    ``lots`` is a single step and cannot be split."""
    total = steps(spec, lots)
    if total < 2:
        return None
    part = min(total - 1, max(1, math.floor(total * fraction)))
    return round(part * spec.lot_step, spec.qty_decimals)


class LiquidityBook:
    """What each order has taken from the ladder since the instrument's last quote."""

    def __init__(self) -> None:
        self._taken: dict[tuple[int, str], list[float]] = {}

    def refresh(self, tid: int) -> None:
        """A new quote: the ladder is whole again."""
        self._taken.pop((tid, "buy"), None)
        self._taken.pop((tid, "sell"), None)

    def levels(
        self, spec: InstrumentSpec, bid: float, ask: float, side: str
    ) -> list[tuple[float, float]]:
        """(price, lots left) of each level a ``side`` order would take, best first."""
        tick = spec.tick_for(bid)
        sign, touch = (1.0, ask) if side == "buy" else (-1.0, bid)
        taken = self._taken.get((spec.tradable_instrument_id, side), [])
        result = []
        for i, (ticks, lots) in enumerate(spec.ladder()):
            price = round(touch + sign * ticks * tick, spec.price_decimals)
            left = lots - (taken[i] if i < len(taken) else 0.0)
            result.append((price, max(0.0, left)))
        return result

    def take(
        self,
        spec: InstrumentSpec,
        bid: float,
        ask: float,
        side: str,
        lots: float,
        limit: float | None = None,
        forced: bool = False,
    ) -> list[Slice]:
        """Take up to ``lots`` level by level (only levels at or better than ``limit``). A
        ``forced`` take (a liquidation) fills what the ladder lacks at its last level's price."""
        key = (spec.tradable_instrument_id, side)
        levels = self.levels(spec, bid, ask, side)
        taken = self._taken.setdefault(key, [0.0] * len(levels))
        wanted = steps(spec, lots)
        slices: list[Slice] = []
        for i, (price, left) in enumerate(levels):
            if wanted <= 0:
                break
            if limit is not None and (price > limit if side == "buy" else price < limit):
                break
            n = min(wanted, steps(spec, left))
            if n <= 0:
                continue
            qty = round(n * spec.lot_step, spec.qty_decimals)
            taken[i] += qty
            wanted -= n
            slices.append((price, qty))
        if forced and wanted > 0:
            qty = round(wanted * spec.lot_step, spec.qty_decimals)
            slices.append((levels[-1][0], qty))
        return slices
