"""One pinned keep-alive HTTP/1.1 connection of the lean order transport (:mod:`.wire`).

A :class:`Connection` carries one request at a time and hands its reply, parsed by
``httptools``, to the waiting future. It knows the difference that decides every order's
outcome: :class:`NotSent` (no byte of the request reached the network) against
:class:`SentNoReply` (bytes were written and no complete reply came back: the venue may have
acted). The loop's own callbacks mark a connection the venue closed (``eof_received``,
``connection_lost``); :meth:`Connection.peek` asks the kernel for a FIN or reset the loop has not
processed yet, which the pool does before writing on a connection that idled long enough for a
server's keep-alive timeout to be near. The pool that owns connections, and the rules for when a
request may be written, are in :mod:`engine.tradelocker.wire`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import time
from dataclasses import dataclass
from typing import cast

import httptools

log = logging.getLogger(__name__)

# recv() flags of the peek, as a plain int: ``socket.MSG_PEEK | socket.MSG_DONTWAIT`` is an
# IntFlag operation (Python code in the enum module) on every call otherwise.
_PEEK_FLAGS = int(socket.MSG_PEEK) | int(socket.MSG_DONTWAIT)


class NotSent(Exception):
    """No byte of the request reached the network: nothing can have happened at the venue."""


class TooLate(NotSent):
    """The request's ``send_by_ns`` passed before it was written: dropped, never sent.
    ``waited_s`` is how long it waited for a connection (0.0: it did not wait for one)."""

    def __init__(self, message: str, waited_s: float) -> None:
        super().__init__(message)
        self.waited_s = waited_s


class SentNoReply(Exception):
    """The request was (at least partly) written, and no complete reply came back."""


@dataclass(slots=True)
class Reply:
    """One HTTP response. ``headers`` names are lower-case (a later duplicate wins)."""

    status: int
    headers: dict[str, str]
    body: bytes


class Connection(asyncio.Protocol):
    """One keep-alive connection; :meth:`send` writes a request, its future gets the reply."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.last_used = time.monotonic()
        self.exchanges = 0
        # Loop time by which the outstanding request's reply must have come (0.0: none), and
        # its timeout: the pool's one timer expires it (OrderConnections._expire_overdue).
        self.deadline = 0.0
        self.timeout_s = 0.0
        self._peek: socket.socket | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Reply] | None = None
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._keep_alive = True

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses but have the same surface.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # Transport sockets refuse recv(); a duplicate descriptor of the same socket lets
            # usable() peek for a FIN or reset the loop has not read yet. Closed with the
            # connection (until then it keeps the socket open, so it must not outlive it).
            with contextlib.suppress(OSError):
                self._peek = socket.socket(fileno=os.dup(sock.fileno()))

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            # A server never speaks first on HTTP/1.1; whatever this is, the framing is lost.
            log.warning("%s: %d unsolicited bytes on an idle connection; closing it",
                        self.label, len(data))  # fmt: skip
            self.abort()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(SentNoReply(f"unparsable reply ({type(exc).__name__})"))
            self.abort()

    def eof_received(self) -> bool | None:
        return None  # close our side too; connection_lost settles any outstanding request

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._close_peek()
        self._fail(SentNoReply("the connection closed before a complete reply"))

    # -- httptools callbacks ----------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            # An interim reply (103 Early Hints, a stray 100): the final one follows.
            self._headers = {}
            self._body = []
            return
        self._keep_alive = bool(self._parser.should_keep_alive())
        reply = Reply(status, self._headers, b"".join(self._body))
        self._headers = {}
        self._body = []
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(reply)

    # -- the pool's view --------------------------------------------------------------------

    def idle_state_ok(self) -> bool:
        """Cheap checks: open, not closing, nothing outstanding, nothing left unwritten."""
        transport = self.transport
        return (
            not self.closed
            and self._keep_alive
            and self._waiter is None
            and transport is not None
            and not transport.is_closing()
            and transport.get_write_buffer_size() == 0
        )

    def peek(self) -> str:
        """``"quiet"`` (nothing pending: usable), ``"pending"`` (bytes the loop has not read) or
        ``"dead"`` (the peer closed or reset the connection)."""
        if self._peek is None:
            return "quiet"
        try:
            data = self._peek.recv(1, _PEEK_FLAGS)
        except (BlockingIOError, InterruptedError):
            return "quiet"
        except OSError:
            return "dead"
        return "pending" if data else "dead"

    def send(self, payload: bytes) -> asyncio.Future[Reply]:
        """Write one request; the future gets the reply or :class:`SentNoReply`.

        Raises :class:`NotSent` when the write failed before any byte left: the transport was
        open and its buffer empty, so a transport that is closing right after ``write`` means its
        first ``send`` raised (a reset socket). Only true of plain TCP; on TLS such a failure
        surfaces later, as :class:`SentNoReply` (the safe direction).
        """
        transport = self.transport
        if transport is None or not self.idle_state_ok():
            raise NotSent("the connection is not usable")
        waiter: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        self.exchanges += 1
        transport.write(payload)
        if transport.is_closing():
            self._waiter = None
            waiter.cancel()
            self.abort()
            raise NotSent("the connection was reset before the request could be written")
        return waiter

    def expire(self, timeout_s: float) -> None:
        """The reply did not come in time: fail the exchange and drop the connection."""
        self._fail(SentNoReply(f"no reply within {timeout_s:g} s"))
        self.abort()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
        self._close_peek()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _close_peek(self) -> None:
        peek, self._peek = self._peek, None
        if peek is not None:
            peek.close()

    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


def client_ssl_context(verify: bool = True, ca_file: str | None = None) -> ssl.SSLContext:
    """TLS for the order connections: verified against the system store (or ``ca_file``)."""
    if verify:
        ctx = ssl.create_default_context(cafile=ca_file)
    else:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def describe(exc: BaseException) -> str:
    """An error's kind and text; transport errors carry addresses, never request bytes."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
