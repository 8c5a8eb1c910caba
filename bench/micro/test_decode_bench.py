"""Micro-benchmark of signal decoding, compiled against its pure-Python twin.

Run: .venv/bin/python -m pytest bench/micro/test_decode_bench.py --benchmark-enable
--benchmark-group-by=func -q (benchmarks are disabled in the ordinary test run; nothing here asserts
a speed). Both sides include orjson.loads, which they share.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import orjson
import pytest

from engine._fast._py import decode as py_decode
from engine.model.errors import SignalError

IMPLS: dict[str, ModuleType] = {
    "compiled": importlib.import_module("engine._fast.decode"),
    "pure": py_decode,
}
TARGETS = frozenset({"ftmo-1", "ftmo-2", "group-a"})

LIMIT_PLACE = orjson.dumps(
    {
        "id": "sig-01HX7Z3K9Q", "ts": 1_700_000_000_123, "account": "ftmo-1", "action": "place",
        "symbol": "EURUSD", "side": "buy", "type": "limit", "qty": 0.3, "price": 1.08123,
        "stop_loss": 1.07, "take_profit": 1.09, "sl_type": "absolute", "tp_type": "absolute",
    }
)  # fmt: skip
MARKET_PLACE = orjson.dumps(
    {
        "id": "sig-01HX7Z3K9R", "ts": 1_700_000_000_123, "account": "ftmo-1", "action": "place",
        "symbol": "EURUSD", "side": "sell", "type": "market", "qty": 1,
    }
)  # fmt: skip
CANCEL = orjson.dumps(
    {"id": "sig-01HX7Z3K9S", "account": "ftmo-1", "action": "cancel", "order_id": "7205759403"}
)
BAD_SIDE = orjson.dumps(
    {
        "id": "sig-01HX7Z3K9T", "account": "ftmo-1", "action": "place", "symbol": "EURUSD",
        "side": "hold", "type": "market", "qty": 1,
    }
)  # fmt: skip


@pytest.fixture(params=sorted(IMPLS))
def impl(request: pytest.FixtureRequest) -> ModuleType:
    return IMPLS[request.param]


def test_decode_limit_place_with_protection(benchmark, impl) -> None:  # type: ignore[no-untyped-def]
    benchmark(impl.decode, LIMIT_PLACE, 1, TARGETS)


def test_decode_market_place(benchmark, impl) -> None:  # type: ignore[no-untyped-def]
    benchmark(impl.decode, MARKET_PLACE, 1, TARGETS)


def test_decode_cancel(benchmark, impl) -> None:  # type: ignore[no-untyped-def]
    benchmark(impl.decode, CANCEL, 1, TARGETS)


def test_decode_rejected_signal(benchmark, impl) -> None:  # type: ignore[no-untyped-def]
    def rejected() -> None:
        try:
            impl.decode(BAD_SIDE, 1, TARGETS)
        except SignalError:
            return
        raise AssertionError("the bad side was accepted")

    benchmark(rejected)


def test_orjson_loads_alone_the_shared_floor(benchmark) -> None:  # type: ignore[no-untyped-def]
    benchmark(orjson.loads, LIMIT_PLACE)
