"""While orders flow, the event loop's thread never calls SQLite or fsync: the journal's writer
thread does (policy: keep the order path free of blocking I/O).

Python 3.11 raises an audit event for ``sqlite3.connect`` but none for a statement or an fsync, so
the detector combines three probes: an audit hook (``sqlite3.connect``), a connection class that
records every statement (``sqlite3.connect`` is wrapped to pass ``factory=``: the engine's own
code then hands out recording connections), and wrappers around ``os.fsync``/``os.fdatasync``.
Each probe records the calling thread's ident. The probes are wrappers (not mocks): every call
still goes to the real SQLite and the real disk.

The burst is real: the pipeline, the journal and the stop-limit book on the in-process
PaperVenue, with market orders, stop-limit holds, modifies, cancels, a cancel_all and triggers.
The second test runs the same burst with the book's rows written the old way (a SQLite
connection on the loop, ``synchronous=FULL``) and asserts the detector fires.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.model.domain import OrderRequest
from engine.model.events import OrderUpdate
from engine.state.journal import Journal
from engine.state.stop_limits import SCHEMA, StopLimitStore, StoredStopLimit, _stored
from tests.execution.conftest import Harness, build


class Detector:
    """What touched SQLite or fsync, on which thread, while armed."""

    def __init__(self) -> None:
        self.armed = False
        self.calls: list[tuple[int, str]] = []

    def note(self, what: str) -> None:
        if self.armed:
            self.calls.append((threading.get_ident(), what))

    def on(self, thread_id: int) -> list[str]:
        return [what for ident, what in self.calls if ident == thread_id]


_current: Detector | None = None


def _audit(event: str, _args: tuple[Any, ...]) -> None:
    # An audit hook cannot be removed: it stays installed, and does nothing between tests.
    if _current is not None and event.startswith("sqlite3.connect"):
        _current.note(event)


sys.addaudithook(_audit)


def _recording_connection(detector: Detector) -> type[sqlite3.Connection]:
    class Recording(sqlite3.Connection):
        def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
            detector.note(f"execute {sql.split(None, 1)[0]}")
            return super().execute(sql, *args)

        def executemany(self, sql: str, *args: Any) -> sqlite3.Cursor:
            detector.note("executemany")
            return super().executemany(sql, *args)

        def executescript(self, script: str) -> sqlite3.Cursor:
            detector.note("executescript")
            return super().executescript(script)

        def commit(self) -> None:
            detector.note("commit")
            super().commit()

        def cursor(self, *args: Any, **kwargs: Any) -> sqlite3.Cursor:  # type: ignore[override]
            detector.note("cursor")
            return super().cursor(*args, **kwargs)

    return Recording


def _watched(detector: Detector, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        detector.note(name)
        return fn(*args, **kwargs)

    return call


@pytest.fixture
def detector(monkeypatch: pytest.MonkeyPatch) -> Iterator[Detector]:
    global _current
    found = Detector()
    connect = sqlite3.connect
    factory = _recording_connection(found)

    def recording_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        kwargs.setdefault("factory", factory)
        return connect(*args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", recording_connect)
    monkeypatch.setattr(os, "fsync", _watched(found, "fsync", os.fsync))
    monkeypatch.setattr(os, "fdatasync", _watched(found, "fdatasync", os.fdatasync))
    _current = found
    yield found
    _current = None


EUR = {"symbol": "EURUSD", "action": "place"}


async def _burst(h: Harness) -> None:
    """Orders of every kind the book and the journal see, all in flight together."""
    for i in range(40):
        h.send(id=f"m{i}", account=f"a{1 + i % 2}", type="market", side="buy", qty=0.1, **EUR)
    for i in range(20):
        h.send(
            id=f"sl{i}", account=f"a{1 + i % 2}", type="stop_limit", side="buy", qty=0.1,
            stop_price=1.2, price=1.201, **EUR,
        )  # fmt: skip
    await h.pipeline.drain()
    for i in range(0, 8, 2):  # a1's sl0, sl2, sl4, sl6: cancelled one by one
        h.send(id=f"c{i}", account="a1", action="cancel", ref=f"sl{i}")
    h.send(id="mod8", account="a1", action="modify", ref="sl8", stop_price=1.19)
    h.send(id="ca", account="a2", action="cancel_all", symbol="EURUSD")  # every a2 hold
    await h.pipeline.drain()
    # The market trades through the stops: the rest of a1's holds trigger, while more orders go.
    h.venue.set_quote(278, 1.20005, 1.20010)
    for i in range(40, 60):
        h.send(id=f"m{i}", account="a1", type="market", side="sell", qty=0.1, **EUR)
    await h.book.check_once()
    await h.pipeline.drain()


def _statuses(h: Harness) -> dict[str, str]:
    return {o.id: o.status for o in h.outcomes}


async def test_no_sqlite_or_fsync_on_the_loop_thread_while_orders_flow(
    tmp_path: Path, detector: Detector
) -> None:
    h = await build(tmp_path)  # start-up may touch SQLite on the loop: not armed yet
    loop_thread = threading.get_ident()
    writer_thread = h.journal.writer_thread_id
    assert writer_thread is not None and writer_thread != loop_thread

    detector.armed = True
    await _burst(h)
    detector.armed = False

    # The burst did what it says: every signal accepted, holds cancelled or triggered.
    statuses = _statuses(h)
    assert len(statuses) == 60 + 20 + 4 + 2
    assert set(statuses.values()) == {"accepted"}, statuses
    kinds = [
        u.kind
        for u in h.updates
        if isinstance(u, OrderUpdate) and (u.kind or "").startswith("stop_limit")
    ]
    assert kinds.count("stop_limit_triggered") == 6  # sl8 .. sl18 on a1
    assert h.book.held() == []
    # The probes see the SQLite work: it all ran on the writer thread (COMMITs included).
    on_writer = detector.on(writer_thread)
    assert "execute COMMIT" in on_writer and "execute INSERT" in on_writer
    assert detector.on(loop_thread) == []
    await h.pipeline.close()
    await h.book.close()
    await h.journal.close()


class LoopThreadStopLimits(StopLimitStore):
    """The old persistence path, kept here only to prove the detector catches it: its own SQLite
    file, ``synchronous=FULL``, every row written on the calling (loop) thread."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def save(
        self, emulated_id: str, signal_key: str, request: OrderRequest, state: str, oid: str | None
    ) -> asyncio.Future[None]:
        r = request
        self._db.execute(
            "INSERT INTO stop_limits VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT(emulated_id) DO UPDATE SET state=excluded.state, "
            "order_id=excluded.order_id",
            (
                emulated_id, signal_key, r.account, r.instrument.tradable_instrument_id,
                int(r.side), r.qty, r.price, r.stop_price, r.stop_loss, None, r.take_profit, None,
                r.trailing_offset, r.strategy_tag, state, oid, 0,
            ),
        )  # fmt: skip
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def load(self) -> list[StoredStopLimit]:
        return [_stored(row) for row in self._db.execute("SELECT * FROM stop_limits")]


async def test_the_detector_fires_on_the_old_loop_thread_stop_limit_writes(
    tmp_path: Path, detector: Detector
) -> None:
    legacy = LoopThreadStopLimits(tmp_path / "journal.stoplimit.sqlite")

    def old_path(_journal: Journal) -> StopLimitStore:
        return legacy

    h = await build(tmp_path, stop_limit_store=old_path)
    loop_thread = threading.get_ident()

    detector.armed = True
    await _burst(h)
    detector.armed = False

    assert set(_statuses(h).values()) == {"accepted"}
    on_loop = detector.on(loop_thread)
    assert "execute INSERT" in on_loop, detector.calls
    await h.pipeline.close()
    await h.book.close()
    await h.journal.close()
