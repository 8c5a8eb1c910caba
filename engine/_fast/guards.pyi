"""Prop-firm guard arithmetic, compiled (twin: engine/_fast/_py/guards.py)."""

class GuardState:
    halted: bool
    equity: float
    day_ref: float
    dd_top: float
    daily_limit: float
    dd_limit: float
    margin: float
    open_risk: float
    max_lots_order: float
    max_lots_instrument: float
    max_lots_account: float
    open_lots: float
    inst_lots: dict[int, float]
    max_positions: int
    open_positions: int
    max_per_minute: int
    ring: list[float]
    ring_head: int
    max_per_day: int
    day_count: int
    def __init__(
        self,
        daily_limit: float = ...,
        dd_limit: float = ...,
        margin: float = ...,
        max_lots_order: float = ...,
        max_lots_instrument: float = ...,
        max_lots_account: float = ...,
        max_positions: int = ...,
        max_per_minute: int = ...,
        max_per_day: int = ...,
    ) -> None: ...

def worst_loss(distance: float, qty: float, value_per_point: float) -> float: ...
def check_guard(
    st: GuardState, instrument_id: int, qty: float, worst: float, now_s: float
) -> int: ...
def lots_for_risk(
    risk: float,
    distance: float,
    value_per_point: float,
    lot_step: float,
    min_lot: float,
    max_lot: float,
) -> float: ...
