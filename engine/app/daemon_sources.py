"""The signal sources of an assembled engine (``engine.app.daemon``): local JSON lines, the
HTTP source with what an earlier run accepted and never finished (the journal's intake, its
stale signals expired first), and the Kafka source with its partition handover and the
per-login budget shares that follow its assignment (docs/kafka.md)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from engine.execution.publish import outcome_event
from engine.execution.signals import decode
from engine.io.settings import SourceSettings
from engine.io.sources.local import LocalSignalSource
from engine.model.delivery import SignalSource
from engine.model.domain import Outcome, OutcomeStatus
from engine.model.errors import ConfigError, SignalError

if TYPE_CHECKING:
    from engine.app.daemon import Engine

__all__ = [
    "BudgetFollower",
    "Handover",
    "expire_stale_intake",
    "kafka_source_config",
    "signal_sources",
]

log = logging.getLogger("engine.app.daemon")  # the daemon's log lines keep one logger


async def expire_stale_intake(engine: Engine) -> int:
    """Signals an earlier run accepted over HTTP and never executed, with no ``ts`` of their own
    and accepted longer ago than ``max_signal_age_ms``: expired now, the age in the reason.
    (A signal with ``ts`` is aged from it by the pipeline itself; an id the journal knows is
    answered from the journal; bytes that do not decode are refused by the pipeline.)"""
    store, pipeline = engine.journal.intake, engine.pipeline
    if not pipeline.max_age_ns or not store.backlog:
        return 0
    now = time.time_ns()
    keep, expired = [], 0
    for row in store.backlog:
        age_ns = now - row.received_ns
        try:
            sig = decode(row.payload, 0, engine.accounts.targets, pipeline.max_qty)
            legs = engine.accounts.legs(sig.id, sig.account)
        except SignalError:
            keep.append(row)
            continue
        if (
            age_ns <= pipeline.max_age_ns
            or sig.ts_ns
            or any(engine.journal.decided(leg.key) is not None for leg in legs)
        ):
            keep.append(row)
            continue
        reason = (
            f"signal is {age_ns // 1_000_000} ms old (accepted over HTTP by an earlier run that "
            "stopped before executing it), over max_signal_age_ms: not traded"
        )
        for leg in legs:
            outcome = Outcome(
                leg.key, leg.session.alias, OutcomeStatus.EXPIRED, sig.action, reason=reason
            )
            engine.bus.publish(outcome_event(outcome), outcome.account)
            await engine.journal.record(outcome)
        store.done(row.seq)
        expired += 1
    store.backlog = keep
    return expired


def signal_sources(engine: Engine, sources: tuple[SourceSettings, ...]) -> list[SignalSource]:
    out: list[SignalSource] = []
    for src in sources:
        if src.kind == "local":
            out.append(LocalSignalSource(src.path))
        elif src.kind == "http":
            from engine.io.sources.http import HttpSignalSource

            if engine.control is None:
                raise ConfigError("an http source needs the control server")
            if engine.http_intake is not None:
                raise ConfigError('only one [[sources]] kind = "http" is allowed')
            engine.http_intake = _http_intake(engine)
            engine.control.open_intake(engine.http_intake)
            out.append(HttpSignalSource(engine.control.signals, engine.http_intake.backlog()))
        elif src.kind == "kafka":
            from engine.io.kafka.sink import commit_barrier
            from engine.io.kafka.source import KafkaSignalSource

            assert src.bootstrap and src.topic and src.group_id
            # Outcome events on Kafka before the signal's offset is committed (Policies 2).
            # The only source: the accounts this process serves are its partitions' accounts,
            # and the per-login budgets follow them (docs/kafka.md, "Per-login budgets").
            follow = _budget_follower(engine) if len(sources) == 1 else None
            if follow is None and engine.share_budgets is not None:
                log.warning(
                    "a kafka source beside other sources: this engine takes each login's whole "
                    "quote budget; engines sharing a login in one group may earn HTTP 429s"
                )
            # A partition moving between engines: unsent signals withdrawn, budgets spent.
            hand = Handover(engine, follow)
            out.append(
                KafkaSignalSource(
                    kafka_source_config(src),
                    before_commit=commit_barrier(engine.kafka_sinks),
                    on_assign=hand.assigned,
                    on_revoke=follow,
                    on_revoking=hand.revoking,
                )
            )
            hand.source = out[-1]
            if follow is not None:
                follow.source = out[-1]
                follow(frozenset())  # no partition yet: no share of any login's budget
    if engine.http_intake is None and engine.journal.intake.backlog:
        # Accepted over HTTP by an earlier run and never finished: they still get executed or
        # answered, though POST /signals takes nothing new without an http source.
        from engine.io.sources.http import HttpSignalSource

        engine.http_intake = _http_intake(engine)
        backlog = engine.http_intake.backlog()
        log.warning(
            "%d signal(s) accepted over HTTP by an earlier run are executed now, though no "
            'http source is configured (POST /signals answers 503: add [[sources]] kind = "http")',
            len(backlog),
        )
        out.append(HttpSignalSource(None, backlog))
    elif engine.http_intake is not None and engine.http_intake.outstanding:
        log.warning(
            "%d signal(s) accepted over HTTP by an earlier run and never finished are handed "
            "to the pipeline first (an id already decided is answered, not executed again)",
            len(engine.http_intake.outstanding),
        )
    return out


def kafka_source_config(src: SourceSettings) -> Any:
    """The Kafka consumer's settings (engine.io.kafka.source.KafkaSourceConfig) from the TOML's."""
    from engine.io.kafka.source import KafkaSourceConfig

    assert src.bootstrap and src.topic and src.group_id
    return KafkaSourceConfig(
        src.bootstrap,
        src.topic,
        src.group_id,
        fetch_max_wait_ms=src.fetch_max_wait_ms,
        session_timeout_ms=src.session_timeout_ms,
        heartbeat_interval_ms=src.heartbeat_interval_ms,
        rebalance_timeout_ms=src.rebalance_timeout_ms,
        max_poll_interval_ms=src.max_poll_interval_ms,
        assignment_strategy=src.assignment_strategy,
        revoke_grace_s=src.revoke_grace_ms / 1000,
        fence_ms=src.fence_ms,
    )


class BudgetFollower:
    """After every assignment and revocation: the accounts of the Kafka source's partitions
    are the ones this process serves, and its share of each login's budget follows them."""

    def __init__(self, engine: Engine, share: Callable[[Collection[str] | None], Any]) -> None:
        self.engine = engine
        self.share = share
        self.source: Any = None  # engine.io.kafka.source.KafkaSignalSource, set once built

    def __call__(self, _partitions: frozenset[int]) -> None:
        src = self.source
        served = (
            [a for a in self.engine.config.accounts if src.owns(a)]
            if src is not None and src.assigned
            else []
        )
        self.share(served)


