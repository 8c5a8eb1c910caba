"""The event schemas: one per topic, topic names fixed, JSON shapes as consumers read them, and
strict decoding with the shared encoder's output."""

from __future__ import annotations

import msgspec
import pytest

from engine.model.events import (
    SCHEMAS,
    TOPICS,
    AccountUpdate,
    ExecutionEvent,
    OrderUpdate,
    OutcomeEvent,
    PositionUpdate,
    RejectedSignal,
    Topic,
    decode,
    encode,
)

# docs/signals.md's outcome example, key for key (``origin`` is set on undecodable bytes).
OUTCOME_KEYS = [
    "id", "leg", "account", "status", "action", "order_id", "position_id", "reason", "errmsg",
    "tag", "resolved_from_unknown", "replayed", "origin", "filled_qty", "avg_price",
    "remaining_qty",
]  # fmt: skip


def test_topic_names_are_the_kafka_topic_suffixes_unchanged() -> None:
    assert [t.value for t in Topic] == [
        "outcomes",
        "executions",
        "account_updates",
        "position_updates",
        "order_updates",
        "rejected_signals",
        "guards",
        "group_outcomes",
    ]
    assert TOPICS == tuple(t.value for t in Topic)
    assert Topic.OUTCOMES == "outcomes"  # str-valued: a plain name compares equal


def test_every_topic_has_one_schema_and_each_schema_knows_its_topic() -> None:
    assert set(SCHEMAS) == set(Topic)
    for topic, schema in SCHEMAS.items():
        assert schema.topic is topic
    assert OutcomeEvent.topic is Topic.OUTCOMES
    assert RejectedSignal.topic is Topic.REJECTED_SIGNALS
    assert ExecutionEvent.topic is Topic.EXECUTIONS
    assert AccountUpdate.topic is Topic.ACCOUNT_UPDATES
    assert PositionUpdate.topic is Topic.POSITION_UPDATES
    assert OrderUpdate.topic is Topic.ORDER_UPDATES


def test_an_outcome_encodes_with_every_documented_key_in_order() -> None:
    event = OutcomeEvent(
        id="sig-42",
        leg="sig-42",
        account="ftmo1",
        status="accepted",
        action="place",
        order_id="7277816997907673698",
        tag="e1lgdj2v000004kjbqanlf",
    )
    data = encode(event)
    as_dict = msgspec.json.decode(data)
    assert list(as_dict) == OUTCOME_KEYS
    assert as_dict["order_id"] == "7277816997907673698" and as_dict["position_id"] is None
    assert as_dict["resolved_from_unknown"] is False and as_dict["replayed"] is False
    assert decode("outcomes", data) == event


def test_a_rejected_signal_round_trips_its_original_bytes() -> None:
    raw = b'\xff{"id": "s9", not json'
    event = RejectedSignal(id="s9", reason="not valid JSON at byte 0", origin="local", raw=raw)
    back = msgspec.json.decode(encode(event), type=RejectedSignal, strict=True)
    assert back == event and back.raw == raw and back.status == "rejected"


def test_strict_decoding_refuses_a_value_outside_the_schema() -> None:
    good = encode(OutcomeEvent(id="s1", status="accepted"))
    with pytest.raises(msgspec.ValidationError, match="status"):
        msgspec.json.decode(good.replace(b'"accepted"', b'"maybe"'), type=OutcomeEvent)
    fill = encode(
        ExecutionEvent(
            account="a", account_id="1", position_id="p", instrument="EURUSD", side="buy",
            qty=0.1, kind="open", source="stream",
        )
    )  # fmt: skip
    with pytest.raises(msgspec.ValidationError, match="qty"):
        msgspec.json.decode(fill.replace(b'"qty":0.1', b'"qty":"0.1"'), type=ExecutionEvent)
    with pytest.raises(msgspec.ValidationError, match="id"):
        msgspec.json.decode(b'{"status": "accepted"}', type=OutcomeEvent)


def test_events_are_frozen_because_every_subscriber_shares_one() -> None:
    event = OutcomeEvent(id="s1", status="accepted")
    with pytest.raises(AttributeError):
        event.status = "rejected"  # type: ignore[misc]
