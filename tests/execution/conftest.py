"""An engine wired to the in-process PaperVenue (a real Venue implementation, not a mock) and a
real SQLite journal in a temporary directory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.execution.accounts import Accounts, AccountSession
from engine.execution.pipeline import Pipeline
from engine.execution.reconcile import Reconciler
from engine.execution.settings import AccountSettings, GroupSettings
from engine.execution.stoplimit import StopLimitBook
from engine.io.bus import EventBus
from engine.model.clock import LIVE, Clock
from engine.model.delivery import Delivery
from engine.model.events import Event, OutcomeEvent, RejectedSignal, Topic
from engine.state.journal import Journal
from engine.state.stop_limits import StopLimitStore
from engine.venue.paper import PaperVenue


@dataclass
class Harness:
    venue: PaperVenue
    pipeline: Pipeline
    journal: Journal
    bus: EventBus
    book: StopLimitBook
    outcomes: list[OutcomeEvent] = field(default_factory=list)
    rejected: list[RejectedSignal] = field(default_factory=list)
    updates: list[Event] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)

    def send(self, **fields: Any) -> None:
        payload = orjson.dumps(fields)
        name = str(fields.get("id"))

        async def ack() -> None:
            self.acked.append(name)

        self.pipeline.submit(Delivery(payload, 0, ack))

    def send_raw(self, payload: bytes) -> None:
        self.pipeline.submit(Delivery(payload, 0))

    async def run(self, **fields: Any) -> OutcomeEvent:
        """Send one signal and return its (last) outcome."""
        self.send(**fields)
        await self.pipeline.drain()
        mine = [o for o in self.outcomes if o.id == fields.get("id")]
        assert mine, f"no outcome for {fields.get('id')}"
        return mine[-1]

    def outcome(self, signal_id: str) -> OutcomeEvent:
        mine = [o for o in self.outcomes if o.leg == signal_id or o.id == signal_id]
        assert len(mine) == 1, mine
        return mine[0]


async def build(
    tmp_path: Path,
    venue: PaperVenue | None = None,
    aliases: tuple[str, ...] = ("a1", "a2"),
    groups: tuple[GroupSettings, ...] = (),
    multipliers: dict[str, float] | None = None,
    unknown_policy: str = "reject",
    settle_s: float = 0.05,
    stop_limit_store: Callable[[Journal], StopLimitStore] | None = None,
    clock: Clock = LIVE,
) -> Harness:
    venue = venue or PaperVenue(aliases)
    sessions = [
        AccountSession(
            AccountSettings(a, "paper", acc_num=i + 1, multiplier=(multipliers or {}).get(a, 1.0)),
            venue,
        )
        for i, a in enumerate(aliases)
    ]
    accounts = Accounts(sessions, groups)
    await accounts.start()
    journal = Journal(tmp_path / "journal.sqlite", synchronous="NORMAL")
    bus = EventBus()
    reconciler = Reconciler(venue, settle_s=settle_s, max_s=2.0, first_delay_s=0.01)
    book = StopLimitBook(
        venue,
        journal.stop_limits if stop_limit_store is None else stop_limit_store(journal),
        bus,
        reconciler,
        poll_s=0.01,
        instrument_for=lambda alias, iid: accounts[alias].instruments_by_id.get(iid),
    )
    await book.start()
    pipeline = Pipeline(
        accounts,
        journal,
        bus,
        reconciler=reconciler,
        stop_limits=book,
        unknown_policy=unknown_policy,
        clock=clock,
    )
    h = Harness(venue, pipeline, journal, bus, book)

    def keep(topic: Topic, ev: Event) -> None:
        if isinstance(ev, OutcomeEvent):
            h.outcomes.append(ev)
        elif isinstance(ev, RejectedSignal):
            h.rejected.append(ev)
        else:
            h.updates.append(ev)

    bus.subscribe(keep)
    return h


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Harness]:
    h = await build(tmp_path)
    yield h
    await h.pipeline.close()
    await h.book.close()
    await h.journal.close()
