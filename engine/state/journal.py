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

The writer thread commits in batches: every write waiting when a commit starts shares it, so under
load many records cost one fsync, and the event loop never touches SQLite. Intent log segments are
deleted once every record in them is committed; at open, surviving segments are replayed into
SQLite first. Rows older than ``retention_s`` are dropped when the journal opens (never a pending
row); a signal that old is stale by the pipeline's own policy long before it could be replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import fcntl
import itertools
import mmap
import os
import queue
import sqlite3
import struct
import threading
import time
import zlib
from collections.abc import Awaitable, Generator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from engine.model.domain import Outcome, OutcomeStatus
from engine.model.errors import EngineError
from engine.state.settings import JournalSettings

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

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")


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


_READY = _Settled()

_BegunRow = tuple[str, str, str, int]  # a begin's parameters: signal_id, account, tag, begun_ns

# One write: the SQL parameters, and the future plus loop to resolve once its batch is committed.
# A write without a future is fire-and-forget (a ``begin`` already safe in the intent log).
_Write = tuple[
    str, tuple[object, ...], "asyncio.Future[None] | None", "asyncio.AbstractEventLoop | None"
]
_STOP_SQL = ""
_RETIRE_SQL = "-- retire intent segment"  # params: (path,); deleted once this batch commits
_SPARE_SQL = "-- prepare the next intent segment"
_CONTROL = frozenset({_RETIRE_SQL, _SPARE_SQL})
_STOP: _Write = (_STOP_SQL, (), None, None)

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

# Intent frame: payload length, CRC-32 of the payload, then the orjson payload
# [signal_id, account, strategy_tag, begun_ns]. A torn or corrupt frame ends the replay of its
# segment: frames are appended in call order by one thread, so a torn frame is the last one,
# the one whose ``begin`` never returned.
_FRAME = struct.Struct("<II")


def intent_frame(signal_id: str, account: str, strategy_tag: str, begun_ns: int) -> bytes:
    return _frame((signal_id, account, strategy_tag, begun_ns))


def _frame(row: tuple[str, str, str, int]) -> bytes:
    payload = orjson.dumps(row)
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def read_intents(data: bytes) -> list[tuple[str, str, str, int]]:
    """Decode an intent segment; stops at the first torn or corrupt frame."""
    out: list[tuple[str, str, str, int]] = []
    pos, end, head = 0, len(data), _FRAME.size
    while pos + head <= end:
        size, crc = _FRAME.unpack_from(data, pos)
        if size == 0:
            break  # the zero-filled rest of a preallocated segment
        payload = data[pos + head : pos + head + size]
        if len(payload) != size or zlib.crc32(payload) != crc:
            break
        try:
            sid, account, tag, begun = orjson.loads(payload)
        except (orjson.JSONDecodeError, ValueError, TypeError):
            break
        out.append((str(sid), str(account), str(tag), int(begun)))
        pos += head + size
    return out


