"""The journal database's writer: one SQLite connection, owned by one thread, committing in groups.

Everything the engine keeps durably in SQLite (the decision journal's rows, the held stop-limit
orders) goes through this thread, so the event loop never waits for SQLite or an fsync while
orders flow: it queues a write and, when it needs durability, awaits a future the thread resolves
once the write's batch is committed (WAL; fsynced under ``synchronous=FULL``).

Every write waiting when a commit starts shares it, so under load many writes cost one fsync.
Writes commit in the order they were queued: a write queued after another is never durable
before it. Besides writes, the queue carries work for the thread itself: a callable to run once
everything queued before it is committed (:meth:`Writer.after_commit`: delete a retired intent
segment, prepare the next one) and a callable run with the connection whose result comes back to
the loop (:meth:`Writer.call`: start-up reads, the adoption of an older database).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from engine.model.errors import EngineError

T = TypeVar("T")


class JournalError(EngineError):
    """The journal could not make a record durable (disk full, I/O error, closed journal)."""


# A queued item: (op, a, b, future, loop).
#   WRITE:  a = SQL, b = parameters; the future (or None: fire and forget) is resolved on commit
#   AFTER:  a = callable(); run once everything before it is committed, unless the writer failed
#   CALL:   a = callable(connection) -> result; the future gets its result or its exception
#   STOP:   the thread commits what it has, closes the connection and ends
WRITE, AFTER, CALL, STOP = range(4)
Item = tuple[int, Any, Any, "asyncio.Future[Any] | None", "asyncio.AbstractEventLoop | None"]
_STOP_ITEM: Item = (STOP, None, None, None, None)


class Writer:
    """Owns ``conn`` from now on: nothing else may use it."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        max_batch: int = 512,
        on_failure: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.queue: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self.failure: BaseException | None = None
        self.closed = False
        self._conn = conn
        self._max_batch = max_batch
        self._on_failure = on_failure
        self._thread = threading.Thread(target=self._run, name="journal-writer", daemon=True)
        self._thread.start()

    @property
    def thread_id(self) -> int | None:
        return self._thread.ident

    # -- the loop's side -------------------------------------------------------------------------

    def write(self, sql: str, params: tuple[object, ...]) -> asyncio.Future[None]:
        """Queue one statement; the future completes once it is committed (or says why not)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        refused = self._refusal()
        if refused is not None:
            fut.set_exception(refused)
        else:
            self.queue.put((WRITE, sql, params, fut, loop))
        return fut

    def put(self, sql: str, params: tuple[object, ...]) -> None:
        """Queue one statement nobody waits for (already safe elsewhere: the intent log)."""
        self.queue.put((WRITE, sql, params, None, None))

    def after_commit(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` on the writer thread once every write queued before it is committed."""
        self.queue.put((AFTER, fn, None, None, None))

    def call(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Run ``fn(connection)`` on the writer thread once every write queued before it is
        committed; ``fn`` manages its own transaction if it writes."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        if self.closed:
            fut.set_exception(JournalError("the journal is closed"))
        else:
            self.queue.put((CALL, fn, None, fut, loop))
        return fut

    def fail(self, exc: BaseException) -> None:
        """Refuse every later write (the journal cannot keep its promises any more)."""
        if self.failure is None:
            self.failure = exc

    async def close(self) -> None:
        """Commit everything queued, close the connection, end the thread. Idempotent."""
        if not self.closed:
            self.closed = True
            self.queue.put(_STOP_ITEM)
        await asyncio.to_thread(self._thread.join)

    def _refusal(self) -> JournalError | None:
        if self.closed:
            return JournalError("the journal is closed")
        if self.failure is not None:
            return JournalError(f"the journal failed earlier: {self.failure}")
        return None

    # -- the writer thread -----------------------------------------------------------------------

    def _run(self) -> None:
        conn = self._conn
        get, get_nowait = self.queue.get, self.queue.get_nowait
        stopping = False
        while not stopping:
            batch = [get()]
            # A batch ends at a CALL or STOP: what was queued after one must not be committed
            # before it runs.
            while len(batch) < self._max_batch and batch[-1][0] < CALL:
                try:
                    batch.append(get_nowait())
                except queue.Empty:
                    break
            writes = [item for item in batch if item[0] == WRITE]
            if writes:
                error = self._commit(conn, writes)
                _resolve(writes, error)
            for op, fn, _, fut, loop in batch:
                if op == AFTER and self.failure is None:
                    with contextlib.suppress(Exception):  # housekeeping; the next start redoes it
                        fn()
                elif op == CALL:
                    _answer(fn, conn, fut, loop)
                elif op == STOP:
                    stopping = True
        conn.close()

    def _commit(self, conn: sqlite3.Connection, writes: list[Item]) -> BaseException | None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            for _, sql, params, _, _ in writes:
                conn.execute(sql, params)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self.fail(exc)
            if self._on_failure is not None:
                self._on_failure(exc)
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            return exc
        return None


def _resolve(writes: Iterable[Item], error: BaseException | None) -> None:
    # One wake-up per loop per batch, not one per write.
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[Any]]] = {}
    for _, _, _, fut, loop in writes:
        if fut is not None and loop is not None:
            by_loop.setdefault(loop, []).append(fut)
    for loop, futs in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            loop.call_soon_threadsafe(_settle, futs, error)


def _settle(futs: list[asyncio.Future[Any]], error: BaseException | None) -> None:
    for fut in futs:
        if fut.done():
            continue
        if error is None:
            fut.set_result(None)
        else:
            fut.set_exception(JournalError(f"the journal could not write: {error}"))


def _answer(
    fn: Callable[[sqlite3.Connection], Any],
    conn: sqlite3.Connection,
    fut: asyncio.Future[Any] | None,
    loop: asyncio.AbstractEventLoop | None,
) -> None:
    try:
        result, error = fn(conn), None
    except Exception as exc:  # handed to the caller, whose call it was
        result, error = None, exc
    if fut is None or loop is None:
        return
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_give, fut, result, error)


def _give(fut: asyncio.Future[Any], result: object, error: BaseException | None) -> None:
    if fut.done():
        return
    if error is None:
        fut.set_result(result)
    else:
        fut.set_exception(error)
