"""What the control server tells about outcomes and events: the last outcomes (the status page,
the replay of ``GET /events``), a signal's outcome by id (``GET /outcomes/{id}``, from memory
or the journal), and the server-sent events of ``GET /events``, every event on the bus as it
is published, to each follower through a bounded queue."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from typing import Any

import orjson
from aiohttp import web

from engine.io.control.auth import ControlAuth
from engine.io.control.config import ControlConfig, OutcomeLookup
from engine.io.control.replies import error, json_reply
from engine.model.events import Event, OutcomeEvent, Topic, encode

__all__ = ["Client", "Kept", "OutcomeFeed", "row"]

Kept = tuple[int, OutcomeEvent]  # (wall ms when published, the event)


def row(kept: Kept) -> dict[str, Any]:
    """An outcome as JSON-able data, with ``at_ms``: when the engine published it."""
    at_ms, event = kept
    row: dict[str, Any] = orjson.loads(encode(event))
    row["at_ms"] = at_ms
    return row


class Client:
    """One GET /events follower: a bounded queue; a client too slow to keep up is dropped (its
    stream ends; it reconnects and is replayed the last outcomes) rather than slow the engine."""

    __slots__ = ("queue", "topics")

    def __init__(self, topics: frozenset[str] | None) -> None:
        self.topics = topics
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(10_000)

    def push(self, chunk: bytes) -> None:
        try:
            self.queue.put_nowait(chunk)
        except asyncio.QueueFull:
            self.close()

    def close(self) -> None:
        while True:
            try:
                self.queue.put_nowait(None)
                return
            except asyncio.QueueFull:
                self.queue.get_nowait()


class OutcomeFeed:
    """The bus subscriber behind ``GET /events`` and ``GET /outcomes/{id}`` (``outcome_lookup``
    answers ids no longer, or never, in memory from the journal)."""

    def __init__(
        self, config: ControlConfig, auth: ControlAuth, outcome_lookup: OutcomeLookup | None
    ) -> None:
        self.config = config
        self.auth = auth
        self.outcome_lookup = outcome_lookup
        self.recent: deque[Kept] = deque(maxlen=config.recent_outcomes)
        self._by_id: OrderedDict[str, list[Kept]] = OrderedDict()
        self._fanout: list[tuple[Topic, Event]] = []
        self.clients: set[Client] = set()

    def close(self) -> None:
        """End every follower's stream."""
        for client in list(self.clients):
            client.close()

    def on_event(self, topic: Topic, event: Event) -> None:
        """A bus subscriber: keeps the last outcomes and fans every event out to /events.

        Called inside ``publish``, right after a signal's outcome is decided: it only keeps
        references (the events are frozen) and schedules the fan-out; encoding happens later,
        off the outcome's path, and only for someone who asks."""
        if isinstance(event, OutcomeEvent):
            kept = (time.time_ns() // 1_000_000, event)
            self.recent.append(kept)
            if event.id:
                legs = self._by_id.pop(event.id, None) or []
                legs = [k for k in legs if k[1].leg != event.leg]
                legs.append(kept)
                self._by_id[event.id] = legs
                if len(self._by_id) > self.config.outcome_ids:
                    self._by_id.popitem(last=False)
        if self.clients:
            self._fanout.append((topic, event))
            if len(self._fanout) == 1:
                try:
                    asyncio.get_running_loop().call_soon(self.fan_out)
                except RuntimeError:  # published outside the loop: fan out now
                    self.fan_out()

    def fan_out(self) -> None:
        pending, self._fanout = self._fanout, []
        for topic, event in pending:
            chunk = b"event: " + str(topic).encode() + b"\ndata: " + encode(event) + b"\n\n"
            for client in list(self.clients):
                if client.topics is None or topic in client.topics:
                    client.push(chunk)

    async def events(self, request: web.Request) -> web.StreamResponse:
        denied = self.auth.unauthorised(request, "read")
        if denied is not None:
            return denied
        wanted = request.query.get("topics")
        topics = frozenset(t.strip() for t in wanted.split(",") if t.strip()) if wanted else None
        unknown = sorted((topics or frozenset()) - {t.value for t in Topic})
        if unknown:
            return error(
                400,
                f"unknown topic(s) {', '.join(unknown)}; choose from "
                + ", ".join(t.value for t in Topic),
            )
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await resp.prepare(request)
        client = Client(topics)
        replay = request.query.get("replay", "20")
        n = int(replay) if replay.isdigit() else 20
        if n and (topics is None or Topic.OUTCOMES.value in topics):
            for kept in list(self.recent)[-n:]:
                client.push(b"event: outcomes\ndata: " + orjson.dumps(row(kept)) + b"\n\n")
        client.push(b": live\n\n")
        self.clients.add(client)
        try:
            while True:
                try:
                    chunk = await asyncio.wait_for(client.queue.get(), 15.0)
                except TimeoutError:
                    chunk = b": keep-alive\n\n"
                if chunk is None:
                    break
                await resp.write(chunk)
        except ConnectionResetError:
            pass  # the client went away
        finally:
            self.clients.discard(client)
        return resp

    async def outcome(self, request: web.Request) -> web.Response:
        denied = self.auth.unauthorised(request, "read")
        if denied is not None:
            return denied
        signal_id = request.match_info["signal_id"]
        legs = [row(k) for k in self._by_id.get(signal_id, [])]
        source = "memory"
        if not legs and self.outcome_lookup is not None:
            legs = self.outcome_lookup(signal_id)
            source = "journal"
        if not legs:
            return error(
                404, f"no outcome for signal {signal_id!r}: the engine has not seen this id"
            )
        return json_reply({"id": signal_id, "source": source, "legs": legs})
