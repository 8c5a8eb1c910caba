"""The decision journal: what the engine did with each signal id, durable across crashes.

Policy 2 (docs/architecture.md): a signal id already decided is never executed twice, and an order
whose outcome is unknown is never resent blindly. The pipeline therefore:

1. asks :meth:`Journal.decided` (an in-memory lookup, no I/O) whether the id was seen before;
2. calls :meth:`Journal.begin` BEFORE the order goes on the wire, so a crash mid-flight leaves
   evidence: at start-up :meth:`Journal.pending` lists those signals and the engine reconciles
   them by tag at the venue;
3. awaits :meth:`Journal.record` with the final outcome, and only then acks the signal (commits the
   Kafka offset).

Two durability levels, chosen so that the order path never waits for a disk:

* ``begin`` copies one framed record into an append-only **intent log**: a file segment,
  preallocated and mapped shared into memory, so the append is a memory copy (no system call,
  and no release of the GIL for the journal's writer thread to grab mid-order). The bytes are
  in the kernel's page cache when the call returns, so they survive the death of the process
  (SIGKILL, OOM kill, a crash), which is what a re-delivered signal after a restart must be
  checked against. ``begin`` returns an already-completed awaitable. The same row goes to
  SQLite with the next group commit (fsynced, below).
* ``record`` (and so the ack, and the Kafka offset commit behind it) waits for the group commit:
  WAL with ``synchronous=FULL``, fsynced. An offset is never committed for an outcome that is not
  on disk.

What the intent log does not survive is an OS crash or power loss in the few milliseconds before
the group commit makes its row durable. That hole is closed at the next start: a run-state file
(``<journal>.run``, fsynced at open) says whether the last run closed the journal, and from which
boot it ran (``/proc/sys/kernel/random/boot_id``). After an unclean stop from the *same* boot the
page cache survived, the intent log is complete and nothing more is needed. After an unclean stop
followed by a reboot, intent records may be missing: :meth:`Journal.suspect` then says which
signals with no row could have been sent by the earlier run (generated before this start, or
without ``ts``, within ``suspect_window_s``), and the pipeline looks those up at the venue by
their deterministic tag (engine.execution.tags) before executing them. That state is carried over
restarts until the window ends, so a second crash during recovery does not forget it.

``begin_durability="power"`` restores the older, slower contract (``begin`` completes only once
its row is fsynced) for deployments that prefer to pay an fsync per order over a venue lookup
after a power loss.

The writer thread (engine.state.writer) commits in batches: every write waiting when a commit
starts shares it, so under load many records cost one fsync, and the event loop never touches
SQLite. The same database and thread keep the held stop-limit orders
(engine.state.stop_limits, :attr:`Journal.stop_limits`) and the signals accepted over HTTP and
not yet decided (engine.state.intake, :attr:`Journal.intake`): one durability story. Intent log
segments (engine.state.intent_log) are deleted once every record in them is committed; at open,
surviving segments are replayed into SQLite first. The run-state file is
engine.state.run_state.

Retention (docs/execution.md, "How long a signal id is remembered"): a decided id is remembered
for ``retention_s`` after its decision, exactly: within that window :meth:`Journal.decided` finds
it, so it is never executed twice. Older decided ids are forgotten, at open (rows whose decision
is older) and while running, so memory stays flat however long the engine runs: every
:meth:`Journal.record` appends the id to a queue in decision order and drops at most two expired
ids from its head (amortised O(1), after the venue's reply, never on the way to the wire); every
``_DELETE_EVERY`` ids forgotten, one ``DELETE`` of those rows rides the writer thread. A pending
row (begun, undecided) is never forgotten, whatever its age: it is unresolved evidence.

Time (row stamps, the suspect window, retention) is read through the injected ``clock``.
"""

from __future__ import annotations

import enum
import fcntl
import os
import sqlite3
import zlib
from collections import deque
from collections.abc import Awaitable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from engine.model.clock import LIVE, Clock
from engine.model.domain import Outcome, OutcomeStatus
from engine.state import intake, stop_limits
from engine.state.intent_log import FRAME_HEAD, IntentLog, IntentRow, intent_frame, read_intents
from engine.state.run_state import BOOT_ID_PATH, RunState, RunStateFile
from engine.state.settings import JournalSettings
from engine.state.writer import WRITE, JournalError, Writer