class Handover:
    """A Kafka partition moving between engines (docs/kafka.md, "Handover"). On revocation the
    signals of its accounts not yet written to the venue are withdrawn (the next owner decides
    them); an account this process did not serve at its previous assignment starts with its
    rate budget spent for one window (the venue's window may still hold the last owner's
    requests). Then the per-login budget shares follow (``follow``)."""

    def __init__(self, engine: Engine, follow: BudgetFollower | None) -> None:
        self.engine = engine
        self.follow = follow
        self.source: Any = None  # engine.io.kafka.source.KafkaSignalSource, set once built
        self.served: frozenset[str] = frozenset()  # accounts at the last assignment

    def revoking(self, partitions: frozenset[int]) -> None:
        src = self.source
        keys = [t for t in self.engine.accounts.targets if src.partition_of(t) in partitions]
        self.engine.pipeline.withdraw(keys)

    def assigned(self, partitions: frozenset[int]) -> None:
        src = self.source
        sessions = self.engine.accounts.sessions
        served = frozenset(a for a in sessions if src.owns(a))
        for alias in served - self.served:
            gate = sessions[alias].gate
            if gate is not None:
                gate.spend_window()
        self.served = served
        if self.follow is not None:
            self.follow(partitions)


def _budget_follower(engine: Engine) -> BudgetFollower | None:
    if engine.share_budgets is None:
        return None
    return BudgetFollower(engine, engine.share_budgets)


def _http_intake(engine: Engine) -> Any:
    from engine.io.kafka.sink import commit_barrier
    from engine.io.sources.http import HttpIntake

    # An intake row goes once the outcome is recorded and, with Kafka sinks, on Kafka.
    return HttpIntake(engine.journal.intake, before_done=commit_barrier(engine.kafka_sinks))
