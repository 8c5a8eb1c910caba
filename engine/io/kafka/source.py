"""Signals from a Kafka topic, through a consumer group (aiokafka).

Signals are keyed by account, so one account's signals land in one partition, in order, and several
engine processes in one group split the accounts between them. Offsets are committed by hand:

* a delivery's ``ack()`` (the pipeline calls it once the outcome is durable in the journal) marks
  its offset done; the commit point of a partition is the first offset delivered and not yet
  acked, so an early ack never commits past a signal still in flight;
* commits are coalesced by a background task (one in flight at a time), so ``ack()`` costs no
  broker round trip;
* on a rebalance the revoked partitions first get ``revoke_grace_s`` for in-flight acks, then
  their commit point is committed synchronously before the partitions move: the next owner
  starts exactly after the last signal this process finished. A delivery acked after its
  partition moved is not committed here (the new owner redelivers it and the journal dedupes).

Outcome events durable before the commit (docs/architecture.md, policy 2): with ``before_commit``
(the daemon passes the Kafka event sink's :meth:`~engine.io.kafka.sink.KafkaEventSink.barrier`),
every commit first waits until the events published before it are acknowledged by the broker: one
barrier per commit, covering every ack the commit carries, since the pipeline publishes a
signal's outcome before it acks the delivery. If the barrier fails (an outcome never reached
Kafka), nothing is committed and every owned partition is rewound to its last commit point: those
signals are delivered again and the journal answers them with their recorded outcome, published
anew.

``on_assign`` / ``on_revoke`` receive the partition numbers (``on_revoking`` too, called when a
revocation begins, before the grace: the engine withdraws what it has not sent of them), and
:meth:`KafkaSignalSource.owns` says whether an account's partition is currently ours, so the
engine can open or close account sessions as partitions move.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    InvalidSessionTimeoutError,
    KafkaError,
)
from aiokafka.partitioner import murmur2

from engine.io.settings import fence_after_ms
from engine.model.delivery import Delivery, Lease
from engine.model.errors import ConfigError

log = logging.getLogger(__name__)

PartitionsHook = Callable[[frozenset[int]], Awaitable[None] | None]
CommitBarrier = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class KafkaSourceConfig:
    """The consumer's settings; the defaults are ``engine.io.settings.SourceSettings``'s (the
    trade-offs: docs/kafka.md, "Takeover")."""

    bootstrap_servers: str
    topic: str = "signals"
    group_id: str = "tl-engine"
    client_id: str = "tl-engine"
    # The broker answers a fetch as soon as one byte is there (fetch_min_bytes=1): the wait only
    # bounds an idle poll, so it is kept short for fast reaction to rebalances, not for latency.
    fetch_max_wait_ms: int = 100
    max_poll_records: int = 500
    session_timeout_ms: int = 1_500
    heartbeat_interval_ms: int = 300
    rebalance_timeout_ms: int = 3_000
    max_poll_interval_ms: int = 300_000
    assignment_strategy: str = "roundrobin"
    # A new group starts from the oldest signal: nothing is lost; stale ones expire by policy.
    auto_offset_reset: str = "earliest"
    revoke_grace_s: float = 1.0
    # Self-fencing: orders of this engine's partitions are written only until fence_ms after
    # the send of the last heartbeat the coordinator answered; 0: session_timeout_ms - 2 x
    # heartbeat_interval_ms (docs/kafka.md, "Self-fencing").
    fence_ms: int = 0
    extra: dict[str, object] = field(default_factory=dict)  # passed through to AIOKafkaConsumer

    def __post_init__(self) -> None:
        if not self.bootstrap_servers:
            raise ConfigError("kafka source: bootstrap (host:port) is required")
        if self.auto_offset_reset not in ("earliest", "latest"):
            raise ConfigError("kafka source: auto_offset_reset must be earliest or latest")
        if self.assignment_strategy not in _ASSIGNORS:
            raise ConfigError(
                f"kafka source: assignment_strategy must be one of {', '.join(_ASSIGNORS)}"
            )
        if not self.heartbeat_interval_ms < self.fence_after_ms < self.session_timeout_ms:
            raise ConfigError(
                f"kafka source: fence_ms ({self.fence_after_ms}) must be above "
                f"heartbeat_interval_ms ({self.heartbeat_interval_ms}) and below "
                f"session_timeout_ms ({self.session_timeout_ms})"
            )

    @property
    def fence_after_ms(self) -> int:
        """How long after an answered heartbeat was sent this engine may still write orders."""
        return fence_after_ms(self.fence_ms, self.session_timeout_ms, self.heartbeat_interval_ms)


_ASSIGNORS: dict[str, type[AbstractPartitionAssignor]] = {
    "roundrobin": RoundRobinPartitionAssignor,
    "range": RangePartitionAssignor,
    "sticky": StickyPartitionAssignor,
}


class _PartitionLedger:
    """Delivered and acked offsets of one owned partition."""

    __slots__ = ("acked", "committed", "delivered", "done", "epoch", "first", "since_ns")

    def __init__(self, epoch: int, committed: int | None = None) -> None:
        self.epoch = epoch  # bumps each time the partition is (re)assigned to us (or rewound)
        self.delivered: deque[int] = deque()
        self.acked: set[int] = set()
        self.done: int | None = None  # next offset to commit (one past the last contiguous ack)
        self.committed: int | None = committed
        self.first: int | None = None  # the first offset delivered under this epoch
        self.since_ns = time.time_ns()  # when we came to own it (Delivery.owned_since_ns)

    def rewind_point(self) -> int | None:
        """Where consumption must restart so nothing uncommitted is skipped."""
        return self.committed if self.committed is not None else self.first

    def ack(self, offset: int) -> bool:
        """Mark one offset done; True if the commit point moved."""
        self.acked.add(offset)
        moved = False
        while self.delivered and self.delivered[0] in self.acked:
            first = self.delivered.popleft()
            self.acked.discard(first)
            self.done = first + 1
            moved = True
        return moved

    @property
    def in_flight(self) -> int:
        return len(self.delivered)


class KafkaSignalSource:
    """A :class:`engine.model.delivery.SignalSource` on one Kafka topic.

    Call :meth:`start` (joins the group) before iterating :meth:`deliveries`; :meth:`close` commits
    what was acked and leaves the group, so the partitions move to the others at once.
    """

    def __init__(
        self,
        config: KafkaSourceConfig,
        *,
        on_assign: PartitionsHook | None = None,
        on_revoke: PartitionsHook | None = None,
        on_revoking: PartitionsHook | None = None,
        before_commit: CommitBarrier | None = None,
    ) -> None:
        self.config = config
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._on_revoking = on_revoking
        self._before_commit = before_commit
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=config.bootstrap_servers,
            client_id=config.client_id,
            group_id=config.group_id,
            enable_auto_commit=False,
            auto_offset_reset=config.auto_offset_reset,
            fetch_max_wait_ms=config.fetch_max_wait_ms,
            fetch_min_bytes=1,
            max_poll_records=config.max_poll_records,
            session_timeout_ms=config.session_timeout_ms,
            heartbeat_interval_ms=config.heartbeat_interval_ms,
            max_poll_interval_ms=config.max_poll_interval_ms,
            rebalance_timeout_ms=config.rebalance_timeout_ms,
            partition_assignment_strategy=(_ASSIGNORS[config.assignment_strategy],),
            **config.extra,  # type: ignore[arg-type]
        )
        self._ledgers: dict[int, _PartitionLedger] = {}
        self._epoch = 0
        self._commit_wanted = asyncio.Event()
        self._acked = asyncio.Event()
        self._commit_lock = asyncio.Lock()
        self._committer: asyncio.Task[None] | None = None
        self._closed = False
        self._partition_count: int | None = None
        self.lease = Lease(config.fence_after_ms * 1_000_000)
        self.commits = 0  # successful commit requests (for health and tests)
        self.rewinds = 0  # commits withheld because the barrier failed (for health and tests)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self._consumer.start()
        except BaseException:
            with contextlib.suppress(Exception):  # no "Unclosed AIOKafkaConsumer" after a failure
                await self._consumer.stop()
            raise
        self._watch_heartbeats()
        self._consumer.subscribe([self.config.topic], listener=_Listener(self))
        self._committer = asyncio.create_task(self._commit_loop(), name="kafka-source:commit")

    def _watch_heartbeats(self) -> None:
        """Renew :attr:`lease` with the send time of every heartbeat the group coordinator
        answered. aiokafka has no public hook for it: its coordinator's ``_do_heartbeat``
        (aiokafka 0.14; True when the member is still in the group, rebalancing included) is
        wrapped. Without it the engine could not prove its membership and would hold every
        order, so a version that lacks it stops the start here, with the reason."""
        coordinator = getattr(self._consumer, "_coordinator", None)
        beat = getattr(coordinator, "_do_heartbeat", None)
        if beat is None:
            raise RuntimeError(
                "kafka source: this aiokafka has no GroupCoordinator._do_heartbeat to watch, so "
                'the engine cannot fence itself (docs/kafka.md, "Self-fencing"); use the '
                "aiokafka version pyproject.toml pins"
            )
        lease = self.lease

        async def heartbeat() -> bool:
            sent = time.monotonic_ns()
            answered = bool(await beat())
            if answered:
                lease.renew(sent)
            return answered

        coordinator._do_heartbeat = heartbeat  # type: ignore[union-attr]

    async def close(self) -> None:
        """Commit every acked offset, then leave the group. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._committer is not None:
            self._committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._committer
        # aiokafka does not call the rebalance listener on stop: revoke ourselves, so the final
        # commit happens and the engine hears that it no longer owns these accounts.
        await self._revoked(self.assigned)
        await self._consumer.stop()

    def describe(self) -> dict[str, object]:
        """What ``/status`` shows of this source: the partitions this engine owns now (empty
        during a rebalance), whether its self-fencing lease holds, how many writes waited on it,
        and the commits made."""
        lease = self.lease
        return {
            "topic": self.config.topic,
            "group_id": self.config.group_id,
            "assigned": sorted(self._ledgers),
            "lease": "lapsed" if lease.lapsed() else "held",
            "fenced_waits": lease.waits,
            "commits": self.commits,
        }

    # -- ownership ----------------------------------------------------------------------------

    @property
    def assigned(self) -> frozenset[int]:
        return frozenset(self._ledgers)

    def partition_of(self, account: str) -> int:
        """The partition an account's signals go to with Kafka's default (murmur2) partitioner."""
        n = self._partitions()
        return (murmur2(account.encode()) & 0x7FFFFFFF) % n

    def owns(self, account: str) -> bool:
        return self.partition_of(account) in self._ledgers

    def _partitions(self) -> int:
        if self._partition_count is None:
            parts = self._consumer.partitions_for_topic(self.config.topic)
            if not parts:
                raise RuntimeError(f"topic {self.config.topic!r} has no known partitions yet")
            self._partition_count = len(parts)
        return self._partition_count

    # -- delivery -----------------------------------------------------------------------------

    async def deliveries(self) -> AsyncIterator[Delivery]:
        topic = self.config.topic
        while not self._closed:
            try:
                batches = await self._consumer.getmany(
                    timeout_ms=self.config.fetch_max_wait_ms * 5,
                    max_records=self.config.max_poll_records,
                )
            except IllegalStateError:
                return  # the consumer was stopped by close()
            except InvalidSessionTimeoutError:
                raise ConfigError(
                    f"kafka source: the broker refuses session_timeout_ms = "
                    f"{self.config.session_timeout_ms} (outside its group.min.session.timeout.ms "
                    "and group.max.session.timeout.ms; Kafka's default floor is 6000): lower "
                    "group.min.session.timeout.ms on the broker, or raise session_timeout_ms "
                    "(and with it the takeover time)"
                ) from None
            arrived = time.monotonic_ns()
            epochs = {p: ledger.epoch for p, ledger in self._ledgers.items()}
            for tp, records in batches.items():
                for record in records:
                    ledger = self._ledgers.get(tp.partition)
                    if ledger is None or ledger.epoch != epochs.get(tp.partition) or self._closed:
                        # Revoked (perhaps given back) while we were yielding: whoever owns the
                        # partition now starts again from its committed offset.
                        break
                    ledger.delivered.append(record.offset)
                    if ledger.first is None:
                        ledger.first = record.offset
                    yield Delivery(
                        payload=record.value or b"",
                        arrived_ns=arrived,
                        ack=self._acker(tp.partition, ledger.epoch, record.offset),
                        key=record.key,
                        origin=f"kafka:{topic}/{tp.partition}@{record.offset}",
                        owned_since_ns=ledger.since_ns,
                        lease=self.lease,
                    )

    def _acker(self, partition: int, epoch: int, offset: int) -> Callable[[], Awaitable[None]]:
        async def ack() -> None:
            ledger = self._ledgers.get(partition)
            if ledger is None or ledger.epoch != epoch:
                return  # the partition moved since delivery: not ours to commit
            if ledger.ack(offset):
                self._commit_wanted.set()
            self._acked.set()

        return ack

    # -- commits ------------------------------------------------------------------------------

    async def _commit_loop(self) -> None:
        while True:
            await self._commit_wanted.wait()
            self._commit_wanted.clear()
            await self._commit_now()

    async def _commit_now(self, partitions: frozenset[int] | None = None) -> None:
        async with self._commit_lock:
            offsets: dict[TopicPartition, int] = {}
            for p, ledger in self._ledgers.items():
                if partitions is not None and p not in partitions:
                    continue
                if ledger.done is not None and ledger.done != ledger.committed:
                    offsets[TopicPartition(self.config.topic, p)] = ledger.done
            if not offsets:
                return
            if self._before_commit is not None:
                try:
                    await self._before_commit()
                except Exception as exc:
                    # The failed event may belong to any signal not yet committed, in any
                    # partition: every owned partition goes back to its commit point.
                    log.error(
                        "kafka source: events of acked signals are not durable (%s); nothing "
                        "committed, partitions %s rewound to their last commit",
                        type(exc).__name__,
                        sorted(self._ledgers),
                    )
                    self._rewind(frozenset(self._ledgers))
                    return
            try:
                await self._consumer.commit(offsets)
            except (CommitFailedError, IllegalStateError) as exc:
                # A rebalance got there first; the revoke path or the next owner takes over.
                log.warning("kafka source: commit skipped (%s)", type(exc).__name__)
                return
            except KafkaError as exc:
                log.error("kafka source: commit failed (%s); will retry", exc)
                self._commit_wanted.set()
                return
            self.commits += 1
            for tp, offset in offsets.items():
                owned = self._ledgers.get(tp.partition)
                if owned is not None:
                    owned.committed = offset

    def _rewind(self, partitions: frozenset[int]) -> None:
        """Deliver these partitions again from their commit point, under a new epoch, so acks of
        the deliveries before the rewind commit nothing."""
        for p in partitions:
            old = self._ledgers.get(p)
            if old is None:
                continue
            point = old.rewind_point()
            self._epoch += 1
            self._ledgers[p] = _PartitionLedger(self._epoch, old.committed)
            self._ledgers[p].since_ns = old.since_ns
            if point is not None:
                try:
                    self._consumer.seek(TopicPartition(self.config.topic, p), point)
                except IllegalStateError:
                    continue  # revoked meanwhile: the next owner starts from the commit point
            self.rewinds += 1

    # -- rebalance ----------------------------------------------------------------------------

    async def _revoked(self, revoked: frozenset[int]) -> None:
        if not revoked:
            return
        # First the engine withdraws the signals of these partitions it has not written to the
        # venue yet: the next owner decides them (docs/kafka.md, "Handover").
        await _call(self._on_revoking, revoked)
        self.lease.poke()  # writes held by a lapsed lease look again: now withdrawn
        # Give in-flight signals a moment to finish, so their offsets go with this commit.
        await self._settle(revoked)
        await self._commit_now(revoked)
        for p in revoked:
            self._ledgers.pop(p, None)
        log.info("kafka source: partitions revoked %s", sorted(revoked))
        await _call(self._on_revoke, revoked)

    async def _settle(self, partitions: frozenset[int]) -> None:
        """Wait (at most ``revoke_grace_s``) until no delivery of these partitions is un-acked."""
        deadline = time.monotonic() + self.config.revoke_grace_s
        while any(self._ledgers[p].in_flight for p in partitions if p in self._ledgers):
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning(
                    "kafka source: giving up on in-flight signals; they will be redelivered"
                )
                return
            self._acked.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._acked.wait(), left)

    async def _assigned(self, assigned: frozenset[int]) -> None:
        # The group just gave us these: proof of membership now (the coordinator restarted
        # our session timer when it answered the join, a moment before).
        self.lease.renew(time.monotonic_ns())
        for p in assigned:
            self._epoch += 1
            self._ledgers[p] = _PartitionLedger(self._epoch)
        self._partition_count = None
        log.info("kafka source: partitions assigned %s", sorted(assigned))
        await _call(self._on_assign, assigned)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, source: KafkaSignalSource) -> None:
        self._source = source

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._source._revoked(frozenset(tp.partition for tp in revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._source._assigned(frozenset(tp.partition for tp in assigned))


async def _call(hook: PartitionsHook | None, partitions: frozenset[int]) -> None:
    if hook is None:
        return
    try:
        result = hook(partitions)
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("kafka source: partition hook failed")


__all__ = [
    "CommitBarrier",
    "ConsumerRecord",
    "KafkaSignalSource",
    "KafkaSourceConfig",
    "PartitionsHook",
]
