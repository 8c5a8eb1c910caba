"""Account sessions and groups.

One :class:`AccountSession` per configured account: its instruments (loaded at start, never on the
hot path), its rate gate and circuit breaker, what it has in flight, and its health (auth, stream,
rate budget, breaker, last error). :class:`Accounts` turns a signal's ``account`` (an alias or a
group name) into the legs that trade: every member of a fan-out group with its qty share, or one
healthy member of a pool group, least loaded first. A pool switches away from an unhealthy account
on its own, because an unhealthy account is never picked.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass

import msgspec

from engine.execution.breaker import CircuitBreaker
from engine.execution.limits import AccountLimiter
from engine.execution.settings import AccountSettings, GroupSettings
from engine.model.domain import Action, Instrument
from engine.model.errors import SignalError, ValidationError
from engine.venue.protocol import Venue


@dataclass(slots=True)
class Health:
    auth_ok: bool = True
    stream_ok: bool = True
    breaker_open: bool = False
    rate_utilisation: float = 0.0  # 0..1 of the tightest order bucket
    last_error: str | None = None  # a sentence, never a secret

    @property
    def healthy(self) -> bool:
        return self.auth_ok and not self.breaker_open


class AccountSession:
    """Everything the pipeline needs to trade one account, resolved before the first signal."""

    __slots__ = (
        "alias",
        "breaker",
        "enabled",
        "gate",
        "health",
        "in_flight",
        "instruments_by_id",
        "instruments_by_name",
        "max_tag_length",
        "multiplier",
        "settings",
        "venue",
    )

    def __init__(
        self,
        settings: AccountSettings,
        venue: Venue,
        gate: AccountLimiter | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.alias = settings.alias
        self.settings = settings
        self.enabled = settings.enabled
        self.multiplier = settings.multiplier
        self.venue = venue
        # Read once: pre-validation checks every order's tag against it.
        self.max_tag_length = venue.capabilities.max_tag_length
        self.gate = gate
        self.breaker = breaker
        self.health = Health()
        self.in_flight = 0
        self.instruments_by_name: dict[str, Instrument] = {}
        self.instruments_by_id: dict[int, Instrument] = {}

    async def start(self) -> None:
        """Load the account's instruments so resolving one on the hot path is a dict hit."""
        self.load_instruments(await self.venue.instruments(self.alias))

    def load_instruments(self, instruments: Iterable[Instrument]) -> None:
        for inst in instruments:
            self.instruments_by_name[inst.name] = inst
            self.instruments_by_id[inst.tradable_instrument_id] = inst

    async def instrument(self, symbol: str | None, instrument_id: int | None) -> Instrument:
        """The instrument by name or tradable id; an unknown one is asked of the venue once
        (it may have been listed after start-up) and then refused with a reason."""
        if instrument_id is not None:
            inst = self.instruments_by_id.get(instrument_id)
            if inst is not None:
                return inst
            await self._reload()
            inst = self.instruments_by_id.get(instrument_id)
            if inst is None:
                raise ValidationError(
                    f"instrument_id {instrument_id} is not tradable on account {self.alias}",
                    self.alias,
                )
            return inst
        assert symbol is not None  # the signal contract requires one of the two
        inst = self.instruments_by_name.get(symbol)
        if inst is not None:
            return inst
        await self._reload()
        inst = self.instruments_by_name.get(symbol)
        if inst is None:
            raise ValidationError(
                f"symbol {symbol!r} is not tradable on account {self.alias}: check the name "
                "(as the platform lists it, e.g. EURUSD) or send instrument_id",
                self.alias,
            )
        return inst

    async def _reload(self) -> None:
        try:
            self.load_instruments(await self.venue.instruments(self.alias))
        except Exception as exc:  # the refusal that follows says what is missing
            self.health.last_error = f"instrument reload failed: {type(exc).__name__}"

    @property
    def healthy(self) -> bool:
        self.refresh_health()
        return self.enabled and self.health.healthy

    def refresh_health(self) -> Health:
        """Read the breaker and the order bucket into :attr:`health` (cheap; no I/O)."""
        h = self.health
        if self.breaker is not None:
            # Refusing now: open and cooling down, or half-open with every probe slot taken.
            h.breaker_open = not self.breaker.accepting
        if self.gate is not None:
            h.rate_utilisation = self.gate.action_utilisation(Action.PLACE)
        return h

    def load(self) -> float:
        """Lower is better: work in flight, then how much rate budget is used."""
        return self.in_flight + self.refresh_health().rate_utilisation


