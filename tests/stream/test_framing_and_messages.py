"""Engine.IO / Socket.IO framing and Streams message decoding, on the wire shapes of section 10."""

from __future__ import annotations

import base64

import orjson
import pytest

from engine.model.domain import Side
from engine.tradelocker.socketio import (
    SIO_ACK,
    SIO_CONNECT,
    SIO_EVENT,
    MalformedPacket,
    decode_sio,
    encode_sio,
)
from engine.tradelocker.stream import (
    MalformedMessage,
    StreamPosition,
    StreamSyncEnd,
    StreamToken,
    decode_message,
    jwt_expiry,
)


def test_an_event_with_an_ack_id_is_encoded_as_the_server_expects() -> None:
    wire = encode_sio(SIO_EVENT, "/streams-api", ["subscriptions", {"a": 1}], ack_id=7)
    assert wire == b'42/streams-api,7["subscriptions",{"a":1}]'
    assert encode_sio(SIO_CONNECT, "/streams-api") == b"40/streams-api,"


def test_server_packets_decode_with_namespace_ack_id_and_payload() -> None:
    ack = decode_sio('3/streams-api,12[{"status":"ok"}]')
    assert (ack.type, ack.namespace, ack.ack_id, ack.data) == (
        SIO_ACK,
        "/streams-api",
        12,
        [{"status": "ok"}],
    )
    event = decode_sio('2/streams-api,["stream",{"type":"Property","name":"SyncEnd"}]')
    assert event.type == SIO_EVENT and event.ack_id is None and event.data[0] == "stream"
    assert decode_sio("1/streams-api").namespace == "/streams-api"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "type digit"),
        ("x", "type digit"),
        ("9", "unknown"),
        ('2/streams-api,["stream",{', "not JSON"),
        ('2/streams-api,{"not":"a list"}', "JSON array"),
        ("3/streams-api,[1]", "needs an id"),
        ('5/streams-api,["x"]', "binary"),
    ],
)
def test_a_malformed_packet_names_what_is_wrong(text: str, reason: str) -> None:
    with pytest.raises(MalformedPacket, match=reason):
        decode_sio(text)


def test_a_position_is_normalised_from_the_streams_vocabulary() -> None:
    msg = decode_message(
        {
            "type": "Position",
            "accountId": "700001",
            "positionId": "7277816997907673698",
            "lots": "0.05",
            "lotSize": "100000",
            "units": "5000",
            "instrument": "EURUSD",
            "openPrice": "1.08512",
            "openDateTime": "2024-05-01T10:00:00.250Z",
            "side": "SELL",
            "stopLossOrderId": "",
            "takeProfitLimit": None,
            "fee": "-0.35",
        }
    )
    assert isinstance(msg, StreamPosition)
    assert msg.position_id == "7277816997907673698"  # never through a float
    assert (msg.side, msg.lots, msg.open_price, msg.fee) == (Side.SELL, 0.05, 1.08512, -0.35)
    assert msg.open_ms == 1714557600250
    assert msg.stop_loss_order_id is None and msg.take_profit_limit is None


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"type": "Position", "accountId": "1"}, "no 'positionId'"),
        (
            {
                "type": "OpenOrder",
                "accountId": "1",
                "orderId": "2",
                "instrument": "X",
                "amount": "lots",
                "side": "BUY",
                "status": "PENDING",
            },
            "'amount' is 'lots'",
        ),
        (
            {
                "type": "OpenOrder",
                "accountId": "1",
                "orderId": "2",
                "instrument": "X",
                "amount": "1",
                "side": "UP",
                "status": "PENDING",
            },
            "BUY or SELL",
        ),
        ({"type": "AccountStatus", "accountId": "1", "balance": True}, "boolean"),
        (["not", "an", "object"], "expected an object"),
        ({"no": "type"}, "no 'type'"),
    ],
)
def test_a_broken_message_is_refused_with_its_reason(payload: object, reason: str) -> None:
    with pytest.raises(MalformedMessage, match=reason):
        decode_message(payload)


def test_sync_end_and_unknown_types_decode_without_error() -> None:
    assert decode_message({"type": "Property", "name": "SyncEnd"}) == StreamSyncEnd(None)
    assert decode_message({"type": "SomethingNew", "x": 1}) is None


def test_stream_token_expiry_is_read_from_the_jwt_and_never_printed() -> None:
    claims = base64.urlsafe_b64encode(orjson.dumps({"exp": 1_900_000_000})).rstrip(b"=")
    token = f"eyJhbGciOiJIUzI1NiJ9.{claims.decode()}.c2ln"
    assert jwt_expiry(token) == 1_900_000_000
    assert jwt_expiry("not-a-jwt") == 0.0
    tok = StreamToken("700001", "SANDBOX", token, jwt_expiry(token))
    assert token not in repr(tok)
    assert tok.expires_within(60, now=1_900_000_000 - 30)
    assert not tok.expires_within(60, now=1_900_000_000 - 300)
