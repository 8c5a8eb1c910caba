"""``TradeLockerVenue``: the :class:`engine.venue.protocol.Venue` protocol over TradeLocker's REST
API.

Many logins, many accounts: each login has one :class:`TokenManager` (shared by its accounts), each
account one :class:`RestClient` (its own warm connection pool), one :class:`InstrumentCache` and its
column layouts from ``/trade/config``. Each login also has one :class:`QuotePacer`: every quote
request of its accounts (:meth:`TradeLockerVenue.quote`, the instrument caches' INFO-route probes,
the login's quote feed) takes a turn of it, so together they stay within the QUOTES limit. The
login's feed (:mod:`engine.tradelocker.quotes`) is the venue's quote source for its accounts
(:meth:`TradeLockerVenue.quotes`). Rate limits are the account's ``/trade/config`` ``rateLimits``
and the routes of :mod:`engine.tradelocker.rate_limits`; every read and keep-warm ping of an
account goes through the rate gate the engine hands over (:meth:`TradeLockerVenue.use_gate`, see
:mod:`engine.tradelocker.rest`). Accounts are named by the engine's
alias; at start-up each alias is resolved to (login, accountId, accNum) through
``/auth/jwt/all-accounts``.

Order entry is sent exactly once (see :mod:`engine.tradelocker.rest`). After
:class:`engine.model.errors.OutcomeUnknown`, :meth:`TradeLockerVenue.find_by_tag` says what the
venue holds for the order's ``strategyId`` tag; that is how reconciliation decides, never by
resending.

Stream events: :meth:`events` yields what :meth:`publish_event` is given (the login stream
sessions of :mod:`engine.tradelocker.stream_session` feed it; :mod:`engine.tradelocker.factory`
connects them).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from engine.model.domain import (
    AccountState,
    Action,
    Instrument,
    Order,
    OrderModification,
    OrderRequest,
    OrderType,
    Position,
    Priority,
    ProtectionType,
    RateLimit,
    RouteKey,
    Validity,
)
from engine.model.errors import (
    ConfigError,
    NotFound,
    OutcomeUnknown,
    ValidationError,
    VenueUnavailable,
)
from engine.tradelocker.auth import TokenManager, TokensHook
from engine.tradelocker.columns import (
    ColumnError,
    Layouts,
    decode_account_state,
    decode_orders,
    decode_positions,
)
from engine.tradelocker.instruments import InstrumentCache
from engine.tradelocker.order_body import MAX_TAG_LENGTH, check_request, encode_place_order
from engine.tradelocker.quotes import QUOTES_PATH, QuoteFeed, QuotePacer, login_feed
from engine.tradelocker.rate_limits import parse_rate_limits, routes_for
from engine.tradelocker.rest import RestClient
from engine.tradelocker.settings import (
    AccountSpec,
    ConnectionSettings,
    LoginSpec,
    RetryPolicy,
    Timeouts,
    backend_url,
)
from engine.venue.protocol import (
    Capabilities,
    PlaceResult,
    RateGate,
    ReverseResult,
    TagMatches,
    VenueEvent,
    group_by_tag,
)

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Account:
    alias: str
    spec: AccountSpec
    client: RestClient
    instruments: InstrumentCache
    layouts: Layouts | None = None


class TradeLockerVenue:
    """The Venue protocol for many TradeLocker accounts across several logins."""

    capabilities = Capabilities(
        native_stop_limit=False,
        hedging=True,
        trailing_stop=True,
        partial_close=True,
        client_order_id=False,
        max_tag_length=MAX_TAG_LENGTH,
        streaming=True,
    )

    def __init__(
        self,
        logins: Sequence[LoginSpec],
        accounts: Sequence[AccountSpec],
        *,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        connection: ConnectionSettings | None = None,
        instrument_ttl_s: float = 3600.0,
        refresh_fraction: float = 0.6,
        refresh_margin_s: float = 300.0,
        on_tokens: Callable[[str], TokensHook] | None = None,
        history_page_floor_ms: int = 1,
        quotes_share: float = 0.9,
        unpublished_quotes_rate: float = 1.0,
    ) -> None:
        """``on_tokens(login_name)`` returns the hook that persists that login's refresh token.

        Quote requests are paced per login at the QUOTES limit of its first account's
        ``/trade/config`` x ``quotes_share``, or at ``unpublished_quotes_rate`` per second when
        the venue publishes no QUOTES limit (a guess kept low on purpose)."""
        self._logins = {spec.name: spec for spec in logins}
        if len(self._logins) != len(logins):
            raise ConfigError("two logins share one name")
        self._account_specs: dict[str, AccountSpec] = {}
        for spec in accounts:
            if spec.login not in self._logins:
                raise ConfigError(
                    f"account {spec.alias!r} names login {spec.login!r}, which is not configured"
                )
            if spec.account_id is None and spec.acc_num is None:
                raise ConfigError(f"account {spec.alias!r}: give account_id or acc_num")
            if spec.alias in self._account_specs:
                raise ConfigError(f"account alias {spec.alias!r} is configured twice")
            self._account_specs[spec.alias] = spec
        self._timeouts = timeouts
        self._retry = retry
        self._connection = connection
        self._instrument_ttl = instrument_ttl_s
        self._history_floor = max(1, history_page_floor_ms)
        self.tokens: dict[str, TokenManager] = {
            spec.name: TokenManager(
                spec.base_url,
                name=spec.name,
                email=spec.email,
                password=spec.password,
                server=spec.server,
                refresh_token=spec.refresh_token,
                on_tokens=on_tokens(spec.name) if on_tokens else None,
                refresh_fraction=refresh_fraction,
                refresh_margin_s=refresh_margin_s,
                verify_tls=spec.verify_tls,
            )
            for spec in logins
        }
        self._quotes_share = quotes_share
        # Created now (the caches need them at start); the pace is set once /trade/config is read.
        self._quote_pacers: dict[str, QuotePacer] = {
            spec.name: QuotePacer(unpublished_quotes_rate) for spec in logins
        }
        self._feeds: dict[str, QuoteFeed | None] = {}  # by login, built at start
        self._accounts: dict[str, _Account] = {}
        self._events: asyncio.Queue[VenueEvent] = asyncio.Queue(maxsize=100_000)

    # -- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Log in everywhere, resolve every alias, open and warm each account's connections."""
        await asyncio.gather(*(t.start() for t in self.tokens.values()))
        known = {name: await tokens.accounts() for name, tokens in self.tokens.items()}
        for alias, spec in self._account_specs.items():
            info = next(
                (
                    a
                    for a in known[spec.login]
                    if (spec.account_id is None or a.account_id == str(spec.account_id))
                    and (spec.acc_num is None or a.acc_num == spec.acc_num)
                ),
                None,
            )
            if info is None:
                listed = ", ".join(
                    f"{a.account_id} (accNum {a.acc_num})" for a in known[spec.login]
                )
                raise ConfigError(
                    f"account {alias!r}: login {spec.login!r} has no account matching "
                    f"account_id={spec.account_id} acc_num={spec.acc_num}; "
                    f"it has: {listed or 'none'}"
                )
            login = self._logins[spec.login]
            client = RestClient(
                login.base_url,
                self.tokens[spec.login],
                alias=alias,
                account_id=info.account_id,
                acc_num=info.acc_num,
                developer_api_key=login.developer_api_key,
                timeouts=self._timeouts,
                retry=self._retry,
                connection=self._connection,
            )
            cache = InstrumentCache(
                client, self._quote_pacers[spec.login], ttl_s=self._instrument_ttl
            )
            self._accounts[alias] = _Account(alias, spec, client, cache)
        await asyncio.gather(*(self._start_account(a) for a in self._accounts.values()))
        self._open_quote_feeds()

    def _open_quote_feeds(self) -> None:
        """One feed per login, polling through its first account and paced (with the venue's
        own quote requests, on the login's pacer) by the QUOTES limit that account publishes."""
        for account in self._accounts.values():
            login = account.spec.login
            if login in self._feeds:
                continue
            pacer = self._quote_pacers[login]
            feed = login_feed(
                account.client, account.client.config, pacer, self._quotes_share, login=login
            )
            self._feeds[login] = feed
            if feed is None:
                log.warning(
                    "login %s: quotes paced at %.2f requests/s", login, pacer.requests_per_second
                )

    async def _start_account(self, account: _Account) -> None:
        await account.client.start()
        account.layouts = Layouts.from_config(account.client.config)

    async def close(self) -> None:
        feeds = [f for f in self._feeds.values() if f is not None]
        await asyncio.gather(*(f.close() for f in feeds), return_exceptions=True)
        await asyncio.gather(
            *(a.client.close() for a in self._accounts.values()), return_exceptions=True
        )
        await asyncio.gather(*(t.close() for t in self.tokens.values()), return_exceptions=True)

    # -- lookups ----------------------------------------------------------------------------

    def _account(self, alias: str) -> _Account:
        account = self._accounts.get(alias)
        if account is None:
            known = ", ".join(sorted(self._accounts)) or "none (start() not called?)"
            raise ConfigError(f"unknown account alias {alias!r}; configured: {known}")
        return account

    def _layouts(self, account: _Account) -> Layouts:
        if account.layouts is None:
            raise VenueUnavailable(f"account {account.alias} is not started", account=account.alias)
        return account.layouts

    def client(self, alias: str) -> RestClient:
        """The account's REST client (rate-limit config, health, benchmarks)."""
        return self._account(alias).client

    def config(self, alias: str) -> Mapping[str, Any]:
        """The account's ``/trade/config`` payload (``rateLimits``, ``limits``, layouts)."""
        return self._account(alias).client.config

    def _login_of(self, alias: str) -> str:
        spec = self._account_specs.get(alias)
        if spec is None:
            known = ", ".join(sorted(self._account_specs)) or "none"
            raise ConfigError(f"unknown account alias {alias!r}; configured: {known}")
        return spec.login

    def quote_pacer(self, alias: str) -> QuotePacer:
        """The QUOTES budget of the account's login, shared by every quote requester there."""
        return self._quote_pacers[self._login_of(alias)]

    def quotes(self, account: str) -> QuoteFeed | None:
        """The login's quote feed (shared by its accounts; started by whoever uses it), or None
        before start and when the login publishes no QUOTES limit."""
        return self._feeds.get(self._login_of(account))

    def rate_limits(self, account: str) -> list[RateLimit]:
        """The account's ``/trade/config`` ``rateLimits``, typed (unknown route types skipped)."""
        return parse_rate_limits(self.config(account).get("rateLimits") or ())

    def route_for(self, action: Action) -> tuple[RouteKey, ...]:
        return routes_for(action)

    def use_gate(self, account: str, gate: RateGate) -> None:
        """Every read and keep-warm ping of the account from now on waits for ``gate``'s budget
        (the routes of :func:`engine.tradelocker.rate_limits.read_route`)."""
        self._account(account).client.gate = gate

    async def instruments(self, account: str) -> list[Instrument]:
        return await self._account(account).instruments.all()

    async def instrument(self, account: str, symbol: str) -> Instrument:
        return await self._account(account).instruments.by_symbol(symbol)

    async def instrument_by_id(self, account: str, tradable_instrument_id: int) -> Instrument:
        return await self._account(account).instruments.by_id(tradable_instrument_id)

    async def quote(self, account: str, instrument: Instrument) -> tuple[float, float] | None:
        """(bid, ask) from the instrument's INFO route, or None when the venue has no price.

        Waits for a turn of the login's QUOTES budget and sends once (no retry: a retry would be
        a request outside the budget); a failure raises and the caller asks again later."""
        acct = self._account(account)
        if not instrument.info_route_ids:
            return None
        await self._quote_pacers[acct.spec.login].turn()
        reply = await acct.client.query(
            QUOTES_PATH,
            {
                "tradableInstrumentId": instrument.tradable_instrument_id,
                "routeId": instrument.info_route_ids[0],
            },
            attempts=1,
        )
        if not isinstance(reply, Mapping) or reply.get("bp") is None or reply.get("ap") is None:
            return None
        return float(reply["bp"]), float(reply["ap"])

    # -- orders -----------------------------------------------------------------------------

    async def place_order(self, request: OrderRequest) -> PlaceResult:
        check_request(request)
        acct = self._accounts.get(request.account) or self._account(request.account)
        client = acct.client
        try:
            reply = await client.place_order(
                encode_place_order(request), request.strategy_tag, request.send_by_ns
            )
        except NotFound:
            # The instrument or route is unknown to the venue: our cache is stale. Definitive.
            acct.instruments.invalidate()
            raise
        order_id = reply.get("orderId") if isinstance(reply, Mapping) else None
        if order_id is None:
            # 2xx and s=ok but no id: the venue accepted *something*; only a search can tell.
            path = client.orders_path
            raise OutcomeUnknown(
                f"POST {path}: accepted without an orderId; reconcile by tag",
                account=acct.alias,
                route="POST " + path,
                strategy_tag=request.strategy_tag,
            )
        return PlaceResult(order_id=str(order_id))

    async def modify_order(self, account: str, order_id: str, change: OrderModification) -> None:
        acct = self._account(account)
        body: dict[str, Any] = {}
        if change.price is not None:
            body["price"] = change.price
        if change.qty is not None:
            body["qty"] = change.qty
        if change.stop_price is not None:
            body["stopPrice"] = change.stop_price
        if change.stop_loss is not None:
            body["stopLoss"] = change.stop_loss
            body["stopLossType"] = (change.stop_loss_type or ProtectionType.ABSOLUTE).wire
            if change.stop_loss_type is ProtectionType.TRAILING_OFFSET:
                body["trStopOffset"] = change.trailing_offset
        if change.take_profit is not None:
            body["takeProfit"] = change.take_profit
            body["takeProfitType"] = (change.take_profit_type or ProtectionType.ABSOLUTE).wire
        if not body:
            raise ValidationError("modify_order: nothing to change", account)
        await acct.client.submit("PATCH", f"/trade/orders/{order_id}", orjson.dumps(body))

    async def cancel_order(self, account: str, order_id: str) -> None:
        acct = self._account(account)
        await acct.client.submit("DELETE", f"/trade/orders/{order_id}")

    async def cancel_all_orders(self, account: str, instrument_id: int | None = None) -> None:
        acct = self._account(account)
        params = {"tradableInstrumentId": instrument_id} if instrument_id is not None else None
        await acct.client.submit(
            "DELETE", f"/trade/accounts/{acct.client.account_id}/orders", params=params
        )

    # -- positions --------------------------------------------------------------------------

    async def modify_position(
        self,
        account: str,
        position_id: str,
        stop_loss: float | None,
        take_profit: float | None,
        stop_loss_type: ProtectionType | None = None,
        trailing_offset: float | None = None,
    ) -> None:
        """Set both protections; ``None`` removes one (the venue's ``null``)."""
        acct = self._account(account)
        body: dict[str, Any] = {"stopLoss": stop_loss, "takeProfit": take_profit}
        if stop_loss_type is ProtectionType.TRAILING_OFFSET:
            if trailing_offset is None:
                raise ValidationError("a trailing stop-loss needs trailing_offset", account)
            body["trailingOffset"] = trailing_offset
        await acct.client.submit("PATCH", f"/trade/positions/{position_id}", orjson.dumps(body))

    async def close_position(self, account: str, position_id: str, qty: float = 0.0) -> None:
        """Close ``qty`` lots of the position; 0 closes all of it."""
        if qty < 0:
            raise ValidationError(f"close qty must be 0 (all) or positive, got {qty}", account)
        acct = self._account(account)
        await acct.client.submit(
            "DELETE", f"/trade/positions/{position_id}", orjson.dumps({"qty": qty})
        )

    async def reverse_position(self, account: str, position_id: str, tag: str) -> ReverseResult:
        """Close the position, then open the same qty on the other side with a market order.

        On a hedging account the venue would happily hold both sides, so reversing is two calls:
        a full close, then a fresh market order tagged ``tag``. If the close fails nothing else is
        sent; if the opening order's outcome is unknown, OutcomeUnknown carries ``tag``.
        """
        acct = self._account(account)
        position = next(
            (p for p in await self.positions(account) if p.position_id == position_id), None
        )
        if position is None:
            raise NotFound(
                f"account {account}: no open position {position_id} to reverse", account=account
            )
        instrument = await acct.instruments.by_id(position.instrument_id)
        await self.close_position(account, position_id, 0.0)
        placed = await self.place_order(
            OrderRequest(
                account=account,
                instrument=instrument,
                side=position.side.opposite,
                type=OrderType.MARKET,
                qty=position.qty,
                validity=Validity.IOC,
                strategy_tag=tag,
            )
        )
        return ReverseResult(closed_position_id=position_id, order_id=placed.order_id)

    async def close_all_positions(self, account: str, instrument_id: int | None = None) -> None:
        acct = self._account(account)
        params = {"tradableInstrumentId": instrument_id} if instrument_id is not None else None
        await acct.client.submit(
            "DELETE", f"/trade/accounts/{acct.client.account_id}/positions", params=params
        )

    # -- snapshots --------------------------------------------------------------------------

    async def orders(self, account: str, *, priority: Priority = Priority.QUERY) -> list[Order]:
        acct = self._account(account)
        path = f"/trade/accounts/{acct.client.account_id}/orders"
        reply = await acct.client.query(path, priority=priority)
        rows = reply.get("orders", []) if isinstance(reply, Mapping) else []
        return self._decode(acct, decode_orders, self._layouts(acct).orders, rows)

    async def orders_history(
        self, account: str, from_ms: int | None = None, to_ms: int | None = None
    ) -> list[Order]:
        """Final orders in [from_ms, to_ms], complete: ``hasMore`` pages are followed by
        halving the window until each part fits; a window that cannot be narrowed further and
        still has more raises instead of returning a silently truncated list."""
        acct = self._account(account)
        lo = 0 if from_ms is None else from_ms
        hi = int(time.time() * 1000) + 60_000 if to_ms is None else to_ms
        found: dict[str, Order] = {}
        await self._history_window(acct, lo, hi, found)
        return sorted(found.values(), key=lambda o: (o.created_ms, o.order_id))

    async def _history_window(
        self, acct: _Account, lo: int, hi: int, found: dict[str, Order]
    ) -> None:
        path = f"/trade/accounts/{acct.client.account_id}/ordersHistory"
        reply = await acct.client.query(path, {"from": lo, "to": hi})
        rows = reply.get("ordersHistory", []) if isinstance(reply, Mapping) else []
        for order in self._decode(acct, decode_orders, self._layouts(acct).orders_history, rows):
            found[order.order_id] = order
        if not (isinstance(reply, Mapping) and reply.get("hasMore")):
            return
        if hi - lo <= self._history_floor:
            raise VenueUnavailable(
                f"GET {path}: more orders than one page within {hi - lo} ms at {lo}; the "
                "history cannot be narrowed further and would be incomplete",
                account=acct.alias,
                route="GET " + path,
            )
        mid = lo + (hi - lo) // 2
        await self._history_window(acct, lo, mid, found)
        await self._history_window(acct, mid + 1, hi, found)

    async def positions(
        self, account: str, *, priority: Priority = Priority.QUERY
    ) -> list[Position]:
        acct = self._account(account)
        path = f"/trade/accounts/{acct.client.account_id}/positions"
        reply = await acct.client.query(path, priority=priority)
        rows = reply.get("positions", []) if isinstance(reply, Mapping) else []
        return self._decode(acct, decode_positions, self._layouts(acct).positions, rows)

    async def account_state(
        self, account: str, *, priority: Priority = Priority.QUERY
    ) -> AccountState:
        acct = self._account(account)
        path = f"/trade/accounts/{acct.client.account_id}/state"
        reply = await acct.client.query(path, priority=priority)
        values = reply.get("accountDetailsData") if isinstance(reply, Mapping) else None
        try:
            return decode_account_state(self._layouts(acct).account_details, values, account)
        except ColumnError as exc:
            raise VenueUnavailable(str(exc), account=account) from None

    @staticmethod
    def _decode(acct: _Account, decoder: Callable[[Any, Any], list[Any]], layout: Any,
                rows: Any) -> list[Any]:  # fmt: skip
        try:
            return decoder(layout, rows)
        except ColumnError as exc:
            raise VenueUnavailable(
                f"account {acct.alias}: {exc}", account=acct.alias, route=layout.table
            ) from None

    async def find_by_tag(self, account: str, tag: str, since_ms: int | None = None) -> TagMatches:
        """Everything the venue holds that carries ``tag`` as its strategyId: working orders,
        final orders created from ``since_ms`` (None: the whole history) and positions. Used by
        reconciliation after an unknown outcome; the three reads go through the account's gate."""
        if not tag:
            raise ValidationError("find_by_tag needs a non-empty tag", account)
        return (await self.find_by_tags(account, (tag,), since_ms)).get(tag, TagMatches())

    async def find_by_tags(
        self, account: str, tags: Collection[str] | None = None, since_ms: int | None = None
    ) -> dict[str, TagMatches]:
        """One read each of working orders, final orders created from ``since_ms`` and
        positions (together, through the account's gate), grouped by strategyId: the matches of
        every tag of ``tags`` found (None: every tag found)."""
        # All three end before a failure is raised: a read left running would hold its budget
        # past the lookup while the reconciler's next round sends more beside it.
        working, history, positions = await asyncio.gather(
            self.orders(account),
            self.orders_history(account, since_ms),
            self.positions(account),
            return_exceptions=True,
        )
        for result in (working, history, positions):
            if isinstance(result, BaseException):
                raise result
        assert not isinstance(working, BaseException)
        assert not isinstance(history, BaseException)
        assert not isinstance(positions, BaseException)
        return group_by_tag(tags, working, history, positions)

    # -- events -----------------------------------------------------------------------------

    def publish_event(self, event: VenueEvent) -> None:
        """Hand a stream event to :meth:`events` readers; drops the oldest when nobody reads."""
        if self._events.full():
            self._events.get_nowait()
        self._events.put_nowait(event)

    async def events(self) -> AsyncIterator[VenueEvent]:
        while True:
            yield await self._events.get()


__all__ = [
    "AccountSpec",
    "LoginSpec",
    "TagMatches",
    "TradeLockerVenue",
    "backend_url",
    "encode_place_order",
]
