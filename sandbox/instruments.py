"""The instruments the sandbox trades: their specification, today's four defaults, and the seed's
``instruments`` list (which replaces the defaults; an entry ``{"base": "EURUSD", ...}`` starts from
a default and changes what it names)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from sandbox.errors import ConfigError

SYMBOL_STATUSES = ("FULLY_OPEN", "CLOSED", "TRADING_HALT")
DEFAULT_DEPTH_LEVELS = 5


@dataclass(slots=True)
class InstrumentSpec:
    tradable_instrument_id: int
    symbol_id: int
    name: str
    description: str
    type: str  # FOREX, INDICES, CRYPTO, ...
    start_price: float
    # ((leftRangeLimit, tickSize), ...) ascending; tickCost derives from it and lot_size.
    tick_sizes: tuple[tuple[float, float], ...]
    lot_size: float
    min_lot: float = 0.01
    max_lot: float = 100.0
    lot_step: float = 0.01
    spread_ticks: int = 10
    volatility: float = 0.0001  # per price step, relative
    leverage: float = 100.0
    pip_size: float = 0.0001  # what an "offset" of 1 means for SL/TP/trailing offsets
    base_currency: str = "EUR"
    quoting_currency: str = "USD"
    trade_route_id: int = 0
    info_route_ids: tuple[int, ...] = ()
    dead_info_route_ids: frozenset[int] = frozenset()
    # The trade session; None lets the market hours choose by instrument type (sessions.py).
    session_id: int | None = None
    # Set by the seed or POST /sandbox/instruments/{name}; anything but FULLY_OPEN stops trading.
    symbol_status: str = "FULLY_OPEN"
    quote_size: float = 100.0  # lots offered at the touch
    # ((ticks from the touch, lots), ...) per side; empty = five levels of quote_size x (i + 1).
    depth: tuple[tuple[int, float], ...] = ()
    # Derived once: every price and lot the sandbox formats asks for them (so tick_sizes and
    # lot_step are not changed after construction; dataclasses.replace derives them again).
    price_decimals: int = field(init=False, default=0)
    qty_decimals: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.price_decimals = max(_decimals(size) for _, size in self.tick_sizes)
        self.qty_decimals = _decimals(self.lot_step)

    def tick_for(self, price: float) -> float:
        tick = self.tick_sizes[0][1]
        for left, size in self.tick_sizes:
            if price >= left:
                tick = size
        return tick

    def ladder(self) -> tuple[tuple[int, float], ...]:
        """The depth ladder: (ticks from the touch, lots) for each price level, best first."""
        if self.depth:
            return self.depth
        return tuple((i, self.quote_size * (i + 1)) for i in range(DEFAULT_DEPTH_LEVELS))


def _decimals(value: float) -> int:
    text = f"{value:.10f}".rstrip("0")
    return len(text.split(".")[1]) if "." in text else 0


def default_instruments() -> list[InstrumentSpec]:
    fx = {"lot_size": 100_000.0, "leverage": 100.0, "pip_size": 0.0001, "spread_ticks": 8}
    return [
        InstrumentSpec(
            278,
            315,
            "EURUSD",
            "Euro vs US Dollar",
            "FOREX",
            1.08500,
            ((0.0, 0.00001),),
            trade_route_id=9001,
            info_route_ids=(9101,),
            **fx,  # type: ignore[arg-type]
        ),
        # Two INFO routes, the first one dead: clients must probe (TradeLocker PR #27).
        InstrumentSpec(
            279,
            316,
            "GBPUSD",
            "British Pound vs US Dollar",
            "FOREX",
            1.26500,
            ((0.0, 0.00001),),
            base_currency="GBP",
            trade_route_id=9001,
            info_route_ids=(9199, 9101),
            dead_info_route_ids=frozenset({9199}),
            **fx,  # type: ignore[arg-type]
        ),
        InstrumentSpec(
            301,
            401,
            "US30",
            "Dow Jones Industrial Average",
            "INDICES",
            39_000.0,
            ((0.0, 0.01), (10_000.0, 0.1)),
            lot_size=1.0,
            max_lot=500.0,
            spread_ticks=20,
            volatility=0.0002,
            leverage=20.0,
            pip_size=1.0,
            base_currency="USD",
            trade_route_id=9002,
            info_route_ids=(9102,),
        ),
        InstrumentSpec(
            206,
            206,
            "BTCUSD",
            "Bitcoin vs US Dollar",
            "CRYPTO",
            65_000.0,
            ((0.0, 0.01), (1_000.0, 0.5)),
            lot_size=1.0,
            max_lot=20.0,
            spread_ticks=40,
            volatility=0.0005,
            leverage=2.0,
            pip_size=1.0,
            base_currency="BTC",
            trade_route_id=9003,
            info_route_ids=(9103,),
        ),
    ]


# -- the seed's "instruments" ---------------------------------------------------------------------

# seed key -> (attribute, kind); kinds are checked and converted by _convert.
_FIELDS: dict[str, tuple[str, str]] = {
    "tradableInstrumentId": ("tradable_instrument_id", "id"),
    "id": ("symbol_id", "id"),
    "name": ("name", "text"),
    "description": ("description", "text"),
    "type": ("type", "text"),
    "startPrice": ("start_price", "positive"),
    "tickSize": ("tick_sizes", "ticks"),
    "lotSize": ("lot_size", "positive"),
    "minLot": ("min_lot", "positive"),
    "maxLot": ("max_lot", "positive"),
    "lotStep": ("lot_step", "positive"),
    "spreadTicks": ("spread_ticks", "count"),
    "volatility": ("volatility", "non-negative"),
    "leverage": ("leverage", "positive"),
    "pipSize": ("pip_size", "positive"),
    "baseCurrency": ("base_currency", "text"),
    "quotingCurrency": ("quoting_currency", "text"),
    "tradeRouteId": ("trade_route_id", "id"),
    "infoRouteIds": ("info_route_ids", "ids"),
    "deadInfoRouteIds": ("dead_info_route_ids", "idset"),
    "tradeSessionId": ("session_id", "id"),
    "symbolStatus": ("symbol_status", "status"),
    "quoteSize": ("quote_size", "positive"),
    "depth": ("depth", "depth"),
}
_REQUIRED = (
    "tradableInstrumentId",
    "name",
    "type",
    "startPrice",
    "tickSize",
    "lotSize",
    "tradeRouteId",
    "infoRouteIds",
)


def _number(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where} must be a number, got {value!r}")
    return float(value)


def _convert(where: str, kind: str, value: Any) -> Any:
    if kind == "text":
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where} must be a non-empty string")
        return value
    if kind == "id":
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{where} must be a positive integer id, got {value!r}")
        return value
    if kind == "count":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{where} must be a positive integer, got {value!r}")
        return value
    if kind in ("positive", "non-negative"):
        number = _number(where, value)
        if number < 0 or (kind == "positive" and number == 0):
            raise ConfigError(f"{where} must be {kind}, got {value!r}")
        return number
    if kind in ("ids", "idset"):
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value
        ):
            raise ConfigError(f"{where} must be a list of positive integer route ids")
        return frozenset(value) if kind == "idset" else tuple(value)
    if kind == "status":
        if value not in SYMBOL_STATUSES:
            raise ConfigError(f"{where} must be one of {', '.join(SYMBOL_STATUSES)}")
        return value
    if kind == "ticks":
        return _tick_sizes(where, value)
    return parse_depth(where, value)


def _tick_sizes(where: str, value: Any) -> tuple[tuple[float, float], ...]:
    """A single tick size, or [{leftRangeLimit, tickSize}, ...] as instrument details give it."""
    if not isinstance(value, list):
        return ((0.0, _convert(where, "positive", value)),)
    tiers: list[tuple[float, float]] = []
    for i, tier in enumerate(value):
        if not isinstance(tier, dict) or set(tier) != {"leftRangeLimit", "tickSize"}:
            raise ConfigError(f"{where}[{i}] must be {{leftRangeLimit, tickSize}}")
        left = _convert(f"{where}[{i}].leftRangeLimit", "non-negative", tier["leftRangeLimit"])
        size = _convert(f"{where}[{i}].tickSize", "positive", tier["tickSize"])
        if tiers and left <= tiers[-1][0]:
            raise ConfigError(f"{where}: leftRangeLimit must ascend")
        tiers.append((left, size))
    if not tiers or tiers[0][0] != 0.0:
        raise ConfigError(f"{where}: the first tier must start at leftRangeLimit 0")
    return tuple(tiers)


def parse_depth(where: str, value: Any) -> tuple[tuple[int, float], ...]:
    """``[5, 10, 20]`` (lots at the touch and one, two ticks away) or ``[[0, 5], [3, 20]]``
    (ticks from the touch, lots), ticks ascending."""
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where} must be a non-empty list of lots or [ticks, lots] pairs")
    levels: list[tuple[int, float]] = []
    for i, level in enumerate(value):
        if isinstance(level, list) and len(level) == 2:
            ticks, lots = level
        else:
            ticks, lots = i, level
        if isinstance(ticks, bool) or not isinstance(ticks, int) or ticks < 0:
            raise ConfigError(f"{where}[{i}]: ticks from the touch must be an integer >= 0")
        if levels and ticks <= levels[-1][0]:
            raise ConfigError(f"{where}[{i}]: ticks from the touch must ascend")
        levels.append((ticks, _convert(f"{where}[{i}] lots", "positive", lots)))
    return tuple(levels)


def parse_instruments(raw: Any) -> list[InstrumentSpec]:
    """The seed's ``instruments``: a list of instrument objects (keys as in the instrument
    details: tradableInstrumentId, name, type, startPrice, tickSize, lotSize, tradeRouteId,
    infoRouteIds required) or ``{"base": "<default name>", ...changes}``."""
    if not isinstance(raw, list) or not raw:
        raise ConfigError("seed: 'instruments' must be a non-empty list of instrument objects")
    defaults = {spec.name: spec for spec in default_instruments()}
    specs: list[InstrumentSpec] = []
    for i, entry in enumerate(raw):
        where = f"seed: instruments[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be an object")
        unknown = set(entry) - set(_FIELDS) - {"base"}
        if unknown:
            raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(_FIELDS)}")
        values = {
            _FIELDS[key][0]: _convert(f"{where}.{key}", _FIELDS[key][1], value)
            for key, value in entry.items()
            if key != "base"
        }
        if "base" in entry:
            base = defaults.get(entry["base"])
            if base is None:
                raise ConfigError(f"{where}.base must name a default: {', '.join(defaults)}")
            spec = dataclasses.replace(base, **values)
        else:
            missing = [key for key in _REQUIRED if key not in entry]
            if missing:
                raise ConfigError(f"{where}: missing {', '.join(missing)}")
            values.setdefault("symbol_id", values["tradable_instrument_id"])
            values.setdefault("description", values["name"])
            spec = InstrumentSpec(**values)
        if "depth" in entry and "quoteSize" not in entry:
            spec.quote_size = spec.depth[0][1] if spec.depth[0][0] == 0 else 0.0
        if not spec.info_route_ids:
            raise ConfigError(f"{where}.infoRouteIds must name at least one INFO route")
        specs.append(spec)
    seen: set[int] = set()
    names: set[str] = set()
    for spec in specs:
        if spec.tradable_instrument_id in seen or spec.name in names:
            raise ConfigError(
                f"seed: instrument {spec.name} ({spec.tradable_instrument_id}) is defined twice"
            )
        seen.add(spec.tradable_instrument_id)
        names.add(spec.name)
    return specs
