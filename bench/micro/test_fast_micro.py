"""Micro-benchmarks of each hot-path module, compiled against its pure-Python twin.

Run: .venv/bin/python -m pytest bench/micro --benchmark-enable --benchmark-group-by=func -q
(benchmarks are disabled in the ordinary test run; these assert nothing about speed).
"""

from __future__ import annotations

import importlib
import math
from types import ModuleType

import pytest

from engine._fast._py import bucket as py_bucket
from engine._fast._py import serialize as py_serialize
from engine._fast._py import validate as py_validate
from engine.model.domain import Instrument, OrderRequest, OrderType, ProtectionType, Side, Validity

IMPLS: dict[str, tuple[ModuleType, ModuleType, ModuleType]] = {
    "compiled": (
        importlib.import_module("engine._fast.validate"),
        importlib.import_module("engine._fast.serialize"),
        importlib.import_module("engine._fast.bucket"),
    ),
    "pure": (py_validate, py_serialize, py_bucket),
}

INSTRUMENT = Instrument(278, 315, "EURUSD", 1234, (1,))
LIMIT_ORDER = OrderRequest(
    account="ftmo-1",
    instrument=INSTRUMENT,
    side=Side.BUY,
    type=OrderType.LIMIT,
    qty=0.3,
    validity=Validity.GTC,
    strategy_tag="tle-01HX7Z3K9Q",
    price=1.08123,
    stop_loss=1.07,
    stop_loss_type=ProtectionType.ABSOLUTE,
    take_profit=1.09,
    take_profit_type=ProtectionType.ABSOLUTE,
)
MARKET_ORDER = OrderRequest(
    account="ftmo-1",
    instrument=INSTRUMENT,
    side=Side.SELL,
    type=OrderType.MARKET,
    qty=1.0,
    validity=Validity.IOC,
    strategy_tag="tle-01HX7Z3K9R",
)


@pytest.fixture(params=sorted(IMPLS))
def impl(request: pytest.FixtureRequest) -> tuple[ModuleType, ModuleType, ModuleType]:
    return IMPLS[request.param]


def test_validate_limit_order_with_protection(benchmark, impl) -> None:  # type: ignore[no-untyped-def]
    v = impl[0]
    assert benchmark(v.check_order, LIMIT_ORDER, 1.0800, 1.0802, True) == 0


def test_validate_market_order_unknown_quote(benchmark, impl) -> None:  # type: ignore[no-untyped-def]
    v = impl[0]
    assert benchmark(v.check_order, MARKET_ORDER, math.nan, math.nan, True) == 0


def test_serialize_limit_order_body(benchmark, impl) -> None:  # type: ignore[no-untyped-def]
    s = impl[1]
    assert benchmark(s.place_order_body, LIMIT_ORDER).startswith(b"{")


def test_serialize_market_order_request(benchmark, impl) -> None:  # type: ignore[no-untyped-def]
    s = impl[1]
    head = s.order_post_head("demo.tradelocker.com", "7080", "x" * 600, 1)

    def build() -> bytes:
        return s.with_body(head, s.place_order_body(MARKET_ORDER))  # type: ignore[no-any-return]

    assert benchmark(build).startswith(b"POST ")


def test_bucket_try_acquire(benchmark, impl) -> None:  # type: ignore[no-untyped-def]
    bucket = impl[2].TokenBucket(1000, 1.0, 0.1)
    clock = iter(range(0, 10**18, 2_000_000))  # one request every 2 ms: always a token

    def acquire() -> bool:
        return bucket.try_acquire(next(clock))  # type: ignore[no-any-return]

    assert benchmark(acquire)
