"""The lean order transport: a few pinned keep-alive HTTP/1.1 connections per account.

Why it exists: aiohttp's per-request work (building the request, its connection bookkeeping,
its response object) was most of the engine's own share of an order round trip. Order entry
needs one thing: write pre-built bytes on a warm connection and read one reply. Replies are
parsed by ``httptools`` (llhttp, the parser uvloop and sanic use), so no HTTP parsing is home-made.

Safety, the reason for most of the code below (docs/architecture.md, policy 1 and 4):

* One request at a time per connection (no pipelining): a connection with a reply outstanding is
  never written to. A connection leaves the idle set for exactly one exchange.
* A connection that might have been closed by the venue is never written to. Before a write the
  transport's state is checked (the loop's ``eof_received``/``connection_lost`` callbacks mark a
  connection the venue closed), and a connection idle for ``probe_after_s`` or longer is also
  peeked (one non-blocking ``recv(MSG_PEEK)``) for a FIN or reset the loop has not processed yet.
  The peek is what closes the race with a server's idle keep-alive timeout; a connection that
  carried a reply less than ``probe_after_s`` ago cannot have reached that timeout (the margin
  must stay below the venue's keep-alive timeout: by default half of ``ping_after_s``, which is
  itself below it), so it goes without the system call. A server closing a connection for any
  other reason says so in its last reply (``Connection: close``), which is honoured.
* :class:`NotSent` means no byte of the request reached the network (no usable connection, the
  connect failed, or the very first ``send`` failed on a reset socket); the caller may send it
  elsewhere. :class:`SentNoReply` means bytes were written and no complete reply came back
  (timeout, reset, EOF, unparsable reply): the venue may have acted, so the caller must treat the
  outcome as unknown and never resend.
* A dead connection is replaced in the background; the order path only waits for a connect when
  no connection at all is usable.
* Waiting is not sending: a request still waiting for a connection when its wait ends (the
  pool's wait budget, or its ``send_by_ns``) raises :class:`NotSent`. The order timeout (the
  wait for the reply) starts when the request is written.
* No stale order: a request given ``send_by_ns`` (monotonic ns: its signal's age limit) is
  compared with the clock just before ``write``; past it, :class:`TooLate` (a :class:`NotSent`).

Size: ``size`` connections are kept open and warm (the minimum); when every one is busy and
requests wait, more are opened in the background (connected, TLS handshake done, before one
carries an order), up to ``max_size``. Extra connections idle for ``shrink_after_s`` are closed
by :meth:`keep_warm`.

Lifetimes: :meth:`OrderConnections.start` opens and warms the pool; :meth:`keep_warm` (called on
a timer by the owner) pings connections that have idled, on a route the owner chooses (one that
does not spend the PLACE_ORDER budget); :meth:`close` closes everything and fails waiters.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import ssl
import time
from urllib.parse import urlsplit

from engine import __version__
from engine.tradelocker.connection import (
    Connection,
    NotSent,
    Reply,
    SentNoReply,
    TooLate,
    client_ssl_context,
    describe,
)

log = logging.getLogger(__name__)

__all__ = [
    "USER_AGENT",
    "NotSent",
    "OrderConnections",
    "Reply",
    "SentNoReply",
    "TooLate",
    "client_ssl_context",
]

# Sent on every request to the venue, lean and aiohttp alike: some gateways refuse a request
# without one.
USER_AGENT = f"tl-engine/{__version__}"


class OrderConnections:
    """A pool of pinned keep-alive connections to one origin, one request per connection at a
    time: ``size`` kept warm, up to ``max_size`` while requests wait. Requests that find every
    connection busy wait for one (FIFO): a connection coming back or a new one opened for them."""

    def __init__(
        self,
        base_url: str,
        *,
        size: int = 2,
        max_size: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout_s: float = 3.0,
        ping_after_s: float = 10.0,
        shrink_after_s: float = 30.0,
        probe_after_s: float | None = None,
        label: str = "orders",
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"order transport needs an http(s) URL with a host, got {base_url!r}")
        if size < 1:
            raise ValueError(f"order connections: size must be at least 1, got {size}")
        max_size = size if max_size is None else max_size
        if max_size < size:
            raise ValueError(
                f"order connections: the maximum ({max_size}) is below the warm minimum ({size}); "
                "set order_connections_max to at least order_connections"
            )
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.tls = parts.scheme == "https"
        self._ssl: ssl.SSLContext | None = None
        if self.tls:
            self._ssl = ssl_context or client_ssl_context()
        self.size = size
        self.max_size = max_size
        self.label = label
        self._connect_timeout = connect_timeout_s
        self._ping_after = ping_after_s
        self._shrink_after = shrink_after_s
        # Idle this long (seconds since its last reply), a connection is peeked before a write.
        self._probe_after = ping_after_s / 2 if probe_after_s is None else probe_after_s
        self._open: set[Connection] = set()
        self._idle: collections.deque[Connection] = collections.deque()
        self._waiters: collections.deque[asyncio.Future[Connection]] = collections.deque()
        self._connecting: set[asyncio.Task[None]] = set()
        self._closed = False
        # One timer for every outstanding reply's deadline, armed for the earliest one.
        self._sweep: asyncio.TimerHandle | None = None
        self._sweep_at = 0.0
        # Health and tests: how many were opened, how many replaced after dying, how many extra
        # ones were closed for idling, and the most open at once.
        self.opened = 0
        self.discarded = 0
        self.shrunk = 0
        self.peak_open = 0
        self.probes = 0  # pre-write peeks made (connections idle for probe_after_s or longer)

    def __repr__(self) -> str:
        return (
            f"<OrderConnections {self.label} {self.host}:{self.port} "
            f"open={len(self._open)} idle={len(self._idle)}>"
        )

    @property
    def open_count(self) -> int:
        return len(self._open)

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    # -- life cycle -------------------------------------------------------------------------

    async def start(self, warm_request: bytes | None = None) -> None:
        """Open every connection (in parallel) and, given ``warm_request``, send it once on
        each. Raises :class:`NotSent` when the venue cannot be reached."""
        results = await asyncio.gather(
            *(self._connect() for _ in range(self.size - len(self._open))),
            return_exceptions=True,
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        for result in results:
            if not isinstance(result, BaseException):
                self._adopt(result)
                self._release(result)
        if failed:
            await self.close()
            raise NotSent(
                f"{self.label}: could not open the order connections to {self.host}:"
                f"{self.port} ({describe(failed[0])})"
            ) from None
        if warm_request is not None:
            await self.keep_warm(warm_request, idle_for_s=0.0)

    async def close(self) -> None:
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for task in list(self._connecting):
            task.cancel()
        for task in list(self._connecting):
            with contextlib.suppress(BaseException):
                await task
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_exception(NotSent(f"{self.label}: the order transport is closed"))
        for conn in list(self._open):
            conn.close()
        self._open.clear()
        self._idle.clear()

    # -- requests ---------------------------------------------------------------------------

    async def round_trip(self, payload: bytes, timeout_s: float, send_by_ns: int = 0) -> Reply:
        """Send ``payload`` (a complete HTTP/1.1 request) once and return the reply.

        ``timeout_s`` bounds the wait for a connection and, from the moment the request is
        written, the wait for its reply. ``send_by_ns`` (``time.monotonic_ns``; 0: none) is the
        last moment the request may be written. :class:`NotSent`: nothing was written (no
        connection within ``timeout_s``, or every connection tried was found dead before
        writing); :class:`TooLate` when ``send_by_ns`` passed first. :class:`SentNoReply`:
        written, no complete reply within ``timeout_s``: the outcome is unknown. Never resends
        written bytes.
        """
        loop = asyncio.get_running_loop()
        waited_from = 0.0  # loop time the wait for a connection began (0.0: no wait yet)
        while True:
            conn = self._take_idle()
            if conn is None:
                if not waited_from:
                    waited_from = loop.time()
                conn = await self._wait_for_connection(waited_from, timeout_s, send_by_ns)
            # The last moment before bytes leave: the one place a stale order is caught
            # whatever it waited for (rate budget, a login, a connection).
            if send_by_ns and time.monotonic_ns() > send_by_ns:
                self._release(conn)
                waited = loop.time() - waited_from if waited_from else 0.0
                raise TooLate(f"{self.label}: too old to send", waited)
            try:
                waiter = conn.send(payload)
            except NotSent:
                # Not a byte went out: another connection may carry it.
                self._discard(conn)
                continue
            break
        # The reply's deadline starts now, with the bytes on the wire. Not asyncio.timeout() nor
        # a timer per request: this is the hot path, and expiring only has to fail the waiter
        # and drop the connection, so the pool's one timer, armed for the earliest deadline,
        # does it (_expire_overdue).
        deadline = loop.time() + timeout_s
        conn.deadline = deadline
        conn.timeout_s = timeout_s
        if self._sweep is None or deadline < self._sweep_at:
            self._arm(loop, deadline)
        try:
            reply = await waiter
        except SentNoReply:
            self._discard(conn)
            raise
        except BaseException:
            # Cancelled with a reply outstanding: the connection's framing is unknown now.
            conn.abort()
            self._discard(conn)
            raise
        finally:
            conn.deadline = 0.0
        conn.last_used = time.monotonic()
        self._release(conn)
        return reply

    def _arm(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
        self._sweep = loop.call_at(at, self._expire_overdue)
        self._sweep_at = at

    def _expire_overdue(self) -> None:
        """The pool's reply timer: expire every request past its deadline (a loop timer may
        fire up to a millisecond early, so within 1 ms counts), re-arm for the next one."""
        self._sweep = None
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        now = loop.time() + 0.001
        earliest = 0.0
        for conn in list(self._open):
            due = conn.deadline
            if not due:
                continue
            if due <= now:
                conn.deadline = 0.0
                conn.expire(conn.timeout_s)
            elif not earliest or due < earliest:
                earliest = due
        if earliest:
            self._arm(loop, earliest)

    async def _wait_for_connection(
        self, waited_from: float, timeout_s: float, send_by_ns: int
    ) -> Connection:
        """Every connection is busy: wait (FIFO) for one to come back or be opened, until
        ``timeout_s`` after ``waited_from`` or ``send_by_ns``, whichever is first."""
        loop = asyncio.get_running_loop()
        until = waited_from + timeout_s
        stale_first = False
        if send_by_ns:
            send_by = loop.time() + (send_by_ns - time.monotonic_ns()) / 1e9
            if send_by < until:
                until, stale_first = send_by, True
        try:
            return await self._acquire(until)
        except TimeoutError:
            waited = loop.time() - waited_from
            if stale_first:
                raise TooLate(f"{self.label}: too old to send", waited) from None
            raise NotSent(
                f"{self.label}: no order connection became free within {timeout_s:g} s "
                f"({len(self._open)} open, at most {self.max_size})"
            ) from None

    async def keep_warm(self, request: bytes, idle_for_s: float | None = None) -> int:
        """Send ``request`` (an idempotent, cheap GET) on each connection idle for at least
        ``idle_for_s`` (default: ``ping_after_s``), one at a time so the others stay free for
        orders; close extra connections idle for ``shrink_after_s``; top the pool up. Returns
        how many pings were answered."""
        self._shrink()
        self._top_up()
        threshold = self._ping_after if idle_for_s is None else idle_for_s
        answered = 0
        for conn in list(self._idle):
            if time.monotonic() - conn.last_used < threshold or conn not in self._idle:
                continue
            self._idle.remove(conn)
            if not await self._usable(conn):
                self._discard(conn)
                continue
            try:
                waiter = conn.send(request)
            except NotSent:
                self._discard(conn)
                continue
            try:
                async with asyncio.timeout(self._connect_timeout + 5.0):
                    await waiter
            except (TimeoutError, SentNoReply) as exc:
                log.warning("%s: keep-warm ping failed (%s); replacing the connection",
                            self.label, describe(exc))  # fmt: skip
                conn.abort()
                self._discard(conn)
                continue
            except BaseException:
                conn.abort()
                self._discard(conn)
                raise
            answered += 1
            conn.last_used = time.monotonic()
            self._release(conn)
        return answered

    # -- the pool ---------------------------------------------------------------------------

    def _take_idle(self) -> Connection | None:
        """The first idle connection that is certainly usable, without yielding; None when the
        caller must wait (none idle, or one with unread bytes that the loop must look at).

        A connection whose last reply came less than ``probe_after_s`` ago is taken on the
        loop's word (its callbacks mark a closed connection); one idle longer is peeked."""
        idle = self._idle
        while idle:
            conn = idle.popleft()
            if not conn.idle_state_ok():
                self._discard(conn)
                continue
            if time.monotonic() - conn.last_used < self._probe_after:
                return conn
            self.probes += 1
            state = conn.peek()
            if state == "quiet":
                return conn
            if state == "pending":
                self._idle.appendleft(conn)  # _acquire() lets the loop read them first
                return None
            self._discard(conn)
        return None

    async def _acquire(self, until: float) -> Connection:
        """A usable connection, waiting (FIFO) until loop time ``until`` at most: TimeoutError.

        The wait ends by a timer failing the waiter, not by ``asyncio.timeout``: the order path
        may run eagerly in its caller's task (engine.execution.eager) until it first suspends,
        so a task-bound timeout would cancel the caller instead of this wait."""
        while self._idle:
            conn = self._idle.popleft()
            if await self._usable(conn):
                return conn
            self._discard(conn)
        if self._closed:
            raise NotSent(f"{self.label}: the order transport is closed")
        self._top_up()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Connection] = loop.create_future()
        self._waiters.append(fut)
        self._grow()
        timer = loop.call_at(until, _give_up, fut)
        try:
            return await fut
        except BaseException:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                # Handed a connection in the same instant we gave up: give it back.
                self._release(fut.result())
            else:
                fut.cancel()
            raise
        finally:
            timer.cancel()

    async def _usable(self, conn: Connection) -> bool:
        if not conn.idle_state_ok():
            return False
        state = conn.peek()
        if state == "pending":
            # Bytes the loop has not read yet: on TLS usually a session ticket, otherwise the
            # server talking out of turn. Let the loop read them, then judge again.
            await asyncio.sleep(0)
            state = conn.peek() if conn.idle_state_ok() else "dead"
        return state == "quiet"

    def _release(self, conn: Connection) -> None:
        if self._closed or not conn.idle_state_ok():
            self._discard(conn)
            return
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(conn)
                return
        self._idle.append(conn)

    def _discard(self, conn: Connection) -> None:
        if not conn.closed:
            conn.close()
        if conn in self._open:
            self._open.discard(conn)
            self.discarded += 1
        with contextlib.suppress(ValueError):
            self._idle.remove(conn)
        if not self._closed:
            self._top_up()

    def _top_up(self) -> None:
        """Start background connects until open + connecting reaches ``size``."""
        if self._closed:
            return
        for _ in range(self.size - len(self._open) - len(self._connecting)):
            self._start_connect()

    def _grow(self) -> None:
        """Requests are waiting: open one more connection per waiter not already covered by a
        connect under way, up to ``max_size``. A new one serves the first waiter, or idles."""
        if self._closed:
            return
        busy = len(self._open) + len(self._connecting)
        for _ in range(min(len(self._waiters) - len(self._connecting), self.max_size - busy)):
            self._start_connect()

    def _shrink(self) -> None:
        """Close idle connections beyond ``size`` that have not carried anything for
        ``shrink_after_s`` (the longest idle first)."""
        now = time.monotonic()
        for conn in sorted(self._idle, key=lambda c: c.last_used):
            if len(self._open) <= self.size:
                return
            if now - conn.last_used < self._shrink_after:
                return
            self._idle.remove(conn)
            self._open.discard(conn)
            conn.close()
            self.shrunk += 1

    def _start_connect(self) -> None:
        task = asyncio.get_running_loop().create_task(self._replace(), name=f"connect:{self.label}")
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _replace(self) -> None:
        try:
            conn = await self._connect()
        except Exception as exc:
            log.warning("%s: could not open an order connection to %s:%d (%s)",
                        self.label, self.host, self.port, describe(exc))  # fmt: skip
            current = asyncio.current_task()
            if not self._open and not any(t is not current for t in self._connecting):
                # Nothing open, nothing else on the way: waiting orders would only time out.
                while self._waiters:
                    fut = self._waiters.popleft()
                    if not fut.done():
                        fut.set_exception(
                            NotSent(
                                f"{self.label}: could not connect to {self.host}:{self.port} "
                                f"({describe(exc)})"
                            )
                        )
            return
        if self._closed:
            conn.close()
            return
        self._adopt(conn)
        self._release(conn)

    async def _connect(self) -> Connection:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self._connect_timeout):
            _, conn = await loop.create_connection(
                lambda: Connection(self.label),
                self.host,
                self.port,
                ssl=self._ssl,
                server_hostname=self.host if self._ssl is not None else None,
            )
        return conn

    def _adopt(self, conn: Connection) -> None:
        self.opened += 1
        self._open.add(conn)
        if len(self._open) > self.peak_open:
            self.peak_open = len(self._open)


def _give_up(fut: asyncio.Future[Connection]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())
