"""The in-process bus routes each typed event by its own topic to subscribers, queues and sinks;
the log sink writes each as one JSON line."""

from __future__ import annotations

import logging

import pytest
from msgspec.structs import replace

from engine.io.bus import EventBus, LogSink
from engine.model.events import (
    Event,
    OrderUpdate,
    OutcomeEvent,
    RejectedSignal,
    Topic,
    decode,
)


class Collecting:
    """An EventSink that keeps what it is handed (the bus's own contract, nothing stubbed)."""

    def __init__(self) -> None:
        self.got: list[tuple[Event, str | None]] = []

    def publish(self, event: Event, key: str | None = None) -> None:
        self.got.append((event, key))

    async def flush(self) -> None:
        return None

    async def close(self) -> None:
        return None


async def test_each_event_reaches_subscribers_queues_and_sinks_on_its_own_topic() -> None:
    bus = EventBus()
    seen: list[tuple[Topic, Event]] = []
    bus.subscribe(lambda topic, event: seen.append((topic, event)))
    outcomes_only = bus.queue({"outcomes"})
    everything = bus.queue()
    sink = Collecting()
    bus.add_sink(sink)
    outcome = OutcomeEvent(id="s1", leg="s1", account="a1", status="accepted")
    update = OrderUpdate(account="a1", order_id="o1", event="new", source="stream")
    bus.publish(outcome, "a1")
    bus.publish(update, "a1")
    assert seen == [(Topic.OUTCOMES, outcome), (Topic.ORDER_UPDATES, update)]
    assert outcomes_only.get_nowait() == (Topic.OUTCOMES, outcome) and outcomes_only.empty()
    assert [everything.get_nowait(), everything.get_nowait()] == seen
    assert sink.got == [(outcome, "a1"), (update, "a1")]


async def test_a_failing_subscriber_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus()
    seen: list[Event] = []

    def broken(topic: Topic, event: Event) -> None:
        raise RuntimeError("subscriber bug")

    bus.subscribe(broken)
    bus.subscribe(lambda topic, event: seen.append(event))
    event = OutcomeEvent(id="s1", status="rejected", reason="r")
    bus.publish(event)
    assert seen == [event]
    assert "failed on topic outcomes" in caplog.text


async def test_the_log_sink_writes_each_event_as_its_topic_and_json(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("tests.events.log_sink")
    caplog.set_level(logging.INFO, logger=logger.name)
    bus = EventBus()
    bus.add_sink(LogSink(logger))
    outcome = OutcomeEvent(id="b1", status="rejected", reason="qty must be > 0")
    rejected = RejectedSignal(id="b1", reason="qty must be > 0", payload='{"id":"b1"}', raw=b"{")
    bus.publish(outcome)
    bus.publish(rejected)
    lines = [r.getMessage() for r in caplog.records if r.name == logger.name]
    assert [line.partition(" ")[0] for line in lines] == ["outcomes", "rejected_signals"]
    assert decode("outcomes", lines[0].partition(" ")[2].encode()) == outcome
    # The rejected signal's bytes are in its payload text, not again as base64.
    logged = decode("rejected_signals", lines[1].partition(" ")[2].encode())
    assert logged == replace(rejected, raw=b"") and '"raw":""' in lines[1]
