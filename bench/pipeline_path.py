"""The engine side of the benchmark through the REAL pipeline: ``engine.app.daemon.build_engine``.

The engine is assembled exactly as ``tl-engine run`` assembles it (accounts, rate gates, breakers,
journal, pipeline, stop-limit book, in-process bus), minus the control server and the configured
sources. Each benchmark signal is handed to ``Pipeline.submit`` as a :class:`Delivery` at its
intended send time, and it counts as acknowledged when its outcome event reaches the bus's
``outcomes`` topic. The per-stage stamps are the pipeline's own (``Metrics.record_stamps`` from
its outcome path), so the journal's fsync before the gate, the rate gate and the lanes are all in.

Signal ids carry a per-series prefix: the journal refuses to execute an id twice
(docs/architecture.md, policy 2), so reusing ``bench-0`` across series would measure replays, not
orders.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from bench.engine_path import EPOCH_MINUS_MONO, signal_bytes
from engine.app.config import Config, parse_config
from engine.app.daemon import Engine, build_engine
from engine.model.delivery import Delivery, SignalSource
from engine.model.events import Event, OutcomeEvent, Topic
from engine.observability.metrics import Metrics


class OrderNotAccepted(Exception):
    """A benchmark order whose outcome was not ``accepted`` (counted as an error, by status)."""

    def __init__(self, event: OutcomeEvent) -> None:
        replay = " (a replay of an earlier decision)" if event.replayed else ""
        super().__init__(f"{event.status}{replay}: {event.reason}")
        self.event = event


def bench_config(
    journal_dir: Path,
    account_ids: dict[str, str],
    base_url: str,
    server: str,
    groups: dict[str, list[str]] | None = None,
) -> Config:
    """The engine's config for the benchmark: one login, the given accounts, default limits.

    The venue object is passed to ``build_engine`` already built, so the login's secret
    references are never resolved; they only satisfy the config's schema.
    """
    return parse_config(
        {
            "engine": {"journal_path": str(journal_dir / "bench.journal.sqlite")},
            "logins": {
                "bench": {
                    "base_url": base_url,
                    "server": server,
                    "email": "env:TL_BENCH_EMAIL",
                    "password": "env:TL_BENCH_PASSWORD",
                }
            },
            "accounts": {
                alias: {"login": "bench", "account_id": acc_id}
                for alias, acc_id in account_ids.items()
            },
            "groups": {
                name: {"members": members, "mode": "fanout"}
                for name, members in (groups or {}).items()
            },
        }
    )


class OutcomeWaiter:
    """Resolves one future per signal id when its outcome event is published on the bus."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[tuple[int, OutcomeEvent]]] = {}

    def expect(self, signal_id: str) -> asyncio.Future[tuple[int, OutcomeEvent]]:
        fut: asyncio.Future[tuple[int, OutcomeEvent]] = asyncio.get_running_loop().create_future()
        self._waiting[signal_id] = fut
        return fut

    def on_event(self, topic: Topic, event: Event) -> None:
        # Called synchronously by EventBus.publish: the stamp is the moment the outcome exists.
        if not isinstance(event, OutcomeEvent):
            return
        fut = self._waiting.pop(event.id, None)
        if fut is not None and not fut.done():
            fut.set_result((time.monotonic_ns(), event))


class PipelinePath:
    """``fire(i, intended_ns)`` for the load generator, through ``Pipeline.submit``."""

    def __init__(
        self, engine: Engine, accounts: Sequence[str], waiter: OutcomeWaiter, symbol: str = "EURUSD"
    ) -> None:
        self.engine = engine
        self.accounts = list(accounts)
        self.waiter = waiter
        self.symbol = symbol
        self.prefix = "bench"

    def series(self, prefix: str, metrics: Metrics) -> PipelinePath:
        """Start a new series: fresh signal ids and a fresh recorder for the pipeline's stamps."""
        self.prefix = prefix
        self.engine.pipeline.metrics = metrics
        return self

    async def fire(self, i: int, intended_ns: int) -> int:
        account = self.accounts[i % len(self.accounts)]
        signal_id = f"{self.prefix}-{i}"
        payload = signal_bytes(i, account, self.symbol, intended_ns + EPOCH_MINUS_MONO, signal_id)
        outcome = self.waiter.expect(signal_id)
        self.engine.pipeline.submit(Delivery(payload, time.monotonic_ns()))
        acked, event = await outcome
        # A replay (an id the journal already decided) executed nothing: not an order.
        if event.status != "accepted" or event.replayed:
            raise OrderNotAccepted(event)
        return acked


@contextlib.asynccontextmanager
async def pipeline_engine(
    venue: Any,
    account_ids: dict[str, str],
    base_url: str,
    server: str,
    sources: list[SignalSource] | None = None,
    groups: dict[str, list[str]] | None = None,
) -> AsyncIterator[tuple[Engine, OutcomeWaiter]]:
    """An engine from ``build_engine`` around ``venue`` (started by it, closed with it), its
    journal in a throw-away directory; yields it with an outcome waiter on its bus."""
    with tempfile.TemporaryDirectory(prefix="tl-bench-journal-") as tmp:
        cfg = bench_config(Path(tmp), account_ids, base_url, server, groups)
        engine = await build_engine(cfg, venue=venue, with_control=False, sources=sources or [])
        waiter = OutcomeWaiter()
        engine.bus.subscribe(waiter.on_event)
        try:
            yield engine, waiter
        finally:
            await engine.stop()
