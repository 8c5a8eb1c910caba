"""Building the TradeLocker adapter from the TradeLocker part of the engine's config.

:class:`TradeLockerFactory` takes the logins (:class:`~engine.tradelocker.settings.LoginConfig`,
secret *references*), the accounts, and the secret store, and builds:

* the venue (:meth:`TradeLockerFactory.venue`): one :class:`TradeLockerVenue` for every login and
  enabled account, resuming each login's saved session (its refresh token: no password login at
  start, docs/architecture.md policy 3), persisting rotated tokens, and following password
  changes at the secret store. Its quote feeds, one per login (:mod:`engine.tradelocker.quotes`),
  are built when it starts and are its quote sources (``venue.quotes(alias)``);
* the stream sessions (:meth:`TradeLockerFactory.streams`, after the venue has started and so
  knows every account's id): one :class:`LoginStream` per login that has a ``stream_url`` and a
  developer key, already relaying its messages to the venue's ``events()``. Keeping live account
  state from them is the app's to wire (``engine.state.live``).

The adapter imports nothing of the app: the settings are TradeLocker's own, and the secret store
is anything with the methods of :class:`SecretResolver`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from typing import Protocol

from engine.model.errors import EngineError
from engine.tradelocker.auth import TokensHook
from engine.tradelocker.settings import (
    AccountSpec,
    ConnectionSettings,
    LoginConfig,
    LoginSpec,
    Timeouts,
    backend_url,
)
from engine.tradelocker.stream_session import (
    LoginStream,
    PasswordStreamTokens,
    StreamSettings,
    VenueEventRelay,
)
from engine.tradelocker.venue import TradeLockerVenue

log = logging.getLogger(__name__)

__all__ = ["AccountSettings", "SecretResolver", "TradeLockerFactory"]


class Revealable(Protocol):
    def reveal(self) -> str: ...


class SecretResolver(Protocol):
    """What the factory needs of the secret store (engine.secrets.store fits)."""

    async def resolve(self, ref: str) -> Revealable: ...
    async def load_refresh_token(self, login: str) -> Revealable | None: ...
    def refresh_hook(self, login: str) -> TokensHook: ...
    def on_change(self, hook: Callable[[str], Awaitable[None] | None]) -> None: ...


class AccountSettings(Protocol):
    """One configured account (`engine.tradelocker.settings.AccountSpec` fits)."""

    @property
    def alias(self) -> str: ...
    @property
    def login(self) -> str: ...
    @property
    def account_id(self) -> str | None: ...
    @property
    def acc_num(self) -> int | None: ...
    @property
    def enabled(self) -> bool: ...


class TradeLockerFactory:
    """The TradeLocker venue and its stream sessions, from typed settings and a secret store.

    ``base_url_override`` replaces every login's host (tests and the demo point the engine at a
    sandbox); ``quotes_share`` is the share of each login's QUOTES limit the feed uses."""

    def __init__(
        self,
        logins: Mapping[str, LoginConfig],
        accounts: Iterable[AccountSettings],
        secrets: SecretResolver,
        *,
        base_url_override: str | None = None,
        timeouts: Timeouts | None = None,
        connection: ConnectionSettings | None = None,
        quotes_share: float = 0.9,
    ) -> None:
        self.logins = dict(logins)
        self.accounts = [a for a in accounts if a.enabled]
        self.secrets = secrets
        self.base_url_override = base_url_override
        self.timeouts = timeouts
        self.connection = connection
        self.quotes_share = quotes_share
        self._venue: TradeLockerVenue | None = None

    def _host(self, login: LoginConfig) -> str:
        return self.base_url_override or login.base_url

    async def _reveal(self, ref: str) -> str:
        return (await self.secrets.resolve(ref)).reveal()

    async def venue(self) -> TradeLockerVenue:
        """The venue, not started (``start()`` logs in and builds the quote feeds)."""
        logins = []
        for login in self.logins.values():
            key = login.developer_api_key
            logins.append(
                LoginSpec(
                    login.name,
                    backend_url(self._host(login)),
                    email=await self._reveal(login.email),
                    password=await self._reveal(login.password),
                    server=login.server,
                    # Resume the last run's session: no password login at start (Policies 3).
                    refresh_token=await self._saved_refresh_token(login.name),
                    developer_api_key=await self._reveal(key) if key else None,
                )
            )
        accounts = [AccountSpec(a.alias, a.login, a.account_id, a.acc_num) for a in self.accounts]
        venue = TradeLockerVenue(
            logins,
            accounts,
            timeouts=self.timeouts,
            connection=self.connection,
            quotes_share=self.quotes_share,
            on_tokens=self.secrets.refresh_hook,
        )
        self._follow_password_changes(venue)
        self._venue = venue
        return venue

    def share_login_budgets(self, served: Collection[str] | None) -> dict[str, float]:
        """Engines in one Kafka consumer group share each login's QUOTES budget in proportion to
        the login's accounts each one serves (``served``: this process's aliases; None: all):
        ownership of partitions is disjoint, so the fractions of all live engines add up to at
        most 1 at every moment of a rebalance (an eager rebalance revokes everywhere before it
        assigns anywhere). Returns the fraction set per login (docs/kafka.md, "Per-login
        budgets")."""
        venue = self._venue
        if venue is None:
            raise RuntimeError("TradeLockerFactory.share_login_budgets() before venue()")
        fractions: dict[str, float] = {}
        for name in self.logins:
            aliases = [a.alias for a in self.accounts if a.login == name]
            if not aliases:
                continue
            mine = len(aliases) if served is None else sum(1 for a in aliases if a in served)
            fraction = mine / len(aliases)
            pacer = venue.quote_pacer(aliases[0])
            if pacer.fraction != fraction:
                pacer.set_fraction(fraction)
                log.info(
                    "login %s: this engine serves %d of its %d account(s): %.0f%% of its "
                    "quote budget",
                    name,
                    mine,
                    len(aliases),
                    fraction * 100,
                )
            fractions[name] = fraction
        return fractions

    async def _saved_refresh_token(self, login: str) -> str | None:
        try:
            saved = await self.secrets.load_refresh_token(login)
        except EngineError as exc:  # unreadable: log in with the password instead
            log.warning("login %s: saved refresh token unreadable (%s)", login, exc)
            return None
        return saved.reveal() if saved else None

    def _follow_password_changes(self, venue: TradeLockerVenue) -> None:
        """A password rotated at the secret store reaches the login's token manager without a
        restart; it is used at the next login (a refused refresh)."""
        by_ref = {login.password: login.name for login in self.logins.values()}

        async def changed(ref: str) -> None:
            name = by_ref.get(ref)
            tokens = venue.tokens.get(name) if name is not None else None
            if tokens is None:
                return
            tokens.set_password(await self._reveal(ref))
            log.info("login %s: password changed at the secret store; used at the next login", name)

        self.secrets.on_change(changed)

    async def streams(self) -> list[LoginStream]:
        """One stream session per login with a ``stream_url`` and a developer key, for its
        enabled accounts, relaying to the venue's ``events()``; not started. Call after the
        venue has started (the account ids come from the login)."""
        venue = self._venue
        if venue is None:
            raise RuntimeError("TradeLockerFactory.streams() before venue()")
        out = []
        for login in self.logins.values():
            if login.stream_url is None or login.developer_api_key is None:
                continue
            ids = {
                a.alias: venue.client(a.alias).account_id
                for a in self.accounts
                if a.login == login.name
            }
            if not ids:
                continue
            tokens = PasswordStreamTokens(
                None,
                self._host(login),  # the host: /backend-api is appended there
                await self._reveal(login.email),
                await self._reveal(login.password),
                login.server,
            )
            settings = StreamSettings(login.stream_url, await self._reveal(login.developer_api_key))
            stream = LoginStream(settings, tokens, ids)
            stream.listen(VenueEventRelay(ids, venue.publish_event))
            out.append(stream)
        return out
