"""The signal contract: good signals decode to typed fields, every bad one names its fix."""

from __future__ import annotations

import orjson
import pytest

from engine.execution.signals import MAX_SIGNAL_BYTES, decode, peek_id
from engine.model.domain import Action, OrderType, Priority, ProtectionType, Side
from engine.model.errors import SignalError

TARGETS = frozenset({"acc1", "acc2", "grp"})


def enc(**fields: object) -> bytes:
    base: dict[str, object] = {"id": "s1", "account": "acc1", "action": "place"}
    base.update(fields)
    return orjson.dumps({k: v for k, v in base.items() if v is not ...})


def reason(payload: bytes) -> str:
    with pytest.raises(SignalError) as info:
        decode(payload, targets=TARGETS)
    return info.value.reason


def test_market_place_decodes_every_field() -> None:
    sig = decode(
        enc(
            symbol="EURUSD",
            side="buy",
            type="market",
            qty=0.5,
            stop_loss=1.05,
            sl_type="absolute",
            take_profit=20,
            tp_type="offset",
            ts=1_700_000_000_123,
            priority="market",
        ),
        arrived_ns=42,
        targets=TARGETS,
    )
    assert sig.id == "s1" and sig.account == "acc1" and sig.action is Action.PLACE
    assert sig.side is Side.BUY and sig.type is OrderType.MARKET and sig.qty == 0.5
    assert sig.stop_loss_type is ProtectionType.ABSOLUTE
    assert sig.take_profit_type is ProtectionType.OFFSET
    assert sig.ts_ns == 1_700_000_000_123_000_000
    assert sig.arrived_ns == 42 and sig.priority is Priority.MARKET


def test_ts_in_nanoseconds_is_kept_as_is() -> None:
    sig = decode(enc(symbol="X", side="sell", type="market", qty=1, ts=1_700_000_000_123_456_789))
    assert sig.ts_ns == 1_700_000_000_123_456_789


def test_ts_in_seconds_is_refused_as_a_unit_mistake() -> None:
    assert "neither epoch milliseconds" in reason(
        enc(symbol="X", side="sell", type="market", qty=1, ts=1_700_000_000)
    )


def test_venue_ids_stay_strings_even_when_sent_as_numbers() -> None:
    sig = decode(enc(action="cancel", order_id=7277816997907673698), targets=TARGETS)
    assert sig.order_id == "7277816997907673698"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1,2]", "must be a JSON object"),
        (orjson.dumps({"account": "acc1", "action": "place"}), "missing required field 'id'"),
        (enc(account="nobody"), "neither an account alias nor a group"),
        (enc(action="buy"), "action must be one of"),
        (enc(symbol="X", side="long", type="market", qty=1), "side must be 'buy' or 'sell'"),
        (enc(symbol="X", side="buy", type="fok", qty=1), "type must be one of"),
        (enc(symbol="X", side="buy", type="market", qty=-1), "'qty' must be more than 0"),
        (enc(symbol="X", side="buy", type="market", qty=1e9), "at most 1000 lots"),
        (enc(symbol="X", side="buy", type="market", qty="1"), "'qty' must be a JSON number"),
        (enc(symbol="X", side="buy", type="market", qty=True), "'qty' must be a JSON number"),
        (enc(side="buy", type="market", qty=1), "needs 'symbol' or 'instrument_id'"),
        (enc(symbol="X", side="buy", type="limit", qty=1), "needs 'price'"),
        (enc(symbol="X", side="buy", type="stop_limit", qty=1, price=1.1), "needs 'stop_price'"),
        (enc(symbol="X", side="buy", type="market", qty=1, price=1.1), "takes no 'price'"),
        (
            enc(symbol="X", side="buy", type="market", qty=1, sl_type="trailing", stop_loss=5),
            "needs 'trailing_offset'",
        ),
        (
            enc(symbol="X", side="buy", type="market", qty=1, take_profit=5, tp_type="trailing"),
            "cannot be trailingOffset",
        ),
        (enc(action="modify", order_id="12"), "modify changes nothing"),
        (enc(action="cancel"), "needs 'order_id'"),
        (enc(action="close"), "needs 'position_id'"),
        (enc(action="cancel", order_id="12ab"), "numeric id"),
        (enc(action="reverse", position_id="5", qty=1), "reverse takes no 'qty'"),
        (enc(action="close_all", colour="red"), "unknown field(s) colour"),
        (enc(action="close_all", priority="urgent"), "'priority' must be one of"),
    ],
)
def test_bad_signal_is_refused_with_a_reason(payload: bytes, expected: str) -> None:
    assert expected in reason(payload)


def test_nan_and_infinity_are_refused() -> None:
    # JSON has no NaN/inf literals; orjson refuses them and a number overflowing a double.
    nan = b'{"id":"s","account":"acc1","action":"place","symbol":"X","side":"buy",'
    assert "not valid JSON" in reason(nan + b'"type":"limit","qty":1,"price":NaN}')
    assert "not valid JSON" in reason(nan + b'"type":"limit","qty":1,"price":1e999}')


def test_oversized_message_is_refused_before_parsing() -> None:
    assert "KiB limit" in reason(b" " * (MAX_SIGNAL_BYTES + 1))


def test_rejected_signal_still_carries_its_id() -> None:
    with pytest.raises(SignalError) as info:
        decode(enc(action="cancel"), targets=TARGETS)
    assert info.value.signal_id == "s1"
    assert peek_id(enc(action="nonsense")) == "s1"
    assert peek_id(b"{broken") is None


def test_every_action_has_a_minimal_valid_form() -> None:
    minimal: dict[str, dict[str, object]] = {
        "modify": {"order_id": "1", "price": 1.2},
        "cancel": {"ref": "earlier"},
        "cancel_all": {},
        "modify_position": {"position_id": "2", "stop_loss": 1.0},
        "close": {"position_id": "2", "qty": 0.1},
        "reverse": {"ref": "earlier"},
        "close_all": {"symbol": "EURUSD"},
    }
    for action, extra in minimal.items():
        assert decode(enc(action=action, **extra), targets=TARGETS).action.wire == action