__all__ = [
    "BOOT_ID_PATH",
    "READY",
    "EntryState",
    "IntentLog",
    "Journal",
    "JournalError",
    "JournalRecord",
    "RunState",
    "intent_frame",
    "read_intents",
]

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


class _Settled:
    """An awaitable that is already complete: awaiting it never suspends (no loop round trip),
    so ``await journal.begin(...)`` on the order path costs a function call."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error

    def __await__(self) -> Generator[Any, None, None]:
        if self.error is not None:
            raise self.error
        yield from ()


# The begin that is written already (no error): the order path compares against it instead of
# awaiting it (engine.execution.send).
READY = _READY = _Settled()
# The intent frame's parts, bound once (Journal.begin builds the frame inline).
_dumps = orjson.dumps
_crc32 = zlib.crc32
_frame_head = FRAME_HEAD.pack

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
# Decided rows older than the retention (by their decision; rows from before decided_ns was
# always set fall back to begun_ns). Never a pending row.
_PRUNE_SQL = "DELETE FROM signals WHERE state = 1 AND COALESCE(decided_ns, begun_ns) < ?"
# Ids forgotten in memory between two DELETEs of their rows (one statement on the writer thread).
_DELETE_EVERY = 4096
# Expired ids dropped per record(): more than the one it adds, so the queue catches up after
# a pause, and bounded, so one call never does a long sweep.
_PRUNE_PER_RECORD = 2


class Journal:
    """SQLite journal keyed by signal id, with an append-only intent log in front of it.

    Open at start-up, close at shutdown. Not thread-safe for callers: use it from one event
    loop. ``decided``, ``pending`` and ``suspect`` read in-memory state kept in step with every
    write, so they never block on the disk; ``begin`` costs a memory copy.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        retention_s: float = 7 * 86400.0,
        max_batch: int = 512,
        begin_durability: Literal["process", "power"] = "process",
        suspect_window_s: float = 3600.0,
        intent_segment_bytes: int = 4 << 20,
        boot_id_path: Path = BOOT_ID_PATH,
        clock: Clock = LIVE,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be FULL or NORMAL, got {synchronous!r}")
        if begin_durability not in ("process", "power"):
            raise ValueError(
                f"begin_durability must be 'process' or 'power', got {begin_durability!r}"
            )
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._wall_ns = clock.time_ns  # bound once: ``begin`` is on the order path
        self._fsync_begin = begin_durability == "power"
        self.begin_durability = begin_durability
        self.suspect_window_s = suspect_window_s
        # A begun row is held as its SQL parameters (signal_id, account, tag, begun_ns), the
        # tuple ``begin`` builds anyway, and becomes a JournalRecord when first read: building
        # the frozen record cost more than the rest of ``begin`` on the order path.
        self._index: dict[str, JournalRecord | IntentRow] = {}
        self._begins: list[IntentRow] = []
        # Decided ids in decision order, (decided_ns, signal_id), for pruning while running.
        # An id decided again (an unknown outcome resolved) has a later entry too; the earlier
        # one is skipped when it expires (its record's decided_ns is newer).
        self.retention_ns = int(retention_s * 1e9)
        self._expiry: deque[tuple[int, str]] = deque()
        self._forgotten = 0  # ids dropped in memory since the last DELETE was queued
        self._closed = False
        self._failure: BaseException | None = None
        self._run = RunStateFile(self.path.with_name(self.path.name + ".run"), boot_id_path)
        self._lock_fd = _lock(self.path.with_name(self.path.name + ".lock"))
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            os.close(self._lock_fd)
            raise JournalError(f"cannot open the journal at {self.path}: {exc}") from exc
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={synchronous}")
            conn.executescript(_SCHEMA + stop_limits.SCHEMA + intake.SCHEMA)
            replayed = self._replay_intents(conn)
            cutoff = self._wall_ns() - int(retention_s * 1e9)
            # Never prune a pending row: it is unresolved evidence, whatever its age.
            conn.execute(_PRUNE_SQL, (cutoff,))
            decided: list[tuple[int, str]] = []
            for row in conn.execute("SELECT * FROM signals"):
                rec = _from_row(row)
                self._index[rec.signal_id] = rec
                if rec.state is EntryState.DECIDED:
                    decided.append((rec.decided_ns or rec.begun_ns, rec.signal_id))
            decided.sort()
            self._expiry.extend(decided)
            # Every replayed intent is now a committed (fsynced) row: the segments can go.
            for segment in replayed:
                segment.unlink(missing_ok=True)
            backlog = intake.read_backlog(conn)
            self.run_state = self._run.open(suspect_window_s, self._wall_ns())
            self._intents = IntentLog(
                self.path.parent, self.path.name, intent_segment_bytes, self._wall_ns
            )
        except (sqlite3.Error, OSError, ValueError) as exc:
            conn.close()
            os.close(self._lock_fd)
            raise JournalError(f"cannot open the journal at {self.path}: {exc}") from exc
        self._writer = Writer(conn, max_batch=max_batch, on_failure=self._writer_failed)
        self.stop_limits = stop_limits.StopLimitStore(self._writer, clock)
        """The held stop-limit orders, kept in this database by the same writer thread."""
        self.intake = intake.IntakeStore(self._writer, backlog, clock)
        """Signals accepted over HTTP and not yet decided (engine.state.intake)."""

    @property
    def writer_thread_id(self) -> int | None:
        """The ident of the one thread that touches this journal's SQLite database."""
        return self._writer.thread_id

    @classmethod
    def from_settings(cls, settings: JournalSettings, clock: Clock = LIVE) -> Journal:
        """The journal the config's ``[engine]`` journal keys describe."""
        return cls(
            settings.path,
            begin_durability=settings.begin_durability,
            suspect_window_s=settings.suspect_window_s,
            retention_s=settings.retention_s,
            clock=clock,
        )

    # -- reads (in memory) -------------------------------------------------------------------

    def decided(self, signal_id: str) -> JournalRecord | None:
        """The record for this id (pending or decided), or None if the engine never saw it."""
        rec = self._index.get(signal_id)
        if isinstance(rec, tuple):
            rec = self._index[signal_id] = _begun_record(rec)
        return rec

    def pending(self) -> list[JournalRecord]:
        """Signals begun but never decided: each needs reconciliation by its strategy tag."""
        rows = [self.decided(key) for key in list(self._index)]
        return [r for r in rows if r is not None and r.state is EntryState.PENDING]

    def suspect(self, generated_ns: int) -> bool:
        """Whether a signal with NO journal row may still have been sent by an earlier run.

        True only after an unclean stop followed by a reboot (its intent record may have been
        lost with the page cache), for a signal generated before this start (``generated_ns``
        is the signal's ``ts`` in epoch ns; 0 = unknown, treated as old), within the window.
        The caller must look such a signal up at the venue by its tag before executing it.
        """
        state = self.run_state
        if not state.suspect_until_ns:
            return False
        if generated_ns and generated_ns >= state.suspect_before_ns:
            return False
        return self._wall_ns() < state.suspect_until_ns

    def __len__(self) -> int:
        return len(self._index)

    # -- writes ------------------------------------------------------------------------------

    def begin(self, signal_id: str, account: str, strategy_tag: str) -> Awaitable[None]:
        """Record that an order for this signal is about to be sent, BEFORE sending it.

        The intent is safe against the death of this process when the call returns; the
        returned awaitable is already complete (with ``begin_durability="power"`` it completes
        once the row is fsynced). Await it anyway: it raises :class:`JournalError` when the
        journal cannot write, and then the order must NOT be sent. A second ``begin`` for an id
        already in the journal changes nothing.
        """
        if self._closed:
            return _Settled(JournalError("the journal is closed"))
        if self._failure is not None:
            return _Settled(JournalError(f"the journal failed earlier: {self._failure}"))
        if signal_id in self._index:
            return _READY
        params = (signal_id, account, strategy_tag, self._wall_ns())
        try:
            # encode_intent's body (one frame less on the order path): the framed orjson row.
            payload = _dumps(params)
            retired = self._intents.append(_frame_head(len(payload), _crc32(payload)) + payload)
        except (OSError, ValueError) as exc:
            self._failure = exc
            self._writer.fail(exc)
            return _Settled(JournalError(f"cannot append to the intent log: {exc}"))
        if retired is not None:
            # Its rows are all buffered or queued: once they are committed it can go, and the
            # writer thread makes the next spare segment ready.
            self._flush_begins()
            self._writer.after_commit(retired.unlink)
            self._writer.after_commit(self._intents.prepare_spare)
        self._index[signal_id] = params
        if self._fsync_begin:
            self._flush_begins()
            return self._writer.write(_BEGIN_SQL, params)
        # Not handed to the writer thread yet: waking it here would make it compete for the
        # GIL with the order on its way to the wire. The row rides along with the next write
        # that needs a commit anyway (an outcome), or a rotation, or close.
        self._begins.append(params)
        return _READY

    def forget_intent(self, signal_id: str) -> None:
        """An intent that was never sent (a signal withdrawn at a Kafka handover): this run no
        longer knows the id, so a redelivery is looked up by tag and decided afresh. The intent
        stays written: after an unclean stop it is reconciled by tag like any other."""
        rec = self._index.get(signal_id)
        if isinstance(rec, tuple) or (rec is not None and rec.pending):
            del self._index[signal_id]

    def record(self, outcome: Outcome) -> Awaitable[None]:
        """Record the final outcome of a signal (with or without an earlier ``begin``).

        Completes once the row is committed and fsynced; only then may the signal be acked.
        """
        # The raw entry: a begun row is still its (id, account, tag, begun_ns) tuple, read as
        # such rather than built into a frozen record that this call replaces at once.
        prior = self._index.get(outcome.signal_id)
        now = self._wall_ns()
        if prior is None:
            begun, prior_tag = now, ""
        elif isinstance(prior, tuple):
            begun, prior_tag = prior[3], prior[2]
        else:
            begun, prior_tag = prior.begun_ns, prior.strategy_tag
        tag = outcome.strategy_tag or prior_tag
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
        self._expiry.append((now, outcome.signal_id))
        if self._expiry[0][0] < now - self.retention_ns:
            self._prune(now)
        self._flush_begins()
        return self._writer.write(
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
        """Finish every queued write, then close the database and mark the stop as clean.

        Idempotent. The intent log is deleted once everything in it is committed.
        """
        if self._closed:
            return
        self._closed = True
        self._flush_begins()
        await self._writer.close()
        # Everything in the intent log is committed now, unless the writer failed: then the
        # segments stay, and the next open replays them.
        self._intents.close(delete=self._failure is None)
        if self._failure is None:
            self._run.write(open_=False)
        os.close(self._lock_fd)

    # -- internals ----------------------------------------------------------------------------

    def _prune(self, now: int) -> None:
        """Forget at most ``_PRUNE_PER_RECORD`` decided ids older than the retention."""
        cutoff = now - self.retention_ns
        expiry = self._expiry
        index = self._index
        for _ in range(_PRUNE_PER_RECORD):
            if not expiry or expiry[0][0] >= cutoff:
                break
            decided_ns, signal_id = expiry.popleft()
            rec = index.get(signal_id)
            # Only the id's latest decision expires it; a pending row is never forgotten.
            if (
                type(rec) is JournalRecord
                and rec.state is EntryState.DECIDED
                and (rec.decided_ns or rec.begun_ns) <= decided_ns
            ):
                del index[signal_id]
                self._forgotten += 1
        if self._forgotten >= _DELETE_EVERY:
            self._forgotten = 0
            self._writer.put(_PRUNE_SQL, (cutoff,))

    def _replay_intents(self, conn: sqlite3.Connection) -> list[Path]:
        """Turn intents left by an earlier run into pending rows (committed before returning)."""
        segments = IntentLog.segments(self.path.parent, self.path.name)
        rows = [row for seg in segments for row in read_intents(seg.read_bytes())]
        if rows:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(_BEGIN_SQL, rows)
            conn.execute("COMMIT")
        return segments

    def _flush_begins(self) -> None:
        """Hand the buffered begin rows to the writer, ahead of whatever is queued next."""
        if self._begins:
            put = self._writer.queue.put  # the queue itself: no extra frame per row
            for params in self._begins:
                put((WRITE, _BEGIN_SQL, params, None, None))
            self._begins.clear()

    def _writer_failed(self, exc: BaseException) -> None:
        # Called on the writer thread; ``begin`` reads it on the loop (a plain attribute).
        self._failure = exc


def _lock(path: Path) -> int:
    """Hold the journal for this process. Two engine processes on one journal would each trust
    an index the other does not update (and replay each other's live intent log): refused.
    A POSIX record lock, so the kernel releases it when the process dies, however it dies."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise JournalError(f"cannot open the journal lock {path}: {exc}") from exc
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        raise JournalError(
            f"the journal {path.with_suffix('')} is in use by another engine process: each "
            "engine needs its own journal_path"
        ) from exc
    return fd


def _begun_record(row: IntentRow) -> JournalRecord:
    signal_id, account, strategy_tag, begun_ns = row
    return JournalRecord(signal_id, account, strategy_tag, EntryState.PENDING, begun_ns=begun_ns)


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
