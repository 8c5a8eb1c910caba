"""News blackout windows from a real Kafka topic (guards.blackout_topic): a window published on
the topic refuses orders inside it, a window already over and a bad message change nothing, and
the engine goes on."""

from __future__ import annotations

import datetime as dt
import uuid

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from engine.execution.guards import GuardBook
from engine.execution.settings import GuardSettings, RuleSettings
from engine.io.kafka.blackouts import BlackoutFeed
from engine.model.domain import Instrument, OrderRequest, OrderType, Side, Validity
from engine.model.events import Event
from tests.fixtures.waiting import eventually

pytestmark = pytest.mark.kafka

EURUSD = Instrument(278, 315, "EURUSD", 9001, (9101,), quote_currency="USD")


class Bus:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def publish(self, event: Event, key: str | None = None) -> None:
        self.events.append(event)

    async def flush(self) -> None: ...
    async def close(self) -> None: ...


def iso(t: dt.datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


async def test_a_window_on_the_topic_refuses_orders_inside_it(kafka_broker: str) -> None:
    topic = f"blackouts-{uuid.uuid4().hex[:8]}"
    now = dt.datetime.now(dt.UTC)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker)
    await producer.start()
    try:
        past = {"start": iso(now - dt.timedelta(hours=2)), "end": iso(now - dt.timedelta(hours=1))}
        await producer.send_and_wait(topic, orjson.dumps({**past, "name": "old"}))
        await producer.send_and_wait(topic, b'{"start": "soon", "end": 3}')
        window = {
            "start": iso(now - dt.timedelta(minutes=5)),
            "end": iso(now + dt.timedelta(hours=1)),
        }
        await producer.send_and_wait(topic, orjson.dumps({**window, "name": "FOMC"}))
    finally:
        await producer.stop()

    book = GuardBook(GuardSettings(), {"a1": RuleSettings()}, Bus())
    req = OrderRequest("a1", EURUSD, Side.BUY, OrderType.MARKET, 0.1, Validity.IOC, "t1")
    assert book.check(req, 1.1, 1.1001) is None  # nothing read yet
    feed = BlackoutFeed(book, topic, kafka_broker)
    await feed.start()
    try:
        await eventually(lambda: feed.applied + feed.skipped == 3, "the three messages read", 30)
        assert (feed.applied, feed.skipped) == (2, 1)
        assert [b.name for b in book.blackouts] == ["FOMC"]  # the window already over dropped
        why = book.check(req, 1.1, 1.1001)
        assert why is not None and why.startswith("blackout guard: FOMC from ")
    finally:
        await feed.close()
