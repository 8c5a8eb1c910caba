"""Stream event latency: sandbox emit → engine event on the bus.

The clock starts when the sandbox's state emits a change (its stream listener is called
synchronously by the order book) and stops when :class:`engine.state.live.LiveState`
publishes the matching ``order_updates`` event. In between: python-socketio's server queue and
emit, the loopback WebSocket, picows, the engine's Engine.IO/Socket.IO decoding, message decoding
and the live-state update. Sandbox and engine share one process and one event loop (both clocks are
``time.monotonic_ns``), so the figures include the sandbox's own emit cost; they are an upper
bound on the engine's share.

Orders are placed at a constant rate and each latency is measured from that order's own emit,
so a slow event does not hide behind the next one.

    .venv/bin/python -m bench.stream_latency --events 2000 --rate 500
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import time
from typing import Any

import aiohttp
from hdrh.histogram import HdrHistogram

from engine.io.bus import EventBus
from engine.model.events import Event, OrderUpdate, Topic
from engine.state.live import LiveState
from engine.tradelocker.stream_session import LoginStream, StreamSettings
from tests.stream.sandbox import ACCOUNTS, SandboxTokens, run_streams_sandbox


async def measure(events: int, rate: float, uvloop: bool) -> dict[str, Any]:
    hist = HdrHistogram(1, 10_000_000_000, 3)  # ns
    emitted: dict[str, int] = {}
    done = asyncio.Event()
    received = 0

    async with run_streams_sandbox() as sb, aiohttp.ClientSession() as http:

        def on_emit(account_id: str, msg: dict[str, Any]) -> None:
            if msg.get("type") == "OpenOrder" and msg.get("status") == "PENDING":
                emitted.setdefault(str(msg["orderId"]), time.monotonic_ns())

        def on_event(topic: Topic, event: Event) -> None:
            nonlocal received
            if isinstance(event, OrderUpdate) and event.event == "new" and event.order_id:
                start = emitted.pop(event.order_id, None)
                if start is not None:
                    hist.record_value(max(1, time.monotonic_ns() - start))
                    received += 1
                    if received >= events:
                        done.set()

        # Registered before the Streams server's listener would not matter: both run in the
        # same synchronous emit, before any byte is written.
        sb.state.add_stream_listener(on_emit)
        bus = EventBus()
        bus.subscribe(on_event)
        live = LiveState(
            LoginStream(
                StreamSettings(url=sb.url, developer_api_key=sb.api_key),
                SandboxTokens(sb, http),
                ACCOUNTS,
            ),
            bus,
        )
        await live.start()
        async with asyncio.timeout(15):
            await live.wait_live()
        interval = 1.0 / rate
        t0 = time.monotonic()
        for i in range(events):
            # Resting limit orders far from the market: one OpenOrder PENDING each, no fills.
            sb.place("700001", "buy", 0.01, type="limit", price=0.5)
            next_at = t0 + (i + 1) * interval
            delay = next_at - time.monotonic()
            await asyncio.sleep(max(0.0, delay))
        async with asyncio.timeout(30):
            await done.wait()
        await live.close()

    def us(ns: float) -> float:
        return round(ns / 1000.0, 1)

    return {
        "events": received,
        "rate_per_s": rate,
        "event_loop": "uvloop" if uvloop else "asyncio",
        "p50_us": us(hist.get_value_at_percentile(50)),
        "p90_us": us(hist.get_value_at_percentile(90)),
        "p99_us": us(hist.get_value_at_percentile(99)),
        "p99.9_us": us(hist.get_value_at_percentile(99.9)),
        "max_us": us(hist.get_max_value()),
        "machine": f"{platform.machine()} {platform.processor() or ''} "
        f"python {platform.python_version()}".strip(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=500.0, help="orders per second")
    parser.add_argument("--asyncio", action="store_true", help="plain asyncio instead of uvloop")
    args = parser.parse_args()
    if args.asyncio:
        result = asyncio.run(measure(args.events, args.rate, False))
    else:
        import uvloop

        result = uvloop.run(measure(args.events, args.rate, True))
    for key, value in result.items():
        print(f"{key:12} {value}")


if __name__ == "__main__":
    main()