class IntentLog:
    """Append-only intent records in memory-mapped segment files ``<name>.intents-*``.

    A segment is made ready before it is used, so that a write through the mapping on the order
    path is a memory copy and nothing more: zeros are written and ``fdatasync``ed (the blocks
    exist on disk: a full disk shows up as an error here, never as a SIGBUS on the order path,
    and no write has to allocate or convert an extent), then every page is touched through the
    mapping (the first-write fault, which on ext4 may wait for a journal commit, is taken here;
    measured at about 1 ms on this machine's disk). A segment is zero after its last frame, which
    is where replay stops. The next segment (the spare) is prepared by the journal's writer
    thread (:meth:`prepare_spare`), so a rotation on the order path only swaps two mappings.
    """

    __slots__ = ("_dir", "_map", "_name", "_path", "_pos", "_size", "_spare")

    _names = itertools.count(1)

    def __init__(self, directory: Path, name: str, segment_bytes: int) -> None:
        if segment_bytes < mmap.PAGESIZE:
            raise ValueError(
                f"intent_segment_bytes must be at least {mmap.PAGESIZE}, got {segment_bytes}"
            )
        self._dir, self._name, self._size = directory, name, segment_bytes
        self._path, self._map = self._create()
        self._pos = 0
        self._spare: tuple[Path, mmap.mmap] | None = self._create()

    @staticmethod
    def segments(directory: Path, name: str) -> list[Path]:
        return sorted(directory.glob(name + ".intents-*"))

    def append(self, frame: bytes) -> Path | None:
        """Copy one frame in; returns the path of a segment this append filled and left."""
        end = self._pos + len(frame)
        retired = None
        if end > self._size:
            if len(frame) > self._size:
                raise ValueError(f"intent record of {len(frame)} bytes exceeds a segment")
            retired = self._rotate()
            end = len(frame)
        self._map[end - len(frame) : end] = frame
        self._pos = end
        return retired

    def prepare_spare(self) -> None:
        """Make the next segment ready if there is none (called from the writer thread)."""
        if self._spare is None:
            with contextlib.suppress(OSError):  # the rotation then makes one, or says why not
                self._spare = self._create()

    def close(self, *, delete: bool) -> None:
        self._map.close()
        spare, self._spare = self._spare, None
        if spare is not None:
            spare[1].close()
            spare[0].unlink(missing_ok=True)
        if delete:
            self._path.unlink(missing_ok=True)

    def _rotate(self) -> Path:
        spare, self._spare = self._spare, None
        if spare is None:  # the writer has not prepared one yet: pay for it here, once
            spare = self._create()
        old_path, old_map = self._path, self._map
        self._path, self._map = spare
        self._pos = 0
        old_map.close()
        return old_path

    def _create(self) -> tuple[Path, mmap.mmap]:
        path = self._dir / f"{self._name}.intents-{time.time_ns():020d}-{next(self._names):06d}"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            zeros = bytes(min(self._size, 1 << 16))
            left = self._size
            while left > 0:
                left -= os.write(fd, zeros[: min(left, len(zeros))])
            os.fdatasync(fd)
            mapping = mmap.mmap(fd, self._size)
        except OSError:
            path.unlink(missing_ok=True)
            raise
        finally:
            os.close(fd)
        for offset in range(0, self._size, mmap.PAGESIZE):
            mapping[offset] = 0
        return path, mapping


