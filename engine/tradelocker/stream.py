"""TradeLocker Streams API client: per-account stream tokens, SUBSCRIBE/UNSUBSCRIBE, and typed
decoding of the ``stream`` messages (docs/api-reference.md section 10).

One :class:`StreamSession` is one Socket.IO connection (``/streams-api``) carrying any number of
account subscriptions. It does not reconnect: :class:`engine.tradelocker.stream_session.LoginStream`
owns the session's lifecycle (backoff, watchdog, fresh tokens, resubscription). Messages are
decoded into the venue-neutral payloads of :mod:`engine.venue.events` and handed to
``on_message`` in wire order. A message that cannot be
decoded is logged with its reason and skipped; the stream goes on.

The Streams vocabulary is not REST's: sides are upper case, instruments are names (no
tradableInstrumentId), quantities are ``lots``/``amount``, numbers are strings and the open time
is an ISO string. Decoding normalises all of that here so nothing downstream sees the wire.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
import orjson

from engine.model.domain import Side
from engine.model.errors import AuthFailed, VenueError, VenueUnavailable
from engine.tradelocker.socketio import AckTimeout, SocketIOClient, SocketIOError
from engine.tradelocker.wire import USER_AGENT
from engine.venue.events import (
    StreamAccountStatus,
    StreamConnectionStatus,
    StreamMessage,
    StreamOrder,
    StreamPosition,
    StreamPositionClosed,
    StreamSyncEnd,
)

log = logging.getLogger(__name__)

NAMESPACE = "/streams-api"
SOCKETIO_PATH = "/streams-api/socket.io/"
TOKENS_PATH = "/backend-api/auth/jwt/accounts/tokens"


# -- stream tokens -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamToken:
    """A per-account Streams API JWT. ``repr`` never shows the token."""

    account_id: str
    brand_id: str
    token: str = field(repr=False)
    expires_at: float  # epoch seconds, from the JWT's ``exp`` (0 when it has none)

    def expires_within(self, seconds: float, now: float | None = None) -> bool:
        if not self.expires_at:
            return False
        return self.expires_at - (time.time() if now is None else now) <= seconds


def jwt_expiry(token: str) -> float:
    """The ``exp`` claim of a JWT in epoch seconds (signature not checked), 0 when absent."""
    try:
        payload = token.split(".")[1]
        claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims.get("exp", 0)) if isinstance(claims, dict) else 0.0
    except (IndexError, ValueError, TypeError, orjson.JSONDecodeError):
        return 0.0


async def fetch_stream_tokens(
    session: aiohttp.ClientSession,
    backend_url: str,
    email: str,
    password: str,
    server: str,
    request_timeout: float = 15.0,
) -> dict[str, StreamToken]:
    """``POST /backend-api/auth/jwt/accounts/tokens``: one Streams token per account, by accountId.

    ``backend_url`` is the host (``https://demo.tradelocker.com``), ``/backend-api`` is appended.
    The request deliberately carries no developer-api-key (the venue refuses it there). Raises
    :class:`AuthFailed` on 4xx and :class:`VenueUnavailable` on 5xx or a transport failure; the
    messages never include the password."""
    url = backend_url.rstrip("/") + TOKENS_PATH
    body = {"email": email, "password": password, "server": server}
    try:
        async with session.post(
            url,
            json=body,
            headers={"User-Agent": USER_AGENT},
            timeout=aiohttp.ClientTimeout(total=request_timeout),
        ) as resp:
            raw = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise VenueUnavailable(
            f"stream token request to {url} failed: {type(exc).__name__}", route="STREAM_TOKENS"
        ) from exc
    if 400 <= status < 500:
        raise AuthFailed(
            f"stream token request refused with HTTP {status} for {email} on server {server}; "
            "check the credentials and the server name",
            route="STREAM_TOKENS",
        )
    if status >= 300:
        raise VenueUnavailable(f"stream token request got HTTP {status}", route="STREAM_TOKENS")
    try:
        rows = orjson.loads(raw)["data"]
        tokens = {}
        for row in rows:
            tok = StreamToken(
                account_id=str(row["accountId"]),
                brand_id=str(row.get("brandId") or server),
                token=str(row["accessToken"]),
                expires_at=jwt_expiry(str(row["accessToken"])),
            )
            tokens[tok.account_id] = tok
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise VenueError(
            f"stream token response is not {{data:[{{accessToken, accountId, brandId}}]}} "
            f"({type(exc).__name__}: {exc})",
            route="STREAM_TOKENS",
        ) from None
    return tokens


# -- typed stream messages -----------------------------------------------------------------------


class MalformedMessage(ValueError):
    """A ``stream`` payload that cannot be decoded; the text says which field and why."""


def _req(m: Mapping[str, Any], key: str) -> Any:
    v = m.get(key)
    if v is None or v == "":
        raise MalformedMessage(f"{m.get('type')} message has no {key!r}")
    return v


def _str(m: Mapping[str, Any], key: str) -> str:
    return str(_req(m, key))


def _opt_str(m: Mapping[str, Any], key: str) -> str | None:
    v = m.get(key)
    return None if v is None or v == "" else str(v)


def _num(m: Mapping[str, Any], key: str) -> float:
    return _to_float(m, key, _req(m, key))


def _opt_num(m: Mapping[str, Any], key: str, default: float | None = None) -> float | None:
    v = m.get(key)
    return default if v is None or v == "" else _to_float(m, key, v)


def _to_float(m: Mapping[str, Any], key: str, v: Any) -> float:
    if isinstance(v, bool):
        raise MalformedMessage(f"{m.get('type')} field {key!r} is a boolean, expected a number")
    try:
        return float(v)
    except (TypeError, ValueError):
        raise MalformedMessage(
            f"{m.get('type')} field {key!r} is {v!r}, expected a number"
        ) from None


def _side(m: Mapping[str, Any]) -> Side:
    v = _req(m, "side")
    if not isinstance(v, str):
        raise MalformedMessage(f"{m.get('type')} side is {v!r}, expected BUY or SELL")
    try:
        return Side.parse(v)
    except ValueError:
        raise MalformedMessage(f"{m.get('type')} side is {v!r}, expected BUY or SELL") from None


def _time_ms(m: Mapping[str, Any], key: str) -> int:
    v = m.get(key)
    if v is None or v == "":
        return 0
    if isinstance(v, int | float) and not isinstance(v, bool):
        return int(v)
    try:
        return int(datetime.fromisoformat(str(v)).timestamp() * 1000)
    except ValueError:
        raise MalformedMessage(
            f"{m.get('type')} field {key!r} is {v!r}, expected an ISO-8601 time"
        ) from None


def decode_message(m: Any) -> StreamMessage | None:
    """Decode one ``stream`` payload. Returns None for a well-formed type this engine does not
    use (logged at debug); raises :class:`MalformedMessage` for a broken one."""
    if not isinstance(m, dict):
        raise MalformedMessage(f"stream payload is a {type(m).__name__}, expected an object")
    kind = m.get("type")
    if kind == "AccountStatus":
        return StreamAccountStatus(
            account_id=_str(m, "accountId"),
            currency=str(m.get("currency") or ""),
            balance=_num(m, "balance"),
            margin_available=_opt_num(m, "marginAvailable", 0.0) or 0.0,
            margin_used=_opt_num(m, "marginUsed", 0.0) or 0.0,
            blocked_balance=_opt_num(m, "blockedBalance", 0.0) or 0.0,
            credit=_opt_num(m, "credit", 0.0) or 0.0,
            equity=_opt_num(m, "equity"),
        )
    if kind == "Position":
        return StreamPosition(
            account_id=_str(m, "accountId"),
            position_id=_str(m, "positionId"),
            instrument=_str(m, "instrument"),
            side=_side(m),
            lots=_num(m, "lots"),
            lot_size=_opt_num(m, "lotSize", 0.0) or 0.0,
            units=_opt_num(m, "units", 0.0) or 0.0,
            open_price=_num(m, "openPrice"),
            open_ms=_time_ms(m, "openDateTime"),
            open_order_id=_opt_str(m, "openOrderId"),
            stop_loss_order_id=_opt_str(m, "stopLossOrderId"),
            stop_loss_limit=_opt_num(m, "stopLossLimit"),
            take_profit_order_id=_opt_str(m, "takeProfitOrderId"),
            take_profit_limit=_opt_num(m, "takeProfitLimit"),
            maint_margin=_opt_num(m, "maintMargin", 0.0) or 0.0,
            fee=_opt_num(m, "fee", 0.0) or 0.0,
            swaps=_opt_num(m, "swaps", 0.0) or 0.0,
        )
    if kind == "ClosePosition":
        return StreamPositionClosed(
            position_id=_str(m, "positionId"),
            account_id=_opt_str(m, "accountId"),
            close_price=_opt_num(m, "closePrice"),
            close_ms=_time_ms(m, "closeDateTime"),
        )
    if kind == "OpenOrder":
        return StreamOrder(
            account_id=_str(m, "accountId"),
            order_id=_str(m, "orderId"),
            instrument=_str(m, "instrument"),
            side=_side(m),
            amount=_num(m, "amount"),
            lot_size=_opt_num(m, "lotSize", 0.0) or 0.0,
            price=_opt_num(m, "price"),
            status=_str(m, "status").upper(),
            filled_qty=_opt_num(m, "filledQty"),
            avg_price=_opt_num(m, "avgPrice"),
        )
    if kind == "Property":
        if m.get("name") == "SyncEnd":
            return StreamSyncEnd(account_id=_opt_str(m, "accountId"))
        log.debug("ignored stream Property %r", m.get("name"))
        return None
    if kind == "ConnectionErrorMessage":
        return StreamConnectionStatus(
            status=str(m.get("status") or "error"),
            message=str(m.get("message") or ""),
            code=_opt_str(m, "code"),
        )
    if not isinstance(kind, str):
        raise MalformedMessage("stream payload has no 'type'")
    log.debug("ignored stream message of type %r", kind)
    return None


# -- the session ---------------------------------------------------------------------------------


class SubscribeRefused(VenueError):
    """The server answered SUBSCRIBE with an error (bad or expired token, unknown account)."""


class StreamRefused(VenueError):
    """The server refused the connection itself (e.g. a bad developer-api-key)."""


def _answer_error(answer: list[Any]) -> str | None:
    """The error text of a subscriptions answer (the ack's arguments, or the ``subscriptions``
    event's), or None when it is a success."""
    first = answer[0] if answer else None
    if isinstance(first, dict):
        status = str(first.get("status", "ok")).lower()
        if status not in ("ok", "success", "subscribed", "unsubscribed"):
            code = first.get("code")
            msg = first.get("message") or first.get("error") or status
            return f"{code}: {msg}" if code else str(msg)
    return None


@dataclass(slots=True)
class _Request:
    """A SUBSCRIBE or UNSUBSCRIBE waiting for its answer, by ack or by ``subscriptions`` event."""

    action: str
    account_id: str
    event: asyncio.Future[list[Any]]

    def matches(self, answer: Mapping[str, Any]) -> bool:
        # An answer names its account and action when the server says them; what it leaves out
        # cannot rule a request out.
        action, account = answer.get("action"), answer.get("accountId")
        if action is not None and str(action).upper() != self.action:
            return False
        return account is None or str(account) == self.account_id


class StreamSession:
    """One Streams API connection. ``on_message`` receives decoded messages in wire order on the
    event loop and must not block. ``on_refused`` is called when the server sends a
    ``connection`` error (the socket is then closed)."""

    def __init__(
        self,
        url: str,
        developer_api_key: str,
        on_message: Callable[[StreamMessage], None],
        *,
        connect_timeout: float = 15.0,
        stale_after: float | None = None,
    ) -> None:
        """``url``: the Streams host, ``ws://host:port`` or ``wss://api.tradelocker.com``;
        the Socket.IO path is appended."""
        self._sio = SocketIOClient(
            url.rstrip("/") + SOCKETIO_PATH,
            NAMESPACE,
            self._on_event,
            headers={"developer-api-key": developer_api_key, "User-Agent": USER_AGENT},
            connect_timeout=connect_timeout,
            stale_after=stale_after,
        )
        self._on_message = on_message
        self.refused: StreamRefused | None = None
        self.malformed_messages = 0
        self._pending: list[_Request] = []  # awaiting an answer, oldest first
        # Settled by their ack; a server that answers both ways sends the event too (bounded: a
        # server that only acks never sends it).
        self._answered_by_ack: deque[_Request] = deque(maxlen=32)

    @property
    def socket(self) -> SocketIOClient:
        return self._sio

    async def connect(self) -> None:
        await self._sio.connect()

    async def subscribe(self, token: StreamToken, ack_timeout: float = 15.0) -> None:
        """SUBSCRIBE one account and wait for the answer, a Socket.IO ack or a ``subscriptions``
        event, whichever comes first (docs/api-reference.md section 10.1: the venue documents the
        ack, its own example reads the event). Raises :class:`SubscribeRefused` when the server
        says no, :class:`engine.tradelocker.socketio.AckTimeout` when neither answer comes in
        ``ack_timeout`` seconds, ``SocketIOError`` when the connection is lost meanwhile."""
        body = {
            "action": "SUBSCRIBE",
            "token": token.token,
            "brandId": token.brand_id,
            "accountId": token.account_id,
        }
        await self._request("SUBSCRIBE", token.account_id, body, ack_timeout)

    async def unsubscribe(self, account_id: str, brand_id: str, ack_timeout: float = 15.0) -> None:
        body = {"action": "UNSUBSCRIBE", "brandId": brand_id, "accountId": account_id}
        await self._request("UNSUBSCRIBE", account_id, body, ack_timeout)

    async def _request(
        self, action: str, account_id: str, body: dict[str, Any], answer_within: float
    ) -> None:
        request = _Request(action, account_id, asyncio.get_running_loop().create_future())
        self._pending.append(request)
        ack_id: int | None = None
        try:
            ack_id, ack = self._sio.emit_expecting_ack("subscriptions", body)
            try:
                async with asyncio.timeout(answer_within):
                    await asyncio.wait({ack, request.event}, return_when=asyncio.FIRST_COMPLETED)
            except TimeoutError:
                raise AckTimeout(
                    f"no answer to {action} for account {account_id} within {answer_within}s "
                    "(neither an ack nor a subscriptions event)"
                ) from None
            if request.event.done():
                answer = request.event.result()
            else:
                answer = ack.result()  # raises SocketIOError when the connection was lost
                # A server that answers both ways may still send the event: it belongs here.
                self._answered_by_ack.append(request)
        finally:
            if request in self._pending:
                self._pending.remove(request)
            if ack_id is not None:
                self._sio.forget_ack(ack_id)
            if not request.event.done():
                request.event.cancel()
        err = _answer_error(answer)
        if err is not None:
            raise SubscribeRefused(
                f"{action} refused for account {account_id}: {err}", account=account_id
            )

    def _on_subscriptions_event(self, args: list[Any]) -> None:
        answer = args[0] if args else None
        fields: Mapping[str, Any] = answer if isinstance(answer, dict) else {}
        for request in self._answered_by_ack:
            if request.matches(fields):
                # The second answer to a request its ack already settled.
                self._answered_by_ack.remove(request)
                log.debug("subscriptions event after the ack for %s: %r", request.action, answer)
                return
        for request in self._pending:
            if request.matches(fields) and not request.event.done():
                request.event.set_result(list(args[:1]))
                return
        if _answer_error(list(args[:1])) is not None:
            log.warning("subscriptions error that answers no request: %r", answer)
        else:
            log.debug("subscriptions notice that answers no request: %r", answer)

    def close(self, reason: str = "closed by client") -> None:
        self._sio.close(reason)

    async def wait_closed(self) -> None:
        await self._sio.wait_closed()

    @property
    def is_closed(self) -> bool:
        return self._sio.closed.is_set()

    def _on_event(self, name: str, args: list[Any]) -> None:
        if name == "stream":
            for payload in args[:1]:
                try:
                    msg = decode_message(payload)
                except MalformedMessage as exc:
                    self.malformed_messages += 1
                    log.warning("skipped a malformed stream message: %s", exc)
                    continue
                if msg is not None:
                    self._on_message(msg)
        elif name == "connection":
            payload = args[0] if args else None
            if isinstance(payload, dict) and str(payload.get("status", "")).lower() == "error":
                code = payload.get("code")
                text = f"{code}: {payload.get('message')}" if code else str(payload.get("message"))
                self.refused = StreamRefused(f"Streams API refused the connection: {text}")
                log.error("%s", self.refused)
                self._sio.close(str(self.refused))
            else:
                log.debug("stream connection status: %r", payload)
        elif name == "subscriptions":
            self._on_subscriptions_event(args)
        else:
            log.debug("ignored stream event %r", name)


__all__ = [
    "NAMESPACE",
    "SOCKETIO_PATH",
    "MalformedMessage",
    "SocketIOError",
    "StreamAccountStatus",
    "StreamConnectionStatus",
    "StreamMessage",
    "StreamOrder",
    "StreamPosition",
    "StreamPositionClosed",
    "StreamRefused",
    "StreamSession",
    "StreamSyncEnd",
    "StreamToken",
    "SubscribeRefused",
    "decode_message",
    "fetch_stream_tokens",
    "jwt_expiry",
]
