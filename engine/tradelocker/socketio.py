"""Engine.IO v4 / Socket.IO v5 over one picows WebSocket: just what the Streams API needs.

Wire format (websocket transport only, no polling, no binary attachments):

* Engine.IO packet = one WebSocket text frame: ``<type digit><data>``. ``0`` open (JSON handshake
  with ``pingInterval``/``pingTimeout`` in ms), ``1`` close, ``2`` ping, ``3`` pong, ``4`` message,
  ``6`` noop. In EIO4 the *server* pings and the client answers ``3``.
* Socket.IO packet = the data of an Engine.IO message:
  ``<type>[/namespace,][ack id][JSON]`` with types ``0`` connect, ``1`` disconnect, ``2`` event,
  ``3`` ack, ``4`` connect error. An event's JSON is ``["name", arg...]``; an ack's is ``[arg...]``.

Failure modes this client owns: a server that stops pinging (no frame within
``pingInterval + pingTimeout``) is declared dead and the socket closed; an ack that does not come
within its timeout raises :class:`AckTimeout`; a malformed frame is logged with a reason and
skipped. Reconnection is *not* done here: the owner watches :attr:`SocketIOClient.closed` and
opens a new client (see :mod:`engine.tradelocker.stream_session`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

log = logging.getLogger(__name__)

# Engine.IO packet types (as the first character of a text frame).
EIO_OPEN = "0"
EIO_CLOSE = "1"
EIO_PING = "2"
EIO_PONG = "3"
EIO_MESSAGE = "4"
EIO_NOOP = "6"

# Socket.IO packet types.
SIO_CONNECT = 0
SIO_DISCONNECT = 1
SIO_EVENT = 2
SIO_ACK = 3
SIO_CONNECT_ERROR = 4


class SocketIOError(Exception):
    """The Socket.IO session failed: handshake refused, namespace refused, or connection lost."""


class AckTimeout(SocketIOError):
    """The server did not acknowledge an emitted event in time; the event may or may not have
    been processed."""


class MalformedPacket(ValueError):
    """A frame that is not valid Engine.IO / Socket.IO; ``reason`` says what was wrong."""


@dataclass(frozen=True, slots=True)
class SioPacket:
    type: int
    namespace: str
    ack_id: int | None
    data: Any  # decoded JSON, or None when the packet has none


def decode_sio(text: str) -> SioPacket:
    """Decode the data of an Engine.IO message (``4`` already stripped) into a Socket.IO packet."""
    if not text or not text[0].isdigit():
        raise MalformedPacket(f"Socket.IO packet must start with a type digit, got {text[:20]!r}")
    ptype = int(text[0])
    if ptype > 6:
        raise MalformedPacket(f"unknown Socket.IO packet type {ptype}")
    if ptype in (5, 6):
        raise MalformedPacket("binary Socket.IO packets are not used by the Streams API")
    i = 1
    namespace = "/"
    if i < len(text) and text[i] == "/":
        comma = text.find(",", i)
        if comma < 0:
            # "1/streams-api" (disconnect) legitimately has no comma when there is no payload.
            namespace, i = text[i:], len(text)
        else:
            namespace, i = text[i:comma], comma + 1
    start = i
    while i < len(text) and text[i].isdigit():
        i += 1
    ack_id = int(text[start:i]) if i > start else None
    payload = text[i:]
    data: Any = None
    if payload:
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise MalformedPacket(f"Socket.IO payload is not JSON ({exc})") from None
    if ptype == SIO_EVENT and (
        not isinstance(data, list) or not data or not isinstance(data[0], str)
    ):
        raise MalformedPacket("Socket.IO event payload must be a JSON array starting with a name")
    if ptype == SIO_ACK and (ack_id is None or not isinstance(data, list)):
        raise MalformedPacket("Socket.IO ack needs an id and a JSON array")
    return SioPacket(ptype, namespace, ack_id, data)


def encode_sio(ptype: int, namespace: str, data: Any = None, ack_id: int | None = None) -> bytes:
    """Encode a Socket.IO packet inside an Engine.IO message, ready for one text frame."""
    out = bytearray(EIO_MESSAGE.encode())
    out += str(ptype).encode()
    if namespace != "/":
        out += namespace.encode() + b","
    if ack_id is not None:
        out += str(ack_id).encode()
    if data is not None:
        out += orjson.dumps(data)
    return bytes(out)


EventHandler = Callable[[str, list[Any]], None]


class _Listener(WSListener):
    """picows callbacks: runs on the event loop, must never block or raise."""

    def __init__(self, owner: SocketIOClient) -> None:
        self._owner = owner

    def on_ws_connected(self, transport: WSTransport) -> None:
        self._owner._transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        self._owner._on_frame(frame)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._owner._on_disconnected()


class SocketIOClient:
    """One Socket.IO session on one namespace over one picows WebSocket.

    ``on_event(name, args)`` is called on the event loop for every server event, in wire order;
    it must not block (hand slow work to a task). Lifetime: a client is used for one connection
    only; after :attr:`closed` is set, make a new one.
    """

    def __init__(
        self,
        url: str,
        namespace: str,
        on_event: EventHandler,
        *,
        headers: Mapping[str, str] | None = None,
        connect_timeout: float = 15.0,
        stale_after: float | None = None,
    ) -> None:
        """``url`` is ws(s)://host[:port]/path/to/socket.io/ (query added here). ``stale_after``
        overrides the liveness limit; by default it is the server's pingInterval + pingTimeout."""
        base = url if url.endswith("/") else url + "/"
        self.url = base + "?EIO=4&transport=websocket"
        self.namespace = namespace
        self._on_event = on_event
        self._headers = dict(headers or {})
        self._connect_timeout = connect_timeout
        self._stale_after = stale_after
        self._transport: WSTransport | None = None
        self._opened: asyncio.Future[dict[str, Any]] | None = None
        self._ns_connected: asyncio.Future[None] | None = None
        self._acks: dict[int, asyncio.Future[list[Any]]] = {}
        self._next_ack = 1
        self._watchdog: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        self.close_reason = ""
        self.last_frame_mono = 0.0
        self.frames_received = 0
        self.malformed_frames = 0
        self.ping_interval = 25.0
        self.ping_timeout = 20.0

    async def connect(self) -> None:
        """Open the WebSocket, read the Engine.IO handshake, join the namespace.

        Raises :class:`SocketIOError` (refused, timed out, connection failed); the socket is closed
        then."""
        loop = asyncio.get_running_loop()
        self._opened = loop.create_future()
        self._ns_connected = loop.create_future()
        try:
            async with asyncio.timeout(self._connect_timeout):
                await ws_connect(
                    lambda: _Listener(self),
                    self.url,
                    extra_headers=self._headers,
                    websocket_handshake_timeout=self._connect_timeout,
                    enable_auto_pong=True,
                )
                handshake = await self._opened
                self.ping_interval = float(handshake.get("pingInterval", 25000)) / 1000.0
                self.ping_timeout = float(handshake.get("pingTimeout", 20000)) / 1000.0
                self._send(encode_sio(SIO_CONNECT, self.namespace))
                await self._ns_connected
        except TimeoutError:
            self.close("connect timed out")
            raise SocketIOError(
                f"no Socket.IO handshake from {self.url} within {self._connect_timeout}s"
            ) from None
        except SocketIOError:
            self.close(self.close_reason or "connect failed")
            raise
        except Exception as exc:  # picows raises OSError / WSHandshakeError subclasses
            self.close(f"connect failed: {type(exc).__name__}")
            raise SocketIOError(f"cannot open {self.url}: {type(exc).__name__}: {exc}") from exc
        self._watchdog = asyncio.create_task(self._watch_liveness(), name="sio-liveness")

    async def emit_with_ack(self, event: str, data: Any, ack_timeout: float) -> list[Any]:
        """Emit ``event`` and wait for the server's ack; returns the ack's arguments.

        Raises :class:`AckTimeout` when no ack arrives in ``ack_timeout`` seconds and
        :class:`SocketIOError` when the connection is lost meanwhile."""
        ack_id, fut = self.emit_expecting_ack(event, data)
        try:
            async with asyncio.timeout(ack_timeout):
                return await fut
        except TimeoutError:
            raise AckTimeout(f"no ack for {event!r} within {ack_timeout}s") from None
        finally:
            self.forget_ack(ack_id)

    def emit_expecting_ack(self, event: str, data: Any) -> tuple[int, asyncio.Future[list[Any]]]:
        """Emit ``event`` with an ack id and return the id and the future of the ack, without
        waiting: for a caller that also accepts another answer (see StreamSession.subscribe).
        The future fails with :class:`SocketIOError` when the connection is lost; call
        :meth:`forget_ack` once the answer is no longer wanted."""
        if self.closed.is_set():
            raise SocketIOError(f"socket is closed ({self.close_reason})")
        ack_id = self._next_ack
        self._next_ack += 1
        fut: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._acks[ack_id] = fut
        try:
            self._send(encode_sio(SIO_EVENT, self.namespace, [event, data], ack_id))
        except SocketIOError:
            del self._acks[ack_id]
            raise
        return ack_id, fut

    def forget_ack(self, ack_id: int) -> None:
        """Stop waiting for ack ``ack_id``: a late ack is then ignored."""
        fut = self._acks.pop(ack_id, None)
        if fut is not None and not fut.done():
            fut.cancel()

    def emit(self, event: str, data: Any) -> None:
        self._send(encode_sio(SIO_EVENT, self.namespace, [event, data]))

    def close(self, reason: str = "closed by client") -> None:
        """Leave the namespace and close the socket; idempotent, never raises."""
        if self.closed.is_set():
            return
        self.close_reason = reason
        t = self._transport
        if t is not None and not t.is_disconnected:
            try:
                t.send(WSMsgType.TEXT, encode_sio(SIO_DISCONNECT, self.namespace))
                t.send(WSMsgType.TEXT, EIO_CLOSE.encode())
                t.disconnect(graceful=True)
            except Exception:  # the transport may already be half-dead; closing is best effort
                log.debug("error while closing socket", exc_info=True)
        self._finish(SocketIOError(f"socket closed: {reason}"))

    async def wait_closed(self) -> None:
        await self.closed.wait()

    # -- internals -------------------------------------------------------------------------

    def _send(self, payload: bytes) -> None:
        t = self._transport
        if t is None or t.is_disconnected:
            raise SocketIOError("socket is not connected")
        t.send(WSMsgType.TEXT, payload)

    def _finish(self, exc: SocketIOError) -> None:
        if not self.close_reason:
            self.close_reason = str(exc)
        for fut in (self._opened, self._ns_connected, *self._acks.values()):
            if fut is not None and not fut.done():
                fut.set_exception(exc)
                fut.exception()  # a connect that already gave up must not warn "never retrieved"
        if self._watchdog is not None and self._watchdog is not asyncio.current_task():
            self._watchdog.cancel()
        self.closed.set()

    def _on_disconnected(self) -> None:
        if not self.closed.is_set():
            self._finish(SocketIOError("connection lost"))

    def _on_frame(self, frame: WSFrame) -> None:
        self.last_frame_mono = time.monotonic()
        self.frames_received += 1
        mtype = frame.msg_type
        if mtype is not WSMsgType.TEXT:
            if mtype is WSMsgType.CLOSE:
                self._finish(SocketIOError("server closed the WebSocket"))
            elif mtype is WSMsgType.BINARY:
                self._skip("binary frame (the Streams API sends text only)")
            return
        try:
            text = frame.get_payload_as_utf8_text()
        except UnicodeDecodeError:
            self._skip("text frame is not UTF-8")
            return
        if not text:
            self._skip("empty frame")
            return
        kind = text[0]
        if kind == EIO_MESSAGE:
            try:
                pkt = decode_sio(text[1:])
            except MalformedPacket as exc:
                self._skip(str(exc))
                return
            self._on_packet(pkt)
        elif kind == EIO_PING:
            self._send((EIO_PONG + text[1:]).encode())
        elif kind == EIO_OPEN:
            self._on_open(text[1:])
        elif kind == EIO_CLOSE:
            self._finish(SocketIOError("server closed the Engine.IO session"))
        elif kind in (EIO_PONG, EIO_NOOP):
            pass
        else:
            self._skip(f"unknown Engine.IO packet type {kind!r}")

    def _on_open(self, payload: str) -> None:
        try:
            handshake = orjson.loads(payload)
            if not isinstance(handshake, dict):
                raise ValueError("not an object")
        except (orjson.JSONDecodeError, ValueError) as exc:
            self._skip(f"Engine.IO open packet is not a JSON object ({exc})")
            return
        if self._opened is not None and not self._opened.done():
            self._opened.set_result(handshake)

    def _on_packet(self, pkt: SioPacket) -> None:
        if pkt.namespace != self.namespace:
            self._skip(f"packet for namespace {pkt.namespace!r}, expected {self.namespace!r}")
            return
        if pkt.type == SIO_EVENT:
            name, args = pkt.data[0], pkt.data[1:]
            try:
                self._on_event(name, args)
            except Exception:  # a handler bug must not kill the socket
                log.exception("stream event handler failed on %r", name)
        elif pkt.type == SIO_ACK:
            assert pkt.ack_id is not None
            fut = self._acks.get(pkt.ack_id)
            if fut is not None and not fut.done():
                fut.set_result(pkt.data)
            else:
                log.debug("late or unknown ack %s ignored", pkt.ack_id)
        elif pkt.type == SIO_CONNECT:
            if self._ns_connected is not None and not self._ns_connected.done():
                self._ns_connected.set_result(None)
        elif pkt.type == SIO_CONNECT_ERROR:
            message = pkt.data.get("message") if isinstance(pkt.data, dict) else pkt.data
            err = SocketIOError(f"namespace {self.namespace} refused: {message}")
            self.close_reason = str(err)
            if self._ns_connected is not None and not self._ns_connected.done():
                self._ns_connected.set_exception(err)
            self.close(str(err))
        elif pkt.type == SIO_DISCONNECT:
            self.close("server left the namespace")

    def _skip(self, reason: str) -> None:
        self.malformed_frames += 1
        log.warning("skipped a malformed stream frame: %s", reason)

    async def _watch_liveness(self) -> None:
        # EIO4: the server pings every pingInterval and expects our pong within pingTimeout, so
        # silence longer than their sum means the peer or the path is gone.
        limit = self._stale_after or (self.ping_interval + self.ping_timeout)
        check = max(0.05, min(1.0, limit / 4))
        while not self.closed.is_set():
            await asyncio.sleep(check)
            silent = time.monotonic() - self.last_frame_mono
            if silent > limit:
                log.warning("stream silent for %.1fs (limit %.1fs): closing", silent, limit)
                self.close(f"no frame for {silent:.1f}s")
                return
