"""The decision journal: what the engine did with each signal id, durable across crashes.

Policy 2 (DESIGN.md): a signal id already decided is never executed twice, and an order whose
outcome is unknown is never resent blindly. The pipeline therefore:

1. asks :meth:`Journal.decided` (an in-memory lookup, no I/O) whether the id was seen before;
2. awaits :meth:`Journal.begin` BEFORE the order goes on the wire. Once it returns, a ``pending``
   row with the order's strategy tag is on disk, so a crash mid-flight leaves evidence: at start-up
   :meth:`Journal.pending` lists those signals and the engine reconciles them by tag at the venue;
3. awaits :meth:`Journal.record` with the final outcome, and only then acks the signal (commits the
   Kafka offset).

Writes go to one writer thread that commits in batches: every call waiting when a commit starts
shares it, so under load many records cost one fsync, and the event loop never touches the disk.
Each call returns an awaitable that completes when its batch is durable (or raises
:class:`JournalError`; the caller must then NOT send the order).

Durability: WAL with ``synchronous=FULL`` by default: the WAL is fsynced on every commit, so a
returned ``begin`` survives power loss and an OS crash, not only a killed process. ``NORMAL`` skips
that fsync (it survives a killed engine, but an OS crash can lose the last commits and so lead to
a resent order); it is offered for machines whose disks make fsync slow, and chosen consciously.
Measured figures are in docs/kafka.md ("Journal").

Rows older than ``retention_s`` are dropped when the journal opens; a signal that old is stale by
the pipeline's own policy long before it could be replayed.
"""

from __future__ import annotations