class Leg(msgspec.Struct, frozen=True):
    """One account's share of a signal. ``key`` is the journal key: the signal id for a single
    account or a pool, ``id@alias`` for each member of a fan-out group. A frozen struct (built
    in C: no Python ``__init__`` frame per signal), compared and hashed by its fields."""

    session: AccountSession
    key: str
    qty_factor: float


class Accounts:
    """The configured accounts and groups."""

    def __init__(self, sessions: Iterable[AccountSession], groups: Iterable[GroupSettings]) -> None:
        self.sessions: dict[str, AccountSession] = {s.alias: s for s in sessions}
        self.groups: dict[str, GroupSettings] = {g.name: g for g in groups}
        self._round_robin = {g.name: itertools.count() for g in self.groups.values()}
        self.targets = frozenset(self.sessions) | frozenset(self.groups)

    def __getitem__(self, alias: str) -> AccountSession:
        return self.sessions[alias]

    def reconfigure(
        self, accounts: Iterable[AccountSettings], groups: Iterable[GroupSettings]
    ) -> None:
        """A reload (SIGHUP): new multipliers, enabled flags and groups for the same accounts.
        A leg already built keeps the qty it was given; the next signal sees the new values.
        The caller has checked that every alias is known and that no account is enabled now
        that was not running (its session was never opened)."""
        for settings in accounts:
            session = self.sessions[settings.alias]
            session.settings = settings
            session.multiplier = settings.multiplier
            session.enabled = settings.enabled
        self.groups = {g.name: g for g in groups}
        self._round_robin = {
            name: self._round_robin.get(name) or itertools.count() for name in self.groups
        }
        self.targets = frozenset(self.sessions) | frozenset(self.groups)

    async def start(self) -> None:
        for session in self.sessions.values():
            if session.enabled:
                await session.start()

    def legs(self, signal_id: str, target: str, pinned: str | None = None) -> list[Leg]:
        """The legs for a signal addressed to ``target``.

        ``pinned`` forces a pool group onto an account already chosen for this id (a re-delivered
        signal must land where the first delivery went).
        """
        session = self.sessions.get(target)
        if session is not None:
            if not session.enabled:
                raise SignalError(f"account {target!r} is disabled in the config", signal_id)
            return [Leg(session, signal_id, session.multiplier)]
        group = self.groups.get(target)
        if group is None:
            raise SignalError(f"{target!r} is neither an account alias nor a group", signal_id)
        if group.mode == "pool":
            chosen = self.sessions[pinned] if pinned in self.sessions else self._pick(group)
            return [Leg(chosen, signal_id, chosen.multiplier)]
        return self._fan_out(signal_id, group)

    def _fan_out(self, signal_id: str, group: GroupSettings) -> list[Leg]:
        members = [self.sessions[m] for m in group.members]
        if group.allocation == "equal":
            active = [s for s in members if s.enabled]
            share = 1.0 / len(active) if active else 0.0
            return [Leg(s, f"{signal_id}@{s.alias}", share * s.multiplier) for s in active]
        weights = group.weights or (1.0,) * len(members)
        return [
            Leg(s, f"{signal_id}@{s.alias}", w * s.multiplier)
            for s, w in zip(members, weights, strict=True)
            if s.enabled
        ]

    def _pick(self, group: GroupSettings) -> AccountSession:
        candidates = [self.sessions[m] for m in group.members]
        healthy = [s for s in candidates if s.healthy]
        if not healthy:
            raise SignalError(
                f"no healthy account in pool {group.name!r} "
                f"({', '.join(_why_unhealthy(s) for s in candidates)})"
            )
        if group.balancing == "round_robin":
            return healthy[next(self._round_robin[group.name]) % len(healthy)]
        return min(healthy, key=AccountSession.load)

    def health(self) -> dict[str, Health]:
        return {alias: s.refresh_health() for alias, s in self.sessions.items()}


def _why_unhealthy(s: AccountSession) -> str:
    if not s.enabled:
        return f"{s.alias}: disabled"
    if not s.health.auth_ok:
        return f"{s.alias}: not logged in"
    if s.health.breaker_open:
        return f"{s.alias}: circuit breaker open"
    return f"{s.alias}: ok"


def scale_qty(qty: float, factor: float, lot_step: float) -> float:
    """Scale a qty by an allocation factor and round DOWN to the lot step (never over-allocate).
    Returns 0.0 when the share is below one step: the leg is then refused, not rounded up."""
    if factor == 1.0:
        return qty
    steps = math.floor(qty * factor / lot_step + 1e-6)
    return round(steps * lot_step, 10)
