"""One login's Streams API connection, kept up: connect, subscribe, fresh tokens, reconnect.

A :class:`LoginStream` serves one login (stream tokens are per login) and any number of its
accounts over one Streams connection (:class:`~engine.tradelocker.stream.StreamSession`). It owns
that connection's whole life and is the TradeLocker :class:`~engine.venue.events.VenueStream`:

* connect → SUBSCRIBE each account in turn → wait for its ``SyncEnd`` → live deltas;
* a dropped or silent connection (the Socket.IO liveness watchdog, ``stale_after``) ends the
  session; the next one starts after exponential backoff with jitter;
* stream tokens are refreshed before their ``exp`` and the accounts re-subscribed.

What the connection carries goes to its listeners (:class:`~engine.venue.events.StreamListener`),
in wire order: a subscription starting (the server then replays the account's state up to
``SyncEnd``), each decoded message, the connection ending. Keeping account state from that, and
reconciling it after a reconnect, is the venue-neutral ``engine.state.live``'s job;
:class:`VenueEventRelay` hands the messages to the venue's ``events()``.

Nothing here is on the order path: order placement goes over REST whether the stream is up or
not, and nothing in this module ever awaits on behalf of an order.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp

from engine.model.errors import EngineError
from engine.tradelocker.socketio import SocketIOError
from engine.tradelocker.stream import (
    StreamSession,
    StreamToken,
    SubscribeRefused,
    fetch_stream_tokens,
)
from engine.venue.events import (
    StreamConnectionStatus,
    StreamHealth,
    StreamListener,
    StreamMessage,
    StreamPhase,
    StreamPosition,
    StreamPositionClosed,
    StreamSyncEnd,
    VenueEvent,
    event_kind,
)

log = logging.getLogger(__name__)

__all__ = [
    "LoginStream",
    "PasswordStreamTokens",
    "StreamSettings",
    "StreamTokenSource",
    "VenueEventRelay",
]


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """How to reach the Streams API and how patient to be. Times in seconds."""

    url: str  # ws(s)://host[:port]; the Socket.IO path is appended
    developer_api_key: str = field(repr=False)
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    connect_timeout: float = 15.0
    ack_timeout: float = 15.0
    sync_timeout: float = 30.0
    # No frame (data or server ping) for this long means the stream is dead; None = the
    # server's pingInterval + pingTimeout.
    stale_after: float | None = None
    # Re-subscribe with fresh tokens this long before exp; at most a quarter of the tokens'
    # lifetime (a venue issuing 120 s tokens with a 120 s margin would otherwise be asked for
    # new tokens and re-subscribed every second).
    token_refresh_margin: float = 120.0


class StreamTokenSource(Protocol):
    async def stream_tokens(self) -> dict[str, StreamToken]:
        """Fresh per-account Streams tokens, by accountId."""

    async def close(self) -> None: ...


class PasswordStreamTokens:
    """Stream tokens from ``/auth/jwt/accounts/tokens`` with the login's email and password.
    Without ``session`` it opens its own HTTP session on first use and closes it in close()."""

    def __init__(
        self,
        session: aiohttp.ClientSession | None,
        backend_url: str,
        email: str,
        password: str,
        server: str,
    ) -> None:
        self._session = session
        self._owns_session = session is None
        self._backend_url = backend_url
        self._email = email
        self._password = password
        self._server = server

    def __repr__(self) -> str:
        return f"PasswordStreamTokens({self._email!r} on {self._server!r})"

    async def stream_tokens(self) -> dict[str, StreamToken]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return await fetch_stream_tokens(
            self._session, self._backend_url, self._email, self._password, self._server
        )

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None


class VenueEventRelay:
    """A listener that hands every stream message to ``publish`` as a
    :class:`~engine.venue.events.VenueEvent` under the engine's alias (the venue's ``events()``).
    A close without an account id is named after the account that had the position open."""

    def __init__(self, accounts: Mapping[str, str], publish: Callable[[VenueEvent], None]) -> None:
        self._alias = {str(account_id): alias for alias, account_id in accounts.items()}
        self._publish = publish
        self._open: dict[str, str] = {}  # position id -> alias, for closes without an account

    def subscribing(self, account_id: str) -> None:
        return None

    def disconnected(self) -> None:
        return None

    def on_message(self, message: StreamMessage) -> None:
        if isinstance(message, StreamConnectionStatus):
            alias = ""
        elif isinstance(message, StreamPositionClosed):
            alias = self._open.pop(message.position_id, "")
            if message.account_id is not None:
                alias = self._alias.get(message.account_id, alias)
        else:
            alias = self._alias.get(message.account_id or "", "")
            if alias and isinstance(message, StreamPosition):
                self._open[message.position_id] = alias
        self._publish(VenueEvent(alias, event_kind(message), message))


class LoginStream:
    """The Streams connection of one login's accounts, reconnected until :meth:`close`."""

    def __init__(
        self,
        settings: StreamSettings,
        tokens: StreamTokenSource,
        accounts: Mapping[str, str],
        *,
        rng: random.Random | None = None,
    ) -> None:
        """``accounts`` maps the engine's alias to the venue accountId."""
        if not accounts:
            raise ValueError("LoginStream needs at least one account (alias -> accountId)")
        self.settings = settings
        self._tokens_source = tokens
        self._accounts = {alias: str(acc) for alias, acc in accounts.items()}
        self._rng = rng or random.Random()
        self._listeners: list[StreamListener] = []
        self._sync_waiters: dict[str, asyncio.Future[None]] = {}
        self._sync_order: list[str] = []  # accountIds awaiting a SyncEnd, oldest first
        self._tokens: dict[str, StreamToken] = {}
        self._tokens_at = 0.0  # wall time the tokens were fetched (their lifetime: exp - this)
        self._session: StreamSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._live = asyncio.Event()
        self._phase = StreamPhase.STOPPED
        self.reconnects = 0
        self._last_error = ""
        self._malformed_before = 0
        self._last_frame_mono = 0.0

    # -- public ------------------------------------------------------------------------------

    @property
    def accounts(self) -> Mapping[str, str]:
        return self._accounts

    @property
    def phase(self) -> StreamPhase:
        return self._phase

    @property
    def last_error(self) -> str:
        return self._last_error

    @property
    def is_live(self) -> bool:
        return self._phase is StreamPhase.LIVE

    def listen(self, listener: StreamListener) -> None:
        self._listeners.append(listener)

    def health(self) -> StreamHealth:
        session = self._session
        last = session.socket.last_frame_mono if session is not None else self._last_frame_mono
        malformed = self._malformed_before
        if session is not None:
            malformed += session.socket.malformed_frames + session.malformed_messages
        return StreamHealth(
            phase=self._phase,
            last_frame_age_s=(time.monotonic() - last) if last else None,
            reconnects=self.reconnects,
            last_error=self._last_error,
            malformed=malformed,
            accounts_synced=0,
            accounts=len(self._accounts),
        )

    async def start(self) -> None:
        """Start the connection loop in the background; returns at once."""
        if self._task is None:
            self._closing = False
            self._task = asyncio.create_task(self._run(), name="login-stream")

    async def wait_live(self) -> None:
        """Wait until every account is subscribed and synced (use asyncio.timeout around it)."""
        await self._live.wait()

    async def close(self) -> None:
        self._closing = True
        if self._session is not None:
            self._session.close("stream closing")
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self._tokens_source.close()
        self._phase = StreamPhase.STOPPED

    def drop_connection(self) -> None:
        """Close the current connection as if it had failed (operator action, tests)."""
        if self._session is not None:
            self._session.close("dropped on request")

    # -- the connection loop -----------------------------------------------------------------

    def _backoff_delay(self, attempt: int) -> float:
        # "Equal jitter": at least half the exponential step, so a fleet of engines reconnecting
        # after one venue outage spreads out without any of them retrying immediately.
        step = min(self.settings.backoff_max, self.settings.backoff_initial * (2**attempt))
        return step / 2 + self._rng.uniform(0, step / 2)

    async def _run(self) -> None:
        attempt = 0
        while not self._closing:
            try:
                await self._one_session()
            except asyncio.CancelledError:
                raise
            except (SocketIOError, EngineError, TimeoutError, OSError) as exc:
                self._last_error = f"{type(exc).__name__}: {exc}"
                log.warning("stream session ended: %s", self._last_error)
            except Exception as exc:  # a bug must not stop recovery for good
                self._last_error = f"{type(exc).__name__}: {exc}"
                log.exception("stream session failed unexpectedly")
            finally:
                self._end_session()
            if self._closing:
                break
            if self._phase is StreamPhase.LIVE:
                attempt = 0  # it worked until it broke: start the backoff over
            self.reconnects += 1
            self._phase = StreamPhase.BACKOFF
            delay = self._backoff_delay(attempt)
            attempt = min(attempt + 1, 30)
            log.info("stream reconnect #%d in %.2fs", self.reconnects, delay)
            await asyncio.sleep(delay)

    def _margin(self) -> float:
        """The refresh margin for the tokens held: the configured one, at most a quarter of
        their lifetime."""
        lifetimes = [t.expires_at - self._tokens_at for t in self._tokens.values() if t.expires_at]
        if not lifetimes or not self._tokens_at:
            return self.settings.token_refresh_margin
        return min(self.settings.token_refresh_margin, max(1.0, min(lifetimes) / 4))

    async def _fresh_tokens(self, force: bool = False) -> dict[str, StreamToken]:
        margin = self._margin()
        needed = list(self._accounts.values())
        if (
            force
            or not self._tokens
            or any(a not in self._tokens or self._tokens[a].expires_within(margin) for a in needed)
        ):
            fetched_at = time.time()
            tokens = await self._tokens_source.stream_tokens()
            missing = [a for a in needed if a not in tokens]
            if missing:
                raise EngineError(
                    f"the stream token response has no token for account(s) {missing}; "
                    "check the account ids in the config belong to this login"
                )
            self._tokens = tokens
            self._tokens_at = fetched_at
        return self._tokens

    async def _one_session(self) -> None:
        self._phase = StreamPhase.CONNECTING
        self._live.clear()
        tokens: Mapping[str, StreamToken] = await self._fresh_tokens()
        s = self.settings
        session = StreamSession(
            s.url,
            s.developer_api_key,
            self._on_message,
            connect_timeout=s.connect_timeout,
            stale_after=s.stale_after,
        )
        self._session = session
        await session.connect()
        tokens = await self._subscribe_all(session, tokens)
        self._phase = StreamPhase.LIVE
        self._live.set()
        log.info("stream live: %d account(s) synced", len(self._accounts))
        while True:
            refresh_in = self._refresh_in(tokens)
            closed = asyncio.ensure_future(session.wait_closed())
            try:
                await asyncio.wait_for(asyncio.shield(closed), refresh_in)
            except TimeoutError:
                pass
            finally:
                closed.cancel()
            if session.is_closed:
                raise SocketIOError(
                    str(session.refused) if session.refused else session.socket.close_reason
                )
            # The tokens are about to expire: re-subscribe with fresh ones on the same socket.
            # The server replays the snapshot, and the listeners' diff keeps only real changes.
            tokens = await self._fresh_tokens()
            tokens = await self._subscribe_all(session, tokens)
            self._phase = StreamPhase.LIVE  # _subscribe_all left it at SYNCING

    def _refresh_in(self, tokens: Mapping[str, StreamToken]) -> float | None:
        exps = [t.expires_at for t in tokens.values() if t.expires_at]
        if not exps:
            return None
        return max(1.0, min(exps) - self._margin() - time.time())

    async def _subscribe_all(
        self, session: StreamSession, tokens: Mapping[str, StreamToken]
    ) -> Mapping[str, StreamToken]:
        """Subscribe every account; returns the tokens finally used (renewed when the venue
        refused one)."""
        # One account at a time: SyncEnd carries no accountId on the real venue, so only one
        # subscription may be waiting for it.
        loop = asyncio.get_running_loop()
        for aid in self._accounts.values():
            self._phase = StreamPhase.SUBSCRIBING
            for listener in self._listeners:
                listener.subscribing(aid)
            waiter: asyncio.Future[None] = loop.create_future()
            self._sync_waiters[aid] = waiter
            self._sync_order.append(aid)
            try:
                tokens = await self._subscribe(session, tokens, aid)
                self._phase = StreamPhase.SYNCING
                closed = asyncio.ensure_future(session.wait_closed())
                try:
                    async with asyncio.timeout(self.settings.sync_timeout):
                        await asyncio.wait({waiter, closed}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    closed.cancel()
                if not waiter.done():
                    raise SocketIOError(f"connection lost while syncing account {aid}")
            except TimeoutError:
                raise TimeoutError(
                    f"no SyncEnd for account {aid} within {self.settings.sync_timeout}s"
                ) from None
            finally:
                self._sync_waiters.pop(aid, None)
                if aid in self._sync_order:
                    self._sync_order.remove(aid)
        return tokens

    async def _subscribe(
        self, session: StreamSession, tokens: Mapping[str, StreamToken], aid: str
    ) -> Mapping[str, StreamToken]:
        try:
            await session.subscribe(tokens[aid], self.settings.ack_timeout)
            return tokens
        except SubscribeRefused as exc:
            # Most often a stream token the venue no longer accepts (expired early, revoked):
            # fresh tokens and one more SUBSCRIBE. A second refusal ends the session, and the
            # next one starts from fresh tokens too.
            log.warning("stream: %s; renewing the stream tokens and subscribing again", exc)
            fresh = await self._fresh_tokens(force=True)
            try:
                await session.subscribe(fresh[aid], self.settings.ack_timeout)
            except SubscribeRefused:
                self._tokens = {}
                raise
            return fresh

    def _end_session(self) -> None:
        session = self._session
        if session is not None:
            session.close("session ended")
            self._last_frame_mono = session.socket.last_frame_mono
            self._malformed_before += session.socket.malformed_frames + session.malformed_messages
        self._session = None
        self._sync_order.clear()
        for w in self._sync_waiters.values():
            w.cancel()
        self._sync_waiters.clear()
        self._live.clear()
        for listener in self._listeners:
            listener.disconnected()

    # -- messages (event loop, never blocks) -------------------------------------------------

    def _on_message(self, msg: StreamMessage) -> None:
        if isinstance(msg, StreamSyncEnd):
            aid = msg.account_id
            if aid is None:
                if not self._sync_order:
                    log.debug("SyncEnd with no subscription waiting for it: ignored")
                    return
                aid = self._sync_order[0]
                msg = StreamSyncEnd(aid)
            if aid in self._sync_order:
                self._sync_order.remove(aid)
            self._emit(msg)
            waiter = self._sync_waiters.get(aid)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            return
        if isinstance(msg, StreamConnectionStatus) and msg.status.lower() != "ok":
            self._last_error = f"stream connection error: {msg.code or ''} {msg.message}"
            log.error("%s", self._last_error)
        self._emit(msg)

    def _emit(self, msg: StreamMessage) -> None:
        for listener in self._listeners:
            listener.on_message(msg)
