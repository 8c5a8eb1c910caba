"""The compiled modules and their pure-Python twins must give the same answers on any input."""

from __future__ import annotations

import math

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from engine._fast.codes import RejectCode
from engine._fast.reasons import reject_reason
from engine.model.domain import (
    Instrument,
    OrderModification,
    OrderRequest,
    OrderType,
    ProtectionType,
)
from tests.fast.impls import c_bucket, c_serialize, c_validate, py_bucket, py_serialize, py_validate
from tests.fast.strategies import instruments, orders

SETTINGS = settings(max_examples=400, deadline=None)


def _outcome(fn: object, *args: object) -> tuple[str, object]:
    try:
        return ("ok", fn(*args))  # type: ignore[operator]
    except Exception as exc:  # the same error type and text is part of "identical behaviour"
        return (type(exc).__name__, str(exc))


@SETTINGS
@given(orders(), st.booleans())
def test_validation_codes_and_reasons_agree(
    case: tuple[OrderRequest, float, float], enabled: bool
) -> None:
    req, bid, ask = case
    code = c_validate.check_order(req, bid, ask, enabled)
    assert code == py_validate.check_order(req, bid, ask, enabled)
    assert c_validate.reject_reason(code, req, bid, ask) == reject_reason(code, req, bid, ask)


@SETTINGS
@given(orders(), st.integers(min_value=0, max_value=40))
def test_validation_agrees_under_any_declared_tag_limit(
    case: tuple[OrderRequest, float, float], max_tag_length: int
) -> None:
    req, bid, ask = case
    code = c_validate.check_order(req, bid, ask, True, max_tag_length)
    assert code == py_validate.check_order(req, bid, ask, True, max_tag_length)
    assert c_validate.reject_reason(code, req, bid, ask, max_tag_length) == reject_reason(
        code, req, bid, ask, max_tag_length
    )


def test_the_compiled_reasons_are_an_implementation_of_their_own() -> None:
    # Compared with itself, the test above could never fail.
    assert c_validate.reject_reason is not reject_reason
    assert py_validate.reject_reason is reject_reason


@SETTINGS
@given(orders(), st.sampled_from(list(RejectCode)))
def test_every_reason_agrees_on_any_order(
    case: tuple[OrderRequest, float, float], code: RejectCode
) -> None:
    # Every sentence, also for orders that break another rule (or none): same text or same error.
    req, bid, ask = case
    assert _outcome(c_validate.reject_reason, code, req, bid, ask) == _outcome(
        reject_reason, code, req, bid, ask
    )


@SETTINGS
@given(orders())
def test_place_order_bodies_are_byte_identical(case: tuple[OrderRequest, float, float]) -> None:
    req, _, _ = case
    assert _outcome(c_serialize.place_order_body, req) == _outcome(
        py_serialize.place_order_body, req
    )


@SETTINGS
@given(orders())
def test_valid_orders_serialize_to_the_json_of_their_fields(
    case: tuple[OrderRequest, float, float],
) -> None:
    req, bid, ask = case
    if py_validate.check_order(req, bid, ask) != 0 or req.type is OrderType.STOP_LIMIT:
        return
    inst = req.instrument
    pd = py_serialize.price_decimals(inst)
    od = py_serialize.OFFSET_DECIMALS

    def rounded(x: float, d: int) -> float:
        return float(f"{x:.{d}f}")

    expected: dict[str, object] = {
        "tradableInstrumentId": inst.tradable_instrument_id,
        "routeId": inst.trade_route_id,
        "qty": rounded(req.qty, py_serialize.qty_decimals(inst)),
        "side": req.side.wire,
        "type": req.type.wire,
        "validity": req.validity.wire,
    }
    if req.type is OrderType.LIMIT:
        expected["price"] = rounded(req.price or 0.0, pd)
    if req.type is OrderType.STOP:
        expected["stopPrice"] = rounded(req.stop_price or 0.0, pd)
    sl_kind = req.stop_loss_type or ProtectionType.ABSOLUTE
    if req.stop_loss is not None:
        absolute = sl_kind is ProtectionType.ABSOLUTE
        expected["stopLoss"] = rounded(req.stop_loss, pd if absolute else od)
    if req.stop_loss is not None or sl_kind is ProtectionType.TRAILING_OFFSET:
        expected["stopLossType"] = sl_kind.wire
    if req.take_profit is not None:
        tp_kind = req.take_profit_type or ProtectionType.ABSOLUTE
        absolute = tp_kind is ProtectionType.ABSOLUTE
        expected["takeProfit"] = rounded(req.take_profit, pd if absolute else od)
        expected["takeProfitType"] = tp_kind.wire
    if sl_kind is ProtectionType.TRAILING_OFFSET and req.trailing_offset is not None:
        expected["trStopOffset"] = rounded(req.trailing_offset, od)
    if req.strategy_tag:
        expected["strategyId"] = req.strategy_tag
    body = c_serialize.place_order_body(req)
    assert orjson.loads(body) == orjson.loads(orjson.dumps(expected))
    numbers = body.split(b',"strategyId"')[0]
    assert b"e-" not in numbers and b"e+" not in numbers


