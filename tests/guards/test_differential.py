"""The compiled guard arithmetic (engine/_fast/guards.pyx) and its pure-Python twin give the same
answers on any input: the same code for every check, the same state after it, the same lots."""

from __future__ import annotations

import importlib
import math
import re
from pathlib import Path
from types import ModuleType
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from engine._fast._py import guards as py_guards
from engine._fast.codes import GuardCode

c_guards: ModuleType = importlib.import_module("engine._fast.guards")  # a missing build fails

SETTINGS = settings(max_examples=400, deadline=None)
INF = math.inf
money = st.floats(min_value=0.0, max_value=1e7, allow_nan=False)
limit = st.one_of(st.just(INF), st.floats(min_value=1.0, max_value=1e6))
lots = st.one_of(st.just(INF), st.floats(min_value=0.01, max_value=500.0))
count = st.integers(min_value=0, max_value=6)


@st.composite
def states(draw: Any) -> dict[str, Any]:
    return {
        "init": {
            "daily_limit": draw(limit),
            "dd_limit": draw(limit),
            "margin": draw(st.floats(min_value=0.0, max_value=0.5)),
            "max_lots_order": draw(lots),
            "max_lots_instrument": draw(lots),
            "max_lots_account": draw(lots),
            "max_positions": draw(count),
            "max_per_minute": draw(count),
            "max_per_day": draw(count),
        },
        "live": {
            "halted": draw(st.booleans()),
            "equity": draw(st.one_of(st.just(math.nan), money)),
            "day_ref": draw(money),
            "dd_top": draw(money),
            "open_risk": draw(st.floats(min_value=0.0, max_value=1e5)),
            "open_lots": draw(st.floats(min_value=0.0, max_value=100.0)),
            "open_positions": draw(count),
        },
    }


orders = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=3),  # instrument
        st.floats(min_value=0.01, max_value=50.0),  # qty
        st.one_of(st.just(math.nan), st.floats(min_value=0.0, max_value=1e5)),  # worst
        st.floats(min_value=0.0, max_value=200.0),  # seconds since the previous order
    ),
    min_size=1,
    max_size=12,
)
FIELDS = ("halted", "equity", "open_risk", "open_lots", "open_positions", "day_count", "ring_head")


def build(mod: ModuleType, case: dict[str, Any]) -> Any:
    s = mod.GuardState(**case["init"])
    for k, v in case["live"].items():
        setattr(s, k, v)
    return s


def snapshot(s: Any) -> tuple[Any, ...]:
    values = tuple(getattr(s, f) for f in FIELDS)
    return (*(("nan",) if isinstance(v, float) and math.isnan(v) else v for v in values),
            dict(s.inst_lots), list(s.ring))  # fmt: skip


@SETTINGS
@given(states(), orders)
def test_every_check_and_the_state_it_leaves_agree(case: dict[str, Any], seq: list[Any]) -> None:
    c, p = build(c_guards, case), build(py_guards, case)
    now = 1_000.0
    for inst, qty, worst, gap in seq:
        now += gap
        code = c_guards.check_guard(c, inst, qty, worst, now)
        assert code == py_guards.check_guard(p, inst, qty, worst, now)
        assert code in set(GuardCode)
        assert snapshot(c) == snapshot(p)


@SETTINGS
@given(
    st.floats(min_value=0.0, max_value=1e6),
    st.floats(min_value=0.0, max_value=1e4),
    st.floats(min_value=0.0, max_value=1e6),
    st.sampled_from([0.01, 0.1, 1.0, 0.001, 0.5]),
    st.floats(min_value=0.0, max_value=1.0),
    st.floats(min_value=1.0, max_value=1000.0),
)
def test_risk_sizing_agrees(
    risk: float, dist: float, vpp: float, step: float, lo: float, hi: float
) -> None:
    a = c_guards.lots_for_risk(risk, dist, vpp, step, lo, hi)
    b = py_guards.lots_for_risk(risk, dist, vpp, step, lo, hi)
    assert (math.isnan(a) and math.isnan(b)) or a == b
    assert c_guards.worst_loss(dist, hi, vpp) == py_guards.worst_loss(dist, hi, vpp)


def test_the_codes_agree_with_the_enum() -> None:
    for code in GuardCode:
        assert getattr(py_guards, code.name) == code.value
    pxd = (Path(__file__).parents[2] / "engine" / "_fast" / "guards.pxd").read_text()
    pairs = dict(re.findall(r"^\s+([A-Z_]+) = (\d+)$", pxd, flags=re.M))
    assert {name: int(val) for name, val in pairs.items()} == {c.name: c.value for c in GuardCode}


def test_a_halted_account_and_each_limit_are_refused_by_both() -> None:
    for mod in (c_guards, py_guards):
        s = mod.GuardState(daily_limit=1000.0, margin=0.1)
        s.equity, s.day_ref, s.dd_top = 99_500.0, 100_000.0, 100_000.0
        # 500 lost today + 350 worst case = 850 < 900 (1000 less 10 %): allowed, and counted.
        assert mod.check_guard(s, 1, 1.0, 350.0, 0.0) == GuardCode.OK
        assert s.open_risk == 350.0 and s.open_lots == 1.0 and s.open_positions == 1
        # 500 + 350 open + 100 = 950 > 900: refused by the daily loss rule, nothing counted.
        assert mod.check_guard(s, 1, 1.0, 100.0, 0.0) == GuardCode.DAILY_LOSS
        assert s.open_risk == 350.0 and s.day_count == 1
        s.halted = True
        assert mod.check_guard(s, 1, 0.01, 0.0, 0.0) == GuardCode.HALTED
        r = mod.GuardState(max_per_minute=2)
        assert [mod.check_guard(r, 1, 1.0, 0.0, t) for t in (0.0, 10.0, 59.0, 60.5)] == [
            0,
            0,
            GuardCode.ORDERS_PER_MINUTE,
            0,
        ]


@SETTINGS
@given(
    st.floats(min_value=100.0, max_value=1e5),  # the limit
    st.floats(min_value=0.0, max_value=0.5),  # the margin
    st.floats(min_value=0.0, max_value=1.0),  # share already lost
    st.lists(st.floats(min_value=0.0, max_value=5e4), min_size=1, max_size=30),
)
def test_what_passes_never_adds_up_past_the_limit_less_the_margin(
    limit: float, margin: float, lost_share: float, worsts: list[float]
) -> None:
    """The guard's promise: whatever sequence of orders it lets through, today's loss plus every
    passed order's worst case stays within the limit less the safety margin."""
    for mod in (c_guards, py_guards):
        s = mod.GuardState(daily_limit=limit, dd_limit=limit, margin=margin)
        s.day_ref = s.dd_top = 100_000.0
        s.equity = 100_000.0 - limit * (1 - margin) * lost_share
        passed = 0.0
        for worst in worsts:
            if mod.check_guard(s, 1, 0.01, worst, 0.0) == GuardCode.OK:
                passed += worst
        lost = s.day_ref - s.equity
        assert lost + passed <= limit * (1 - margin) * (1 + 1e-12)
        assert s.open_risk == passed
