"""Signal decoding behaviour on both implementations, and which one the engine gets."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from types import ModuleType

import orjson
import pytest

import engine._fast as fast
import engine.execution.signals
from engine._fast._py import decode as py_decode
from engine.model.domain import Action, OrderType, ProtectionType
from engine.model.errors import SignalError

IMPLS: dict[str, ModuleType] = {
    "compiled": importlib.import_module("engine._fast.decode"),
    "pure": py_decode,
}


@pytest.fixture(params=sorted(IMPLS))
def impl(request: pytest.FixtureRequest) -> ModuleType:
    return IMPLS[request.param]


def enc(**fields: object) -> bytes:
    return orjson.dumps({"id": "s1", "account": "acc1", **fields})


def test_stop_limit_place_with_trailing_stop_keeps_every_value(impl: ModuleType) -> None:
    payload = enc(
        action="place", instrument_id=278, side="sell", type="stop-limit", qty=2, price=1.1,
        stop_price=1.2, sl_type="trailing", trailing_offset=15, ts=1.7e18,
    )  # fmt: skip
    sig = impl.decode(payload, arrived_ns=7)
    assert sig.type is OrderType.STOP_LIMIT and sig.qty == 2.0 and type(sig.qty) is float
    assert sig.stop_loss_type is ProtectionType.TRAILING_OFFSET and sig.trailing_offset == 15.0
    assert sig.ts_ns == 1_700_000_000_000_000_000 and sig.raw is payload and sig.arrived_ns == 7


def test_venue_ids_given_as_numbers_become_digit_strings(impl: ModuleType) -> None:
    sig = impl.decode(enc(action="close", position_id=2**64 - 1))
    assert sig.action is Action.CLOSE and sig.position_id == "18446744073709551615"


def test_ms_timestamp_past_int64_nanoseconds_is_still_exact(impl: ModuleType) -> None:
    sig = impl.decode(enc(action="cancel_all", ts=99_999_999_999_999))
    assert sig.ts_ns == 99_999_999_999_999_000_000


def test_unknown_field_is_named_after_a_valid_id(impl: ModuleType) -> None:
    with pytest.raises(SignalError) as info:
        impl.decode(enc(action="cancel_all", qtty=1, Side="buy"))
    assert info.value.signal_id == "s1"
    assert info.value.reason.startswith("unknown field(s) Side, qtty:")


def test_bad_id_is_reported_before_unknown_fields_and_carries_no_id(impl: ModuleType) -> None:
    with pytest.raises(SignalError) as info:
        impl.decode(orjson.dumps({"id": "", "bogus": 1}))
    assert info.value.signal_id is None and "'id' must be a non-empty string" in info.value.reason


def test_non_ascii_digits_count_as_a_venue_id_as_str_isdigit_says(impl: ModuleType) -> None:
    assert impl.decode(enc(action="cancel", order_id="١٢٣")).order_id == "١٢٣"


def test_nan_in_the_payload_is_refused_as_invalid_json(impl: ModuleType) -> None:
    with pytest.raises(SignalError) as info:
        impl.decode(b'{"id": "s1", "account": "a", "action": "place", "qty": NaN}')
    assert info.value.reason.startswith("signal is not valid JSON") and info.value.signal_id is None


def test_engine_signals_decode_is_the_switched_implementation() -> None:
    assert engine.execution.signals.decode is fast.decode_signal
    assert engine.execution.signals.peek_id is fast.peek_signal_id
    expected = "engine._fast.decode" if fast.COMPILED else "engine._fast._py.decode"
    assert fast.decode_signal.__module__ == expected


def test_pure_switch_gives_the_pipeline_the_twin_decoder() -> None:
    env = {k: v for k, v in os.environ.items() if k != "TL_ENGINE_PURE"}
    snippet = "from engine.execution import intake as p; print(p.decode.__module__)"
    outs = []
    for pure in ("0", "1"):
        proc = subprocess.run(
            [sys.executable, "-c", snippet],
            env={**env, "TL_ENGINE_PURE": pure},
            capture_output=True,
            text=True,
            check=True,
        )
        outs.append(proc.stdout.strip())
    assert outs == ["engine._fast.decode", "engine._fast._py.decode"]
