"""The faults that act on the market and on accounts rather than on a route (part of
``POST /sandbox/faults``; the per-route kinds partialFill, rejectAfterAccept and slippage live
beside the others in ``sandbox.faults``):

  marketStatus  {"EURUSD": "TRADING_HALT" | "CLOSED" | "FULLY_OPEN" | null, "*": ...}
                halt, close or open an instrument now (by name or id; "*" every instrument),
                whatever its session says; null gives it back to its calendar
  ruleBreach    {"700001": "dailyLoss" | "maxDrawdown" | "stopOut" | null}
                force a breach now: dailyLoss / maxDrawdown close every position and restrict
                the account, stopOut liquidates every position; null lifts a restriction

The order book listens: a change is acted on before ``POST /sandbox/faults`` answers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sandbox.errors import ConfigError

MARKET_FAULT_KEYS = ("marketStatus", "ruleBreach")
MARKET_STATUSES = ("FULLY_OPEN", "CLOSED", "TRADING_HALT")
BREACHES = ("dailyLoss", "maxDrawdown", "stopOut")

Staged = tuple[dict[str, str | None], dict[str, str | None]]


class MarketFaults:
    def __init__(self) -> None:
        self.status: dict[str, str] = {}  # instrument name, id or "*" -> forced status
        self.breaches: dict[str, str | None] = {}  # account id -> breach to force (None: lift)
        self._instruments: set[str] | None = None
        self._accounts: set[str] | None = None
        self._listeners: list[Callable[[], None]] = []

    def bind(self, instruments: set[str], accounts: set[str], listener: Callable[[], None]) -> None:
        """Known instrument refs (names and ids) and account ids, for validation; ``listener`` is
        called after every change. What the seed set before the binding is checked now."""
        self._instruments, self._accounts = instruments, accounts
        self._check(self.status, self.breaches)
        self._listeners.append(listener)

    def parse(self, spec: dict[str, Any]) -> Staged:
        """Validate the market keys of a fault spec; nothing changes until :meth:`apply`."""
        status = spec.get("marketStatus", {})
        breaches = spec.get("ruleBreach", {})
        if not isinstance(status, dict):
            raise ConfigError("marketStatus must be {instrument: FULLY_OPEN|CLOSED|TRADING_HALT}")
        if not isinstance(breaches, dict):
            raise ConfigError("ruleBreach must be {accountId: dailyLoss|maxDrawdown|stopOut}")
        for ref, value in status.items():
            if value is not None and value not in MARKET_STATUSES:
                raise ConfigError(
                    f"marketStatus.{ref} must be one of {', '.join(MARKET_STATUSES)} or null"
                )
        for account, value in breaches.items():
            if value is not None and value not in BREACHES:
                raise ConfigError(f"ruleBreach.{account} must be one of {', '.join(BREACHES)}")
        staged = ({str(k): v for k, v in status.items()}, {str(k): v for k, v in breaches.items()})
        self._check(*staged)
        return staged

    def _check(self, status: dict[str, Any], breaches: dict[str, Any]) -> None:
        if self._instruments is not None:
            unknown = set(status) - self._instruments - {"*"}
            if unknown:
                raise ConfigError(f"marketStatus: unknown instruments {sorted(unknown)}")
        if self._accounts is not None:
            unknown = set(breaches) - self._accounts
            if unknown:
                raise ConfigError(f"ruleBreach: unknown accounts {sorted(unknown)}")

    def apply(self, staged: Staged) -> None:
        status, breaches = staged
        if not status and not breaches:
            return
        for ref, value in status.items():
            if value is None:
                self.status.pop(ref, None)
            else:
                self.status[ref] = value
        self.breaches.update(breaches)
        self._changed()

    def clear(self) -> None:
        had = bool(self.status or self.breaches)
        self.status.clear()
        self.breaches.clear()
        if had:
            self._changed()

    def status_for(self, name: str, tid: int) -> str | None:
        if not self.status:
            return None
        return self.status.get(name) or self.status.get(str(tid)) or self.status.get("*")

    def take_breaches(self) -> dict[str, str | None]:
        """The breaches to force now (each is acted on once)."""
        taken, self.breaches = self.breaches, {}
        return taken

    def wire(self) -> dict[str, Any]:
        return {"marketStatus": dict(self.status), "ruleBreach": dict(self.breaches)}

    def _changed(self) -> None:
        for listener in list(self._listeners):
            listener()
