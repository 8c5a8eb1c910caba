"""The prop-firm guards of a started set of accounts (docs/guards.md): the guard book built from
the config's ``[guards]`` and ``[rules.*]``, wired to the accounts' instruments, sessions, live
streams and held stop-limit orders, and the symbol map checked against each account."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from engine.execution.accounts import Accounts
from engine.execution.guards import GuardBook
from engine.execution.settings import AccountSettings, GroupSettings, GuardSettings, RuleSettings
from engine.execution.stoplimit import StopLimitBook
from engine.execution.symbols import SymbolMap
from engine.model.clock import LIVE, Clock
from engine.model.events import EventSink
from engine.state.live import LiveState

__all__ = ["start_guards"]


async def start_guards(
    settings: GuardSettings,
    account_settings: Iterable[AccountSettings],
    groups: Iterable[GroupSettings],
    rules: Mapping[str, RuleSettings],
    accounts: Accounts,
    bus: EventSink,
    *,
    metrics: Any = None,
    clock: Clock = LIVE,
    stop_limits: StopLimitBook | None = None,
    live_states: list[LiveState] | None = None,
) -> tuple[GuardBook | None, SymbolMap | None]:
    """The guards and symbol map of a started set of accounts (None, None without [rules.*]):
    symbol mappings checked against each account's instruments, every guarded account read
    once, the background reads started. Raises ConfigError on a mapping to nothing."""
    if not rules:
        return None, None
    book = GuardBook.from_config(
        settings, account_settings, groups, rules, bus, metrics=metrics, clock=clock
    )
    book.instrument_for = lambda alias, iid: accounts[alias].instruments_by_id.get(iid)
    book.instrument_id_of = lambda alias, name: (
        inst.tradable_instrument_id
        if (inst := accounts[alias].instruments_by_name.get(name)) is not None
        else None
    )
    if live_states is not None:
        book.live_states = live_states
    book.session_for = accounts.sessions.get
    if stop_limits is not None:
        book.cancel_held = stop_limits.cancel_all
        book.held_tags = lambda alias: {
            h.request.strategy_tag for h in stop_limits.held() if h.request.account == alias
        }
    symbols = SymbolMap(book.rules)
    symbols.check({a: list(s.instruments_by_name) for a, s in accounts.sessions.items()})
    venue = next(iter(accounts.sessions.values())).venue
    await book.start(venue)
    return book, (symbols or None)