@dataclass(frozen=True, slots=True)
class RunState:
    """What the run-state file says about the previous run, as read at open."""

    unclean: bool  # the previous run never closed the journal
    rebooted: bool  # ... and the OS restarted since (unflushed intent records may be lost)
    suspect_before_ns: int  # signals generated before this (epoch ns) may lack their intent
    suspect_until_ns: int  # until when (epoch ns) :meth:`Journal.suspect` can answer True


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
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be FULL or NORMAL, got {synchronous!r}")
        if begin_durability not in ("process", "power"):
            raise ValueError(
                f"begin_durability must be 'process' or 'power', got {begin_durability!r}"
            )
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._max_batch = max_batch
        self._fsync_begin = begin_durability == "power"
        self.begin_durability = begin_durability
        self.suspect_window_s = suspect_window_s
        # A begun row is held as its SQL parameters (signal_id, account, tag, begun_ns), the
        # tuple ``begin`` builds anyway, and becomes a JournalRecord when first read: building
        # the frozen record cost more than the rest of ``begin`` on the order path.
        self._index: dict[str, JournalRecord | _BegunRow] = {}
        self._queue: queue.SimpleQueue[_Write] = queue.SimpleQueue()
        self._begins: list[tuple[object, ...]] = []
        self._closed = False
        self._failure: BaseException | None = None
        self._run_path = self.path.with_name(self.path.name + ".run")
        self._boot_id = _read_boot_id(boot_id_path)
        self._lock_fd = _lock(self.path.with_name(self.path.name + ".lock"))
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            os.close(self._lock_fd)
            raise JournalError(f"cannot open the journal at {self.path}: {exc}") from exc
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={synchronous}")
            conn.executescript(_SCHEMA)
            replayed = self._replay_intents(conn)
            cutoff = time.time_ns() - int(retention_s * 1e9)
            # Never prune a pending row: it is unresolved evidence, whatever its age.
            conn.execute("DELETE FROM signals WHERE state = 1 AND begun_ns < ?", (cutoff,))
            for row in conn.execute("SELECT * FROM signals"):
                rec = _from_row(row)
                self._index[rec.signal_id] = rec
            # Every replayed intent is now a committed (fsynced) row: the segments can go.
            for segment in replayed:
                segment.unlink(missing_ok=True)
            self.run_state = self._open_run_state(suspect_window_s)
            self._intents = IntentLog(self.path.parent, self.path.name, intent_segment_bytes)
        except (sqlite3.Error, OSError, ValueError) as exc:
            conn.close()
            os.close(self._lock_fd)
            raise JournalError(f"cannot open the journal at {self.path}: {exc}") from exc
        self._conn = conn
        self._thread = threading.Thread(target=self._writer, name="journal-writer", daemon=True)
        self._thread.start()

    @classmethod
    def from_settings(cls, settings: JournalSettings) -> Journal:
        """The journal the config's ``[engine]`` journal keys describe."""
        return cls(
            settings.path,
            begin_durability=settings.begin_durability,
            suspect_window_s=settings.suspect_window_s,
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
        return time.time_ns() < state.suspect_until_ns

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
        params = (signal_id, account, strategy_tag, time.time_ns())
        try:
            retired = self._intents.append(_frame(params))
        except (OSError, ValueError) as exc:
            self._failure = exc
            return _Settled(JournalError(f"cannot append to the intent log: {exc}"))
        if retired is not None:
            # Its rows are all buffered or queued: once they are committed it can go.
            self._flush_begins()
            self._queue.put((_RETIRE_SQL, (str(retired),), None, None))
            self._queue.put((_SPARE_SQL, (), None, None))
        self._index[signal_id] = params
        if self._fsync_begin:
            self._flush_begins()
            fut: Awaitable[None] = self._submit(_BEGIN_SQL, params)
        else:
            # Not handed to the writer thread yet: waking it here would make it compete for the
            # GIL with the order on its way to the wire. The row rides along with the next
            # write that needs a commit anyway (an outcome), or a rotation, or close.
            self._begins.append(params)
            fut = _READY
        return fut

    def record(self, outcome: Outcome) -> Awaitable[None]:
        """Record the final outcome of a signal (with or without an earlier ``begin``).

        Completes once the row is committed and fsynced; only then may the signal be acked.
        """
        prior = self.decided(outcome.signal_id)
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
        self._flush_begins()
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
        """Finish every queued write, then close the database and mark the stop as clean.

        Idempotent. The intent log is deleted once everything in it is committed.
        """
        if self._closed:
            return
        self._closed = True
        self._flush_begins()
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)
        # Everything in the intent log is committed now, unless the writer failed: then the
        # segments stay, and the next open replays them.
        self._intents.close(delete=self._failure is None)
        if self._failure is None:
            self._write_run_state(open_=False)
        os.close(self._lock_fd)

    # -- intent log and run state -------------------------------------------------------------

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
            for params in self._begins:
                self._queue.put((_BEGIN_SQL, params, None, None))
            self._begins.clear()

    def _open_run_state(self, window_s: float) -> RunState:
        prior: dict[str, Any] | None = None
        with contextlib.suppress(OSError, orjson.JSONDecodeError):
            loaded = orjson.loads(self._run_path.read_bytes())
            prior = loaded if isinstance(loaded, dict) else None
        now = time.time_ns()
        unclean = bool(prior is not None and prior.get("open", True))
        same_boot = bool(
            prior is not None and self._boot_id and prior.get("boot_id") == self._boot_id
        )
        rebooted = unclean and not same_boot
        if rebooted:
            before, until = now, now + int(window_s * 1e9)
        else:
            before = int(prior.get("suspect_before_ns", 0)) if prior else 0
            until = int(prior.get("suspect_until_ns", 0)) if prior else 0
            if until <= now:
                before = until = 0
        state = RunState(unclean, rebooted, before, until)
        self.run_state = state
        self._write_run_state(open_=True)
        return state

    def _write_run_state(self, *, open_: bool) -> None:
        """Write the run-state file durably (temp file, fsync, rename, fsync the directory):
        after a power loss the next start must see that this run was open."""
        state = self.run_state
        body = orjson.dumps(
            {
                "open": open_,
                "boot_id": self._boot_id,
                "pid": os.getpid(),
                "suspect_before_ns": state.suspect_before_ns,
                "suspect_until_ns": state.suspect_until_ns,
            }
        )
        tmp = self._run_path.with_name(self._run_path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self._run_path)
        _fsync_dir(self._run_path.parent)

    # -- writer thread ------------------------------------------------------------------------

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
            writes = [w for w in batch if w[0] and w[0] not in _CONTROL]
            retired = [w[1][0] for w in batch if w[0] == _RETIRE_SQL]
            stopping = any(not w[0] for w in batch)
            error: BaseException | None = None
            if writes:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    for sql, params, _, _ in writes:
                        conn.execute(sql, params)
                    conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    error = exc
                    self._failure = exc
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                _resolve_batch(writes, error)
            if error is None and self._failure is None:
                # Every row of a retired segment is committed: the segment is redundant.
                for path in retired:
                    with contextlib.suppress(OSError):
                        os.unlink(str(path))
            if not stopping and any(w[0] == _SPARE_SQL for w in batch):
                self._intents.prepare_spare()
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


def _read_boot_id(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""  # unknown: every unclean stop is then treated as a possible power loss


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _begun_record(row: _BegunRow) -> JournalRecord:
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
