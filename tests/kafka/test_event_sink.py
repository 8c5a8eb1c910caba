"""KafkaEventSink against the real broker: topics, keys, confirmed delivery, rejected signals."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from typing import ClassVar

import msgspec
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from engine.io.kafka.sink import KafkaEventSink, KafkaSinkConfig
from engine.model.events import (
    SCHEMAS,
    AccountUpdate,
    Event,
    ExecutionEvent,
    GroupOutcome,
    GuardEvent,
    LegResult,
    OrderUpdate,
    OutcomeEvent,
    PositionUpdate,
    RejectedSignal,
    Topic,
)

pytestmark = pytest.mark.kafka

# One event of every topic but rejected_signals (whose message value is the signal's bytes).
SAMPLES: dict[Topic, Event] = {
    Topic.OUTCOMES: OutcomeEvent(id="s1", leg="s1", account="acct-a", status="accepted"),
    Topic.EXECUTIONS: ExecutionEvent(
        account="acct-a", account_id="1", position_id="p1", instrument="EURUSD", side="buy",
        qty=0.1, price=1.1, kind="open", source="stream",
    ),
    Topic.ACCOUNT_UPDATES: AccountUpdate(
        account="acct-a", account_id="1", currency="USD", balance=1e4, equity=1e4, margin_used=0.0,
        margin_available=1e4, blocked_balance=0.0, credit=0.0, source="stream",
    ),
    Topic.POSITION_UPDATES: PositionUpdate(
        account="acct-a", account_id="1", position_id="p1", instrument="EURUSD", side="buy",
        qty=0.1, avg_price=1.1, open_ms=1, event="opened", source="stream",
    ),
    Topic.ORDER_UPDATES: OrderUpdate(account="acct-a", order_id="o1", event="new", source="stream"),
    Topic.GUARDS: GuardEvent(account="acct-a", kind="warning", rule="daily_loss", reason="50 %"),
    Topic.GROUP_OUTCOMES: GroupOutcome(
        id="s1", group="g", status="accepted", reason="1 of 1",
        legs=(LegResult(account="acct-a", status="accepted"),),
    ),
}  # fmt: skip


class _StrayEvent(Event, kw_only=True, frozen=True):
    """An event class naming a topic the engine does not have (a programming error)."""

    topic: ClassVar[Topic] = "no_such_topic"  # type: ignore[assignment]
    a: int = 1


@pytest.fixture
async def sink(kafka_broker: str) -> AsyncIterator[KafkaEventSink]:
    s = KafkaEventSink(KafkaSinkConfig(kafka_broker, topic_prefix=f"t{uuid.uuid4().hex[:8]}."))
    await s.start()
    yield s
    await s.close()


async def read_all(bootstrap: str, topic: str, count: int) -> list[ConsumerRecord[bytes, bytes]]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    got: list[ConsumerRecord[bytes, bytes]] = []
    try:
        while len(got) < count:
            batch = await consumer.getmany(timeout_ms=20_000)
            if not batch:
                raise AssertionError(f"only {len(got)} of {count} messages on {topic}")
            for records in batch.values():
                got.extend(records)
    finally:
        await consumer.stop()
    return got


async def test_every_topic_receives_its_events_under_the_prefix_keyed_by_account(
    kafka_broker: str, sink: KafkaEventSink
) -> None:
    assert set(SAMPLES) == set(Topic) - {Topic.REJECTED_SIGNALS}
    for event in SAMPLES.values():
        sink.publish(event, key="acct-a")
    await sink.flush()
    assert sink.sent == len(Topic) - 1 and sink.failed == 0
    for topic, event in SAMPLES.items():
        [record] = await read_all(kafka_broker, sink.topic(topic), 1)
        assert msgspec.json.decode(record.value or b"", type=SCHEMAS[topic]) == event
        assert record.key == b"acct-a"


async def test_one_accounts_outcomes_stay_in_publish_order(
    kafka_broker: str, sink: KafkaEventSink
) -> None:
    for i in range(300):
        sink.publish(OutcomeEvent(id=f"s{i}", status="accepted"), key="acct-a")
    await sink.flush()
    records = await read_all(kafka_broker, sink.topic("outcomes"), 300)
    assert [orjson.loads(r.value or b"")["id"] for r in records] == [f"s{i}" for i in range(300)]


async def test_confirmed_publish_completes_once_the_broker_has_the_event(
    kafka_broker: str, sink: KafkaEventSink
) -> None:
    await sink.publish_confirmed(OutcomeEvent(id="s1", status="accepted"), key="acct-a")
    [record] = await read_all(kafka_broker, sink.topic("outcomes"), 1)
    assert orjson.loads(record.value or b"")["id"] == "s1"


async def test_rejected_signal_keeps_its_original_bytes_with_the_reason_in_headers(
    kafka_broker: str, sink: KafkaEventSink
) -> None:
    raw = b'\xff{"id": "s9", not json'
    sink.publish(
        RejectedSignal(
            id="s9", reason="not valid JSON at byte 0", origin="kafka:signals/0@7", raw=raw
        )
    )
    sink.publish(RejectedSignal(id="s10", reason="qty must be > 0", payload='{"id":"s10"}'))
    await sink.flush()
    # Keyless, so they may land on different partitions: tell them apart by their id header.
    records = await read_all(kafka_broker, sink.topic("rejected_signals"), 2)
    by_id = {dict(r.headers)["id"]: r for r in records}
    first, second = by_id[b"s9"], by_id[b"s10"]
    assert first.value == raw
    headers = dict(first.headers)
    assert headers["reason"] == b"not valid JSON at byte 0"
    assert headers["id"] == b"s9" and headers["origin"] == b"kafka:signals/0@7"
    assert orjson.loads(headers["event"])["reason"] == "not valid JSON at byte 0"
    assert second.value == b'{"id":"s10"}'
    assert dict(second.headers)["reason"] == b"qty must be > 0"


async def test_bad_events_are_refused_with_a_log_line_and_the_sink_carries_on(
    kafka_broker: str, sink: KafkaEventSink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    sink.publish(_StrayEvent())
    sink.publish(OutcomeEvent(id="x", status="accepted", reason=object()))  # type: ignore[arg-type]
    assert "unknown event topic 'no_such_topic'" in caplog.text
    assert "not serialisable" in caplog.text
    after = OutcomeEvent(id="after", status="accepted")
    await sink.publish_confirmed(after)
    [record] = await read_all(kafka_broker, sink.topic("outcomes"), 1)
    assert msgspec.json.decode(record.value or b"", type=OutcomeEvent) == after