@SETTINGS
@given(
    instruments(),
    st.one_of(st.none(), st.floats(0.0001, 10_000)),
    st.one_of(st.none(), st.floats(0.0001, 100)),
    st.one_of(st.none(), st.floats(0.0001, 10_000)),
    st.sampled_from([None, *ProtectionType]),
    st.one_of(st.none(), st.floats(0.1, 500)),
)
def test_modify_and_close_bodies_agree(
    inst: Instrument,
    price: float | None,
    qty: float | None,
    level: float | None,
    kind: ProtectionType | None,
    trailing: float | None,
) -> None:
    change = OrderModification(
        price=price, qty=qty, stop_loss=level, stop_loss_type=kind, trailing_offset=trailing
    )
    assert _outcome(c_serialize.modify_order_body, change, inst) == _outcome(
        py_serialize.modify_order_body, change, inst
    )
    args = (inst, level, price, kind, trailing)
    assert _outcome(c_serialize.modify_position_body, *args) == _outcome(
        py_serialize.modify_position_body, *args
    )
    close_qty = qty if qty is not None else 0.0
    assert _outcome(c_serialize.close_position_body, close_qty, inst) == _outcome(
        py_serialize.close_position_body, close_qty, inst
    )


@SETTINGS
@given(
    st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-1e6, 1e6)),
    st.integers(0, 10),
)
def test_numbers_format_identically(x: float, decimals: int) -> None:
    assert _outcome(c_serialize.format_number, x, decimals) == _outcome(
        py_serialize.format_number, x, decimals
    )


@SETTINGS
@given(st.one_of(st.floats(1e-12, 1e6), st.sampled_from([0.0, -1.0, math.nan, math.inf])))
def test_step_decimals_agree(step: float) -> None:
    assert c_serialize.decimals_of(step) == py_serialize.decimals_of(step)


@SETTINGS
@given(st.binary(max_size=300), st.binary(max_size=3000))
def test_request_buffers_agree(head: bytes, body: bytes) -> None:
    assert c_serialize.with_body(head, body) == py_serialize.with_body(head, body)


_OPS = st.sampled_from(
    [
        "acquire",
        "acquire",
        "acquire",
        "take",
        "take",
        "give_back",
        "wait",
        "available",
        "near",
        "pause",
        "exhaust",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 50),
    st.sampled_from([0.001, 0.5, 1.0, 60.0, 3600.0]),
    st.sampled_from([0.0, 0.1, 0.25, 0.5]),
    st.sampled_from([0.5, 0.8, 1.0]),
    st.lists(st.tuples(_OPS, st.integers(-1_000_000, 2_000_000_000)), max_size=200),
)
def test_bucket_decisions_agree_over_random_time_sequences(
    limit: int,
    interval_s: float,
    margin: float,
    alert: float,
    steps: list[tuple[str, int]],
) -> None:
    c = c_bucket.TokenBucket(limit, interval_s, margin, alert)
    p = py_bucket.TokenBucket(limit, interval_s, margin, alert)
    assert (c.capacity, c.interval_ns) == (p.capacity, p.interval_ns)
    now = 10**12
    for op, delta in steps:
        now += delta  # mostly forward, sometimes a little backward: both must agree anyway
        if op == "acquire":
            assert c.try_acquire(now) == p.try_acquire(now)
        elif op == "take":
            assert c.take(now) == p.take(now)
        elif op == "give_back":
            c.give_back(now)
            p.give_back(now)
        elif op == "wait":
            assert c.wait_ns(now) == p.wait_ns(now)
        elif op == "available":
            assert c.available(now) == p.available(now)
        elif op == "near":
            assert c.near_limit(now) == p.near_limit(now)
        elif op == "pause":
            c.pause_until(now + delta)
            p.pause_until(now + delta)
        else:
            c.exhaust(now)
            p.exhaust(now)
        assert c.paused_until_ns == p.paused_until_ns
        assert c.in_flight == p.in_flight


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(st.integers(-5, 3_000_000), st.booleans(), st.floats(0.5, 3.0)),
    st.one_of(st.floats(allow_nan=True), st.just(1.0)),
    st.floats(-0.5, 1.5),
)
def test_bucket_constructors_refuse_the_same_bad_input(
    limit: object, interval_s: float, margin: float
) -> None:
    def build(mod: object) -> tuple[str, object]:
        try:
            b = mod.TokenBucket(limit, interval_s, margin)  # type: ignore[attr-defined]
            return ("ok", (b.capacity, b.interval_ns))
        except Exception as exc:
            return (type(exc).__name__, str(exc))

    assert build(c_bucket) == build(py_bucket)


@SETTINGS
@given(
    st.integers(-(10**12), 10**12),
    st.integers(0, 10),
    st.sampled_from([-2, -1, 0, 1, 2]),
    st.sampled_from([0.0, 0.5, 0.4999, 0.5001, 0.999999]),
)
def test_numbers_near_rounding_ties_format_identically(
    m: int, decimals: int, ulps: int, frac: float
) -> None:
    x = (m + frac) / 10**decimals
    for _ in range(abs(ulps)):
        x = math.nextafter(x, math.inf if ulps > 0 else -math.inf)
    assert c_serialize.format_number(x, decimals) == py_serialize.format_number(x, decimals)
