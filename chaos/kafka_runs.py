"""The Kafka chaos runs: signals produced to a real broker keyed by account, daemons with a Kafka
source in one consumer group, outcomes from their log sinks, orders counted at the sandbox.

``kafka-kill``: one daemon, 10 % of order replies dropped, ``kill -9`` mid-run; a backlog is
produced while it is down and timed after the restart (the catch-up rate, against the accounts'
published order rate). ``kafka-two``: two daemons in one group over 4 accounts and 6 partitions,
one killed; the takeover time is from the kill to the survivor's first order on an account the
killed one was trading.
"""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import murmur2

from chaos.harness import REPO, EngineConfig, Signal, now_ms
from chaos.runs import PUBLISHED_PLACE_ORDER, Result, Size, Stage, _count_goals, stage


class Broker:
    """A running broker: the one named, else one started with ``scripts/kafka.sh``."""

    def __init__(self, bootstrap: str | None) -> None:
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        if bootstrap:
            self.bootstrap = bootstrap
            return
        self._dir = tempfile.TemporaryDirectory(prefix="chaos-kafka-")
        started = subprocess.run(
            ["bash", str(REPO / "scripts" / "kafka.sh"), "start", self._dir.name],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if started.returncode != 0:
            raise RuntimeError(f"the Kafka broker did not start: {started.stderr[-1500:]}")
        self.bootstrap = started.stdout.strip().splitlines()[-1]

    def stop(self) -> None:
        if self._dir is not None:
            subprocess.run(
                ["bash", str(REPO / "scripts" / "kafka.sh"), "stop", self._dir.name],
                check=False,
                timeout=60,
            )
            self._dir.cleanup()
            self._dir = None


def names_on_partitions(count: int, partitions: int, wanted: list[int]) -> list[str]:
    """``count`` account aliases whose murmur2 partitions are ``wanted`` (in turn), so the
    accounts spread over the partitions (and so over the engines of a group) as the run needs."""
    out: list[str] = []
    for i in range(10_000):
        alias = f"k{i}"
        if (murmur2(alias.encode()) & 0x7FFFFFFF) % partitions == wanted[len(out) % len(wanted)]:
            out.append(alias)
            if len(out) == count:
                return out
    raise RuntimeError("no aliases for the partitions wanted")


async def create_topic(bootstrap: str, partitions: int) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        name = f"chaos-{uuid.uuid4().hex[:10]}"
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
        return name
    finally:
        await admin.close()


async def group_lag(bootstrap: str, topic: str, group: str) -> int:
    """End offsets minus the group's committed offsets, summed over the topic's partitions."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        parts = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not parts:
            await consumer.topics()
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = await consumer.end_offsets(parts)
        lag = 0
        for tp, end in ends.items():
            meta = committed.get(tp)
            lag += end - (meta.offset if meta is not None and meta.offset >= 0 else 0)
        return lag
    finally:
        await consumer.stop()
        await admin.close()


async def settle_lag(bootstrap: str, topic: str, group: str, limit_s: float = 30.0) -> int:
    deadline = time.monotonic() + limit_s
    while True:
        lag = await group_lag(bootstrap, topic, group)
        if lag == 0 or time.monotonic() > deadline:
            return lag
        await asyncio.sleep(1.0)


class Producer:
    """Signals produced keyed by account; a signal is *accepted* once the broker acked it."""

    def __init__(self, st: Stage, bootstrap: str, topic: str) -> None:
        self.st = st
        self.topic = topic
        self.kafka = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")

    async def send(self, signals: list[Signal]) -> None:
        ts = now_ms()
        for s in signals:
            s.ts = ts
            self.st.sender.signals[s.id] = s
            await self.kafka.send(self.topic, s.body(), key=s.account.encode())
        await self.kafka.flush()
        at = now_ms()
        for s in signals:
            self.st.sender.accepted.setdefault(s.id, at)

    async def paced(self, signals: list[Signal], rate: float) -> None:
        start = time.monotonic()
        sent = 0
        while sent < len(signals):
            due = min(len(signals), int((time.monotonic() - start) * rate) + 1)
            if due > sent:
                await self.send(signals[sent:due])
                sent = due
            await asyncio.sleep(0.02)


def _signals(prefix: str, start: int, n: int, names: list[str]) -> list[Signal]:
    return [Signal(f"{prefix}-{i}", names[i % len(names)], 0) for i in range(start, start + n)]


async def run_kafka_kill(size: Size, bootstrap: str, workdir: Path | None = None) -> Result:
    accounts = 4
    first = size.pick(300, 40)
    backlog = size.pick(360, 40)
    rate = size.pick(15.0, 10.0)
    r = Result(
        "kafka-kill",
        f"Kafka: {first} signals keyed by account at {rate:.0f}/s on {accounts} accounts, 10 % "
        f"order replies dropped, kill -9 of the daemon once half are decided (production goes "
        f"on), {backlog} more produced while it is down, restart; realistic",
    )
    started = time.monotonic()
    topic = await create_topic(bootstrap, accounts)
    names = names_on_partitions(accounts, accounts, list(range(accounts)))
    async with stage(workdir, accounts) as st:
        cfg = EngineConfig(accounts=accounts, names=names, http=False,
                           kafka=(bootstrap, topic, topic))  # fmt: skip
        producer = Producer(st, bootstrap, topic)
        await producer.kafka.start()
        try:
            d = await st.daemon("engine", cfg)
            await st.venue.faults({"dropAfterAccept": {"PLACE_ORDER": 0.1}})
            # Killed mid-stream: the producer goes on while the daemon is dead, then a backlog.
            producing = asyncio.create_task(producer.paced(_signals("kk", 0, first, names), rate))
            await st.outcomes.wait([f"kk-{i}" for i in range(first // 2)], limit_s=120)
            st.outcomes.poll()
            before_kill = len(st.outcomes.by_id)
            d.kill()
            killed = now_ms()
            await producing
            await producer.send(_signals("kk", first, backlog, names))
            restart = now_ms()
            d.start()
            await d.ready(st.http)
            ready = now_ms()
            done = await st.outcomes.wait(st.sender.accepted, limit_s=900)
        finally:
            await producer.kafka.stop()
        t = await st.tally(settle_s=3.0)
        lag = await settle_lag(bootstrap, topic, topic)
    r.tally = t
    r.seconds = time.monotonic() - started
    # Everything decided by the restarted daemon (the signals produced while it was down, and
    # those the killed one took but had not decided).
    decided = [
        o
        for sid in st.sender.signals
        if (o := _first_after(st, sid, restart)) is not None and not o.event.get("replayed")
    ]
    r.figures["every signal decided before the hang guard"] = done
    r.figures["signals decided before the kill -9"] = before_kill
    r.figures["down"] = (
        f"{(restart - killed) / 1000:.1f} s; healthy {(ready - restart) / 1000:.1f} s after the "
        "restart"
    )
    published = accounts * PUBLISHED_PLACE_ORDER
    figures, rate = catch_up_figures(decided, ready, published)
    r.figures.update(figures)
    if rate is not None:
        r.goal(
            "catch-up rate (first decision -> last) >= 80 % of the published order rate",
            rate >= 0.8 * published,
            timed=True,
        )
    r.figures["consumer lag at the end"] = lag
    _count_goals(r, t)
    r.goal("lag 0", lag == 0)
    return r


def catch_up_figures(
    decided: list[Any], healthy_ms: int, published: float
) -> tuple[dict[str, str], float | None]:
    """The catch-up of a backlog as two figures (docs/kafka.md, "Catch-up"): the delay from
    "healthy" to the first decision (the settle time is in it: no signal older than the
    ownership may be called absent before it), and the rate from the first decision to the
    last (decisions after the first over that span: a throughput, judged against the
    accounts' published order rate). Also the delay to the first order placed (the first
    decision that needed the proof of absence) and how many were found at the venue before it.
    Returns the figures and the rate (None when fewer than two decisions)."""
    out: dict[str, str] = {}
    if not decided:
        return out, None
    stamps = sorted(o.logged_ms for o in decided)
    placed = sorted(
        o.logged_ms
        for o in decided
        if o.status == "accepted" and not o.event.get("resolved_from_unknown")
    )
    out["catch-up delay: healthy -> first decision"] = (
        f"{(stamps[0] - healthy_ms) / 1000:.2f} s"
        + (
            f" (-> first order placed {(placed[0] - healthy_ms) / 1000:.2f} s; "
            f"{sum(1 for t in stamps if t < placed[0])} found at the venue before it)"
            if placed
            else ""
        )
    )
    span_s = (stamps[-1] - stamps[0]) / 1000
    if len(stamps) < 2 or span_s <= 0:
        return out, None
    rate = (len(stamps) - 1) / span_s
    out["catch-up rate: first decision -> last"] = (
        f"{len(stamps)} signals in {span_s:.1f} s = {rate:.1f} signals/s = "
        f"{100 * rate / published:.0f} % of the accounts' published {published:g}/s (the "
        f"engine spends 90 %: {0.9 * published:g}/s); the whole backlog "
        f"{(stamps[-1] - healthy_ms) / 1000:.1f} s after healthy"
    )
    if placed and placed[0] > stamps[0]:
        tail = [t for t in stamps if t >= placed[0]]
        tail_s = (tail[-1] - tail[0]) / 1000
        if len(tail) > 1 and tail_s > 0:
            tail_rate = (len(tail) - 1) / tail_s
            out["catch-up rate: first order -> last"] = (
                f"{len(tail)} signals in {tail_s:.1f} s = {tail_rate:.1f} signals/s = "
                f"{100 * tail_rate / published:.0f} %"
            )
    return out, rate


def _first_after(st: Stage, sid: str, after_ms: int) -> Any:
    for o in st.outcomes.by_id.get(sid, []):
        if o.logged_ms >= after_ms:
            return o
    return None


async def run_kafka_two(size: Size, bootstrap: str, workdir: Path | None = None) -> Result:
    accounts = 4
    partitions = 6
    n = size.pick(400, 60)
    rate = size.pick(12.0, 10.0)
    r = Result(
        "kafka-two",
        f"Kafka: two daemons in one group over {accounts} accounts and {partitions} partitions, "
        f"{n} signals at {rate:.0f}/s, 10 % order replies dropped, one daemon killed (kill -9) "
        "halfway; realistic",
    )
    started = time.monotonic()
    topic = await create_topic(bootstrap, partitions)
    # Two accounts on each half of the partitions: with either assignment both engines trade.
    names = names_on_partitions(accounts, partitions, [0, 3, 1, 4])
    async with stage(workdir, accounts) as st:
        cfg = EngineConfig(accounts=accounts, names=names, http=False,
                           kafka=(bootstrap, topic, topic))  # fmt: skip
        producer = Producer(st, bootstrap, topic)
        await producer.kafka.start()
        try:
            p1 = await st.daemon("p1", cfg, wait=False)
            p2 = await st.daemon("p2", cfg, wait=False)
            await p1.ready(st.http)
            await p2.ready(st.http)
            deadline = time.monotonic() + 90
            while len(p1.partitions() | p2.partitions()) < partitions or not (
                p1.partitions() and p2.partitions()
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError("the two daemons never split the partitions")
                await asyncio.sleep(0.2)
            await st.venue.faults({"dropAfterAccept": {"PLACE_ORDER": 0.1}})
            signals = _signals("k2", 0, n, names)
            await producer.paced(signals[: n // 2], rate)
            await st.outcomes.wait([s.id for s in signals[: n // 4]], limit_s=120)
            st.outcomes.poll()
            victim = {o.event.get("account") for o in st.outcomes.events if o.source == "p1"}
            p1.kill()
            killed = now_ms()
            await producer.paced(signals[n // 2 :], rate)
            done = await st.outcomes.wait(st.sender.accepted, limit_s=300)
        finally:
            await producer.kafka.stop()
        t = await st.tally(settle_s=3.0)
        orders = await st.venue.orders()
        lag = await settle_lag(bootstrap, topic, topic)
    r.tally = t
    r.seconds = time.monotonic() - started
    first = min(
        (
            o
            for o in st.outcomes.events
            if o.source == "p2"
            and o.event.get("account") in victim
            and o.status == "accepted"
            and not o.event.get("replayed")
            and not o.event.get("resolved_from_unknown")
            and o.logged_ms >= killed
        ),
        key=lambda o: o.logged_ms,
        default=None,
    )
    r.figures["every signal decided before the hang guard"] = done
    r.figures["accounts the killed daemon was trading"] = sorted(str(a) for a in victim)
    if first is not None:
        at_venue = next(
            (o["wall_ms"] for o in orders if o["strategy_id"] == first.event["tag"]), None
        )
        took = f"{(first.logged_ms - killed) / 1000:.2f} s"
        if at_venue is not None:
            took += f" (created at the venue {(at_venue - killed) / 1000:.2f} s)"
        r.figures[
            "takeover: kill -> survivor's first acknowledged order on a taken-over account"
        ] = took
    else:
        r.figures["takeover"] = "the survivor sent no order on a taken-over account"
    r.figures["consumer lag at the end"] = lag
    _count_goals(r, t)
    r.goal("lag 0", lag == 0)
    r.goal("the survivor took over the killed daemon's accounts", first is not None)
    # The time goal, judged (a time: printed, not asserted by the tests). With the
    # default settle it is missed by design: docs/kafka.md, "Takeover".
    r.goal(
        "takeover: kill -> first order on a taken-over account <= 3 s",
        first is not None and first.logged_ms - killed <= 3000,
        timed=True,
    )
    return r


RUNS: dict[str, Callable[[Size, str, Path | None], Awaitable[Result]]] = {
    "kafka-kill": run_kafka_kill,
    "kafka-two": run_kafka_two,
}
