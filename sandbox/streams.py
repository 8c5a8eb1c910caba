"""The sandbox's Streams API: a real python-socketio server on the sandbox's aiohttp app.

Faithful to docs/api-reference.md section 10.1: namespace ``/streams-api``, path
``/streams-api/socket.io``, websocket transport, ``developer-api-key`` header checked on the
handshake (a bad key gets a ``connection`` event ``{status:"error", code, message}`` and is then
disconnected), ``subscriptions`` SUBSCRIBE/UNSUBSCRIBE answered as the ``streamAck`` switch says,
then a snapshot (AccountStatus, Position, OpenOrder) and ``{type:"Property", name:"SyncEnd"}`` on
the ``stream`` event, then deltas as the sandbox state changes.

``streamAck``: ``event`` answers with a ``subscriptions`` event and sends no Socket.IO ack at all
(what TradeLocker's own Streams example listens for: it emits SUBSCRIBE without asking for an
ack); ``ack`` answers only through the ack; ``both`` does both (the default of every profile while
the engine's stream client waits for the ack).

Ordering: every connection has one writer task draining one queue. A SUBSCRIBE puts its
``subscriptions`` event, the snapshot and SyncEnd on the queue synchronously, and deltas are queued
synchronously by the state's listener, so a client sees the answer, the snapshot, SyncEnd, then
every later delta, in order, never a delta that the snapshot already contains followed by an older
one.

Faults (for tests): :meth:`StreamsServer.drop_all` aborts every stream TCP connection without a
close handshake (what a network failure looks like); ``faults.should_drop_stream()`` (the
``dropStreamConnections`` fault) is asked before every emit and, when it says so, the message is
lost and its connection aborted; ``faults.stream_latency_ms`` delays every emit;
:meth:`StreamsServer.send_malformed_packet` and :meth:`StreamsServer.emit_raw` put broken frames
and messages on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import socketio
from aiohttp import web

log = logging.getLogger(__name__)

NAMESPACE = "/streams-api"
SOCKETIO_PATH = "streams-api/socket.io"
APP_KEY = web.AppKey("tl_streams_server", object)

StreamListener = Callable[[str, dict[str, Any]], None]
Outgoing = tuple[str, Any]  # (Socket.IO event name, payload)


class StreamsState(Protocol):
    """What the Streams server needs from the sandbox state (sandbox)."""

    def verify_stream_token(self, token: str) -> tuple[str, str]:
        """(brandId, accountId) of a valid stream token; raises on an invalid or expired one."""

    def stream_snapshot(self, account_id: str) -> list[dict[str, Any]]: ...
    def add_stream_listener(self, fn: StreamListener) -> None: ...
    def remove_stream_listener(self, fn: StreamListener) -> None: ...


@dataclass(slots=True)
class _Connection:
    sid: str
    request: web.BaseRequest | None
    queue: asyncio.Queue[Outgoing | None] = field(default_factory=asyncio.Queue)
    accounts: set[str] = field(default_factory=set)
    writer: asyncio.Task[None] | None = None


def _expected_key(state: object) -> str | None:
    config = getattr(state, "config", None)
    key = getattr(config, "developer_api_key", None) or getattr(state, "developer_api_key", None)
    return str(key) if key else None


class StreamsServer:
    """One Streams API endpoint bound to one sandbox state. Create it with :func:`mount`."""

    def __init__(
        self,
        state: StreamsState,
        faults: object | None = None,
        *,
        developer_api_key: str | None = None,
        ping_interval: float = 25.0,
        ping_timeout: float = 20.0,
    ) -> None:
        self.state = state
        self.faults = faults
        self.developer_api_key = developer_api_key or _expected_key(state)
        self.sio = socketio.AsyncServer(
            async_mode="aiohttp",
            transports=["websocket"],
            cors_allowed_origins=[],
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            logger=False,
            engineio_logger=False,
        )
        self._conns: dict[str, _Connection] = {}
        self.sio.on("connect", self._on_connect, namespace=NAMESPACE)
        self.sio.on("disconnect", self._on_disconnect, namespace=NAMESPACE)
        self.sio.on("subscriptions", self._on_subscriptions, namespace=NAMESPACE)
        self.emitted = 0  # stream messages put on the wire, for tests and the latency bench
        state.add_stream_listener(self._on_state_change)

    # -- public fault injection and introspection ---------------------------------------------

    @property
    def connection_count(self) -> int:
        return len(self._conns)

    def subscribed_accounts(self) -> dict[str, set[str]]:
        return {sid: set(c.accounts) for sid, c in self._conns.items()}

    def set_heartbeat(self, ping_interval: float, ping_timeout: float) -> None:
        """Engine.IO ping interval and timeout (seconds) for connections opened from now on; a
        long interval makes the server look silent to a client with a short staleness limit."""
        self.sio.eio.ping_interval = ping_interval
        self.sio.eio.ping_timeout = ping_timeout

    def drop_all(self) -> int:
        """Abort every stream connection's TCP transport, like a network failure: no close frame,
        no Socket.IO disconnect. Returns how many were dropped."""
        conns = list(self._conns.values())
        for conn in conns:
            self._abort(conn)
        if conns:
            log.info("sandbox streams: dropped %d connection(s)", len(conns))
        return len(conns)

    def _abort(self, conn: _Connection) -> None:
        self._forget(conn)
        transport = conn.request.transport if conn.request is not None else None
        if transport is not None:
            transport.abort()
        else:  # no raw transport to abort: fall back to a server-side disconnect
            asyncio.get_running_loop().create_task(self.sio.disconnect(conn.sid, NAMESPACE))

    def _fault_drops(self) -> bool:
        should_drop = getattr(self.faults, "should_drop_stream", None)
        return bool(should_drop()) if callable(should_drop) else False

    async def send_malformed_packet(self, text: str) -> None:
        """Send ``text`` as the data of an Engine.IO message (the client sees ``"4" + text``) to
        every connection, e.g. ``'2/streams-api,["stream",{'`` (broken JSON)."""
        for conn in list(self._conns.values()):
            eio_sid = self.sio.manager.eio_sid_from_sid(conn.sid, NAMESPACE)
            if eio_sid is not None:
                await self.sio.eio.send(eio_sid, text)

    def emit_raw(self, account_id: str, message: Any) -> None:
        """Queue an arbitrary ``stream`` payload (valid or not) to the account's subscribers."""
        for conn in self._conns.values():
            if account_id in conn.accounts:
                conn.queue.put_nowait(("stream", message))

    async def close(self) -> None:
        """Stop listening to the state and end every connection (app shutdown)."""
        with contextlib.suppress(ValueError, KeyError):
            self.state.remove_stream_listener(self._on_state_change)
        self.drop_all()

    # -- socket.io handlers -------------------------------------------------------------------

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        request = environ.get("aiohttp.request")
        conn = _Connection(sid=sid, request=request)
        key = environ.get("HTTP_DEVELOPER_API_KEY")
        if self.developer_api_key is not None and key != self.developer_api_key:
            # The venue accepts the namespace and then reports the error as an event (10.1);
            # the event can only go out after the CONNECT packet, hence the task.
            code = "MISSING_API_KEY" if not key else "INVALID_API_KEY"
            message = (
                "developer-api-key header is required"
                if not key
                else "developer-api-key is not valid"
            )
            self.sio.start_background_task(self._refuse, sid, code, message)
            return
        self._conns[sid] = conn
        conn.writer = asyncio.get_running_loop().create_task(
            self._write(conn), name=f"streams-writer-{sid}"
        )

    async def _refuse(self, sid: str, code: str, message: str) -> None:
        await self.sio.emit(
            "connection",
            {"status": "error", "code": code, "message": message},
            to=sid,
            namespace=NAMESPACE,
        )
        await self.sio.disconnect(sid, namespace=NAMESPACE)

    async def _on_disconnect(self, sid: str, reason: Any = None) -> None:
        conn = self._conns.get(sid)
        if conn is not None:
            self._forget(conn)

    @property
    def ack_mode(self) -> str:
        mode = getattr(self.faults, "stream_ack", "both")
        return mode if mode in ("ack", "event", "both") else "both"

    async def _on_subscriptions(self, sid: str, data: Any) -> Any:
        mode = self.ack_mode
        conn = self._conns.get(sid)
        if conn is None:
            result = _error("NOT_CONNECTED", "connection is not accepted")
            if mode != "ack":
                self.sio.start_background_task(
                    self.sio.emit, "subscriptions", result, to=sid, namespace=NAMESPACE
                )
        else:
            result, snapshot = self._subscriptions(conn, data)
            # The answer goes ahead of the snapshot on the connection's one queue.
            if mode != "ack":
                conn.queue.put_nowait(("subscriptions", result))
            for msg in snapshot:
                conn.queue.put_nowait(("stream", msg))
        # not_handled makes python-socketio send no ack packet at all.
        return result if mode != "event" else self.sio.not_handled

    def _subscriptions(
        self, conn: _Connection, data: Any
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The answer to one ``subscriptions`` request and the messages that follow it."""
        if not isinstance(data, dict):
            return _error("BAD_REQUEST", "subscriptions payload must be an object"), []
        action = data.get("action")  # exact spelling: the venue documents only upper case
        account_id = str(data.get("accountId") or "")
        if not account_id:
            return _error("BAD_REQUEST", "accountId is required"), []
        if action == "UNSUBSCRIBE":
            conn.accounts.discard(account_id)
            return {"status": "ok", "action": "UNSUBSCRIBE", "accountId": account_id}, []
        if action != "SUBSCRIBE":
            return _error(
                "BAD_REQUEST", f"action must be SUBSCRIBE or UNSUBSCRIBE, got {action!r}"
            ), []
        token = data.get("token")
        if not isinstance(token, str) or not token:
            return _error("invalidJwt", "token is required"), []
        try:
            brand_id, token_account = self.state.verify_stream_token(token)
        except Exception as exc:  # the state raises its own token error type
            return _error("invalidJwt", f"token refused: {exc}"), []
        if str(token_account) != account_id:
            return _error("invalidJwt", "token does not belong to this accountId"), []
        # The venue's SUBSCRIBE names the brand (server) beside the token (section 10.1); a
        # client that leaves it out must learn it here, not in production.
        brand = data.get("brandId")
        if not isinstance(brand, str) or not brand:
            return _error("BAD_REQUEST", "brandId (the server name) is required"), []
        if brand != brand_id:
            return _error("invalidJwt", "brandId does not match the token"), []
        # Snapshot and subscription are taken together, without yielding, so no delta can fall
        # between them (see the module docstring).
        snapshot = [
            m for m in self.state.stream_snapshot(account_id) if m.get("type") != "Property"
        ]
        snapshot.append({"type": "Property", "name": "SyncEnd"})
        conn.accounts.add(account_id)
        return {"status": "ok", "action": "SUBSCRIBE", "accountId": account_id}, snapshot

    # -- delivery -----------------------------------------------------------------------------

    def _on_state_change(self, account_id: str, msg: dict[str, Any]) -> None:
        for conn in self._conns.values():
            if account_id in conn.accounts:
                conn.queue.put_nowait(("stream", msg))

    def _latency_s(self) -> float:
        ms = getattr(self.faults, "stream_latency_ms", 0) if self.faults is not None else 0
        if isinstance(self.faults, dict):
            ms = self.faults.get("stream_latency_ms", 0)
        try:
            return max(0.0, float(ms or 0)) / 1000.0
        except (TypeError, ValueError):
            return 0.0

    async def _write(self, conn: _Connection) -> None:
        while True:
            item = await conn.queue.get()
            if item is None:
                return
            event, msg = item
            delay = self._latency_s()
            if delay:
                await asyncio.sleep(delay)
            if self._fault_drops():
                # The message is lost with the connection, as on a real network failure.
                self._abort(conn)
                return
            try:
                await self.sio.emit(event, msg, to=conn.sid, namespace=NAMESPACE)
                if event == "stream":
                    self.emitted += 1
            except Exception:  # a dead socket ends this writer; the disconnect handler cleans up
                log.debug("stream emit to %s failed", conn.sid, exc_info=True)
                return

    def _forget(self, conn: _Connection) -> None:
        self._conns.pop(conn.sid, None)
        conn.accounts.clear()
        conn.queue.put_nowait(None)


def _error(code: str, message: str) -> dict[str, Any]:
    return {"status": "error", "code": code, "message": message}


def mount(
    app: web.Application,
    state: StreamsState,
    faults: object | None = None,
    **options: Any,
) -> StreamsServer:
    """Attach the Streams API to the sandbox's aiohttp ``app`` (before it starts). The server is
    returned and also kept as ``app[APP_KEY]`` so admin routes can call ``drop_all()``."""
    server = StreamsServer(state, faults, **options)
    server.sio.attach(app, socketio_path=SOCKETIO_PATH)
    app[APP_KEY] = server

    async def _shutdown(_: web.Application) -> None:
        # Open websockets would otherwise hold aiohttp's shutdown for its full timeout.
        await server.close()

    app.on_shutdown.append(_shutdown)
    return server


def server_of(app: web.Application) -> StreamsServer:
    """The Streams server mounted on ``app``."""
    server = app[APP_KEY]
    assert isinstance(server, StreamsServer)
    return server
