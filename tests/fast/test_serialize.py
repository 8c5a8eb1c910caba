"""Request bodies and heads, against both implementations."""

from __future__ import annotations

import math
import re
from types import ModuleType

import orjson
import pytest

from engine.model.domain import (
    Instrument,
    OrderModification,
    OrderRequest,
    OrderType,
    ProtectionType,
    Side,
    Validity,
)
from tests.fast.impls import SERIALIZE


@pytest.fixture(params=sorted(SERIALIZE))
def s(request: pytest.FixtureRequest) -> ModuleType:
    return SERIALIZE[request.param]


def inst(tick: float = 0.00001, step: float = 0.01) -> Instrument:
    return Instrument(278, 315, "EURUSD", 1234, (5,), lot_step=step, tick_sizes=((0.0, tick),))


def market(**kw: object) -> OrderRequest:
    base: dict[str, object] = {
        "account": "a",
        "instrument": inst(),
        "side": Side.BUY,
        "type": OrderType.MARKET,
        "qty": 0.3,
        "validity": Validity.IOC,
        "strategy_tag": "tle-7f3a",
    }
    base.update(kw)
    return OrderRequest(**base)  # type: ignore[arg-type]


def test_market_order_body_omits_unset_keys(s: ModuleType) -> None:
    body = s.place_order_body(market())
    assert body == (
        b'{"tradableInstrumentId":278,"routeId":1234,"qty":0.3,"side":"buy","type":"market",'
        b'"validity":"IOC","strategyId":"tle-7f3a"}'
    )


def test_numbers_use_the_instrument_decimals_never_exponents(s: ModuleType) -> None:
    req = market(
        type=OrderType.LIMIT,
        validity=Validity.GTC,
        qty=0.1 + 0.2,
        price=0.00002,
        stop_loss=0.00001,
        take_profit=1.0000000000000002,
    )
    body = s.place_order_body(req)
    assert b'"qty":0.3,' in body
    assert b'"price":0.00002,' in body
    assert b'"stopLoss":0.00001,' in body
    assert b'"takeProfit":1,' in body
    assert re.search(rb"\d[eE][-+]?\d", body) is None


def test_protection_types_default_to_absolute_and_offsets_keep_their_fraction(
    s: ModuleType,
) -> None:
    body = orjson.loads(
        s.place_order_body(
            market(stop_loss=12.5, stop_loss_type=ProtectionType.OFFSET, take_profit=1.2)
        )
    )
    assert body["stopLoss"] == 12.5 and body["stopLossType"] == "offset"
    assert body["takeProfit"] == 1.2 and body["takeProfitType"] == "absolute"


def test_trailing_stop_sends_the_trailing_offset(s: ModuleType) -> None:
    body = orjson.loads(
        s.place_order_body(
            market(
                side=Side.SELL, stop_loss_type=ProtectionType.TRAILING_OFFSET, trailing_offset=15.0
            )
        )
    )
    assert body["stopLossType"] == "trailingOffset"
    assert body["trStopOffset"] == 15
    assert body["side"] == "sell" and "stopLoss" not in body


def test_stop_order_sends_stop_price_and_not_price(s: ModuleType) -> None:
    body = orjson.loads(
        s.place_order_body(
            market(type=OrderType.STOP, validity=Validity.GTC, stop_price=1.1, price=1.2)
        )
    )
    assert body["stopPrice"] == 1.1 and "price" not in body and body["type"] == "stop"


def test_stop_limit_is_refused_because_the_venue_has_no_such_type(s: ModuleType) -> None:
    req = market(type=OrderType.STOP_LIMIT, validity=Validity.GTC, price=1.1, stop_price=1.1)
    with pytest.raises(ValueError, match="emulates"):
        s.place_order_body(req)


def test_non_finite_number_is_refused(s: ModuleType) -> None:
    with pytest.raises(ValueError, match="non-finite"):
        s.place_order_body(market(qty=math.nan))


def test_strategy_tag_is_json_escaped(s: ModuleType) -> None:
    body = s.place_order_body(market(strategy_tag='a"b\\c\né'))
    assert orjson.loads(body)["strategyId"] == 'a"b\\c\né'


def test_modify_order_sends_only_what_changes(s: ModuleType) -> None:
    body = s.modify_order_body(OrderModification(price=1.07, qty=0.5), inst())
    assert body == b'{"price":1.07,"qty":0.5}'
    with pytest.raises(ValueError, match="changes nothing"):
        s.modify_order_body(OrderModification(), inst())


def test_modify_position_none_removes_the_level(s: ModuleType) -> None:
    assert s.modify_position_body(inst(), 1.05, None) == b'{"stopLoss":1.05,"takeProfit":null}'
    tr = s.modify_position_body(inst(), 1.05, 1.2, ProtectionType.TRAILING_OFFSET, 20.0)
    assert orjson.loads(tr) == {"stopLoss": 1.05, "takeProfit": 1.2, "trailingOffset": 20}
    with pytest.raises(ValueError, match="absolute price or a trailing"):
        s.modify_position_body(inst(), 10.0, None, ProtectionType.OFFSET)


def test_close_position_zero_means_all(s: ModuleType) -> None:
    assert s.close_position_body(0.0, inst()) == b'{"qty":0}'
    assert s.close_position_body(0.25, inst()) == b'{"qty":0.25}'
    with pytest.raises(ValueError, match="close qty"):
        s.close_position_body(-1.0, inst())


def test_order_post_is_one_well_formed_http_request(s: ModuleType) -> None:
    head = s.order_post_head("demo.tradelocker.com", "7080", "tok.abc", 2)
    body = s.place_order_body(market())
    wire = s.with_body(head, body)
    header_block, _, payload = wire.partition(b"\r\n\r\n")
    lines = header_block.split(b"\r\n")
    assert lines[0] == b"POST /backend-api/trade/accounts/7080/orders HTTP/1.1"
    headers = dict(line.split(b": ", 1) for line in lines[1:])
    assert headers == {
        b"Host": b"demo.tradelocker.com",
        b"Authorization": b"Bearer tok.abc",
        b"accNum": b"2",
        b"Content-Type": b"application/json",
        b"Content-Length": str(len(body)).encode(),
    }
    assert payload == body


def test_header_injection_is_refused_without_echoing_the_secret(s: ModuleType) -> None:
    with pytest.raises(ValueError) as err:
        s.order_post_head("h", "1", "secret-token\r\nX-Evil: 1", 1)
    assert "secret-token" not in str(err.value)
    head = s.request_head("GET", "h", "/x", "t", 1, developer_key="tl-key")
    assert b"\r\ndeveloper-api-key: tl-key\r\n" in head
