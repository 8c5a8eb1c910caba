"""Every event the demo publishes survives the shared encoder and a strict decode against its
topic's schema: the schemas describe what the engine really sends."""

from __future__ import annotations

import msgspec

from engine.app.demo import run_demo
from engine.io.bus import EventBus
from engine.model.events import SCHEMAS, Event, Topic, encode


async def test_the_demos_events_decode_strictly_as_their_topics_schema() -> None:
    bus = EventBus()
    decoded: dict[Topic, int] = {}
    mismatches: list[tuple[Topic, Event, object]] = []

    def check(topic: Topic, event: Event) -> None:
        # Decoded by the topic it came on, as a Kafka consumer of that topic would.
        back = msgspec.json.decode(encode(event), type=SCHEMAS[topic], strict=True)
        if back != event:
            mismatches.append((topic, event, back))
        decoded[topic] = decoded.get(topic, 0) + 1

    bus.subscribe(check)
    lines: list[str] = []
    assert await run_demo(0, "0", lines.append, bus=bus) == 0
    assert mismatches == []
    # The demo places, refuses bad input, fans out to a group (one group outcome each) and
    # triggers an emulated stop-limit; it opens no Streams API session, so account, position
    # and execution updates are not among them.
    expected = {Topic.OUTCOMES, Topic.REJECTED_SIGNALS, Topic.ORDER_UPDATES, Topic.GROUP_OUTCOMES}
    assert set(decoded) == expected, decoded
    assert decoded[Topic.OUTCOMES] >= 16