import asyncio
import enum
import queue
import sqlite3
import threading
import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from engine.domain import Outcome, OutcomeStatus
from engine.errors import EngineError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS signals (
    signal_id    TEXT PRIMARY KEY,
    account      TEXT NOT NULL,
    strategy_tag TEXT NOT NULL,
    state        INTEGER NOT NULL,
    status       INTEGER,
    order_id     TEXT,
    position_id  TEXT,
    reason       TEXT,
    errmsg       TEXT,
    begun_ns     INTEGER NOT NULL,
    decided_ns   INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS signals_pending ON signals(state) WHERE state = 0;
"""


class JournalError(EngineError):
    """The journal could not make a record durable (disk full, I/O error, closed journal)."""


class EntryState(enum.IntEnum):
    PENDING = 0  # begun: the order may be on the wire; reconcile by tag after a crash
    DECIDED = 1  # the outcome is recorded


@dataclass(frozen=True, slots=True)
class JournalRecord:
    signal_id: str
    account: str
    strategy_tag: str
    state: EntryState
    status: OutcomeStatus | None = None
    order_id: str | None = None
    position_id: str | None = None
    reason: str | None = None
    errmsg: str | None = None
    begun_ns: int = 0  # wall-clock epoch ns
    decided_ns: int | None = None

    @property
    def pending(self) -> bool:
        return self.state is EntryState.PENDING


# One write: the SQL parameters, and the future plus loop to resolve once its batch is committed.
_Write = tuple[
    str, tuple[object, ...], "asyncio.Future[None] | None", "asyncio.AbstractEventLoop | None"
]
_STOP = ("", (), None, None)

_BEGIN_SQL = (
    "INSERT INTO signals (signal_id, account, strategy_tag, state, begun_ns) VALUES (?, ?, ?, 0, ?)"
    " ON CONFLICT(signal_id) DO NOTHING"
)
_RECORD_SQL = (
    "INSERT INTO signals (signal_id, account, strategy_tag, state, status, order_id, position_id,"
    " reason, errmsg, begun_ns, decided_ns) VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT(signal_id) DO UPDATE SET state = 1, status = excluded.status,"
    " order_id = excluded.order_id, position_id = excluded.position_id,"
    " reason = excluded.reason, errmsg = excluded.errmsg, decided_ns = excluded.decided_ns"
)


class Journal:
    """SQLite journal keyed by signal id. Open at start-up, close at shutdown.

    Not thread-safe for callers: use it from one event loop. ``decided`` and ``pending`` read an
    in-memory index kept in step with every write, so they never block on the disk.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        retention_s: float = 7 * 86400.0,
        max_batch: int = 512,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be FULL or NORMAL, got {synchronous!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._max_batch = max_batch
        self._index: dict[str, JournalRecord] = {}
        self._queue: queue.SimpleQueue[_Write] = queue.SimpleQueue()
        self._closed = False
        self._failure: BaseException | None = None
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open the journal at {self.path}: {exc}") from exc
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={synchronous}")
            conn.executescript(_SCHEMA)
            cutoff = time.time_ns() - int(retention_s * 1e9)
            # Never prune a pending row: it is unresolved evidence, whatever its age.
            conn.execute("DELETE FROM signals WHERE state = 1 AND begun_ns < ?", (cutoff,))
            for row in conn.execute("SELECT * FROM signals"):
                rec = _from_row(row)
                self._index[rec.signal_id] = rec
        except sqlite3.Error as exc:
            conn.close()
            raise JournalError(f"cannot open the journal at {self.path}: {exc}") from exc
        self._conn = conn
        self._thread = threading.Thread(target=self._writer, name="journal-writer", daemon=True)
        self._thread.start()

    # -- reads (in memory) -------------------------------------------------------------------

    def decided(self, signal_id: str) -> JournalRecord | None:
        """The record for this id (pending or decided), or None if the engine never saw it."""
        return self._index.get(signal_id)

    def pending(self) -> list[JournalRecord]:
        """Signals begun but never decided: each needs reconciliation by its strategy tag."""
        return [r for r in self._index.values() if r.state is EntryState.PENDING]

    def __len__(self) -> int:
        return len(self._index)

    # -- writes (durable when the awaitable completes) ----------------------------------------

    def begin(self, signal_id: str, account: str, strategy_tag: str) -> Awaitable[None]:
        """Record that an order for this signal is about to be sent. Await it before sending.

        A second ``begin`` for an id already in the journal changes nothing on disk.
        """
        if signal_id not in self._index:
            now = time.time_ns()
            self._index[signal_id] = JournalRecord(
                signal_id, account, strategy_tag, EntryState.PENDING, begun_ns=now
            )
        else:
            now = self._index[signal_id].begun_ns
        return self._submit(_BEGIN_SQL, (signal_id, account, strategy_tag, now))

    def record(self, outcome: Outcome) -> Awaitable[None]:
        """Record the final outcome of a signal (with or without an earlier ``begin``)."""
        prior = self._index.get(outcome.signal_id)
        now = time.time_ns()
        begun = prior.begun_ns if prior else now
        tag = outcome.strategy_tag or (prior.strategy_tag if prior else "")
        rec = JournalRecord(
            outcome.signal_id,
            outcome.account,
            tag,
            EntryState.DECIDED,
            status=outcome.status,
            order_id=outcome.order_id,
            position_id=outcome.position_id,
            reason=outcome.reason,
            errmsg=outcome.errmsg,
            begun_ns=begun,
            decided_ns=now,
        )
        self._index[outcome.signal_id] = rec
        return self._submit(
            _RECORD_SQL,
            (
                rec.signal_id,
                rec.account,
                rec.strategy_tag,
                int(rec.status) if rec.status is not None else None,
                rec.order_id,
                rec.position_id,
                rec.reason,
                rec.errmsg,
                rec.begun_ns,
                rec.decided_ns,
            ),
        )

    async def close(self) -> None:
        """Finish every queued write, then close the database. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)

    # -- internals ---------------------------------------------------------------------------

    def _submit(self, sql: str, params: tuple[object, ...]) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        if self._closed:
            fut.set_exception(JournalError("the journal is closed"))
        elif self._failure is not None:
            fut.set_exception(JournalError(f"the journal failed earlier: {self._failure}"))
        else:
            self._queue.put((sql, params, fut, loop))
        return fut

    def _writer(self) -> None:
        conn = self._conn
        stopping = False
        while not stopping:
            batch = [self._queue.get()]
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            writes = [w for w in batch if w[0]]
            stopping = len(writes) != len(batch)
            if not writes:
                continue
            error: BaseException | None = None
            try:
                conn.execute("BEGIN IMMEDIATE")
                for sql, params, _, _ in writes:
                    conn.execute(sql, params)
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                error = exc
                self._failure = exc
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            _resolve_batch(writes, error)
        conn.close()


def _resolve_batch(writes: Iterable[_Write], error: BaseException | None) -> None:
    # One wake-up per loop per batch, not one per write.
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for _, _, fut, loop in writes:
        if fut is not None and loop is not None:
            by_loop.setdefault(loop, []).append(fut)
    for loop, futs in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, futs, error)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass


def _settle(futs: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for fut in futs:
        if fut.done():
            continue
        if error is None:
            fut.set_result(None)
        else:
            fut.set_exception(JournalError(f"the journal could not write: {error}"))


def _from_row(row: tuple[Any, ...]) -> JournalRecord:
    (sid, account, tag, state, status, order_id, position_id, reason, errmsg, begun, decided) = row
    return JournalRecord(
        signal_id=sid,
        account=account,
        strategy_tag=tag,
        state=EntryState(state),
        status=OutcomeStatus(status) if status is not None else None,
        order_id=order_id,
        position_id=position_id,
        reason=reason,
        errmsg=errmsg,
        begun_ns=begun,
        decided_ns=decided,
    )
