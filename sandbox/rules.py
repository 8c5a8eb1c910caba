"""Account rules: margin stop-out, prop-firm limits, and hedging or netting positions.

* **Stop-out**: when equity falls to ``stopOutLevel`` percent of the used margin, positions are
  liquidated, the biggest loser first, until the margin level is back above it.
* **Prop-firm limits** (per account, from the seed): ``dailyLossLimit`` (equity below the trading
  day's starting balance by more than this), ``maxDrawdown`` (equity below the starting balance,
  or with ``drawdownMode: trailing`` the highest equity seen, by more than this) and ``maxLots``
  (open and working lots). Limits are an amount in the account currency or ``"5%"`` of the
  account's starting balance. A loss or drawdown breach closes every position, cancels every
  working order and restricts the account: its status becomes RESTRICTED and every further
  order is refused. ``maxLots`` refuses the order that would exceed it.
* **marginHedgingType**: HEDGING (every fill opens its own position) or NETTING (one position per
  instrument; an opposite fill reduces, closes or reverses it).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from sandbox.errors import ConfigError
from sandbox.models import SimAccount

HEDGING, NETTING = "HEDGING", "NETTING"
RESTRICTED = "RESTRICTED"
DRAWDOWN_MODES = ("static", "trailing")
DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Limit:
    value: float
    percent: bool = False  # of the account's starting balance

    def amount(self, starting_balance: float) -> float:
        return starting_balance * self.value / 100 if self.percent else self.value

    def text(self) -> str:
        return f"{self.value:g}%" if self.percent else f"{self.value:.2f}"


@dataclass(slots=True)
class AccountRules:
    margin_hedging_type: str = HEDGING
    daily_loss: Limit | None = None
    max_drawdown: Limit | None = None
    drawdown_mode: str = "static"
    max_lots: float | None = None

    @property
    def limits_loss(self) -> bool:
        return self.daily_loss is not None or self.max_drawdown is not None


@dataclass(slots=True)
class AccountRuleSettings:
    stop_out: bool = False  # liquidate at stop_out_level (False: margin is only checked on entry)
    stop_out_level: float = 50.0  # percent: equity / used margin
    day_start_minute: int = 0  # UTC minute the trading day starts (the daily loss resets)
    default: AccountRules = field(default_factory=AccountRules)
    accounts: dict[str, AccountRules] = field(default_factory=dict)

    def of(self, account_id: str) -> AccountRules:
        return self.accounts.get(account_id, self.default)


def fast_account_rules() -> AccountRuleSettings:
    """Today's sandbox: hedging accounts, no stop-out, no limits."""
    return AccountRuleSettings()


def realistic_account_rules() -> AccountRuleSettings:
    return AccountRuleSettings(stop_out=True)


def _limit(where: str, value: Any) -> Limit:
    if isinstance(value, str) and value.endswith("%"):
        try:
            percent = float(value[:-1])
        except ValueError:
            percent = -1.0
        if not 0 < percent <= 100:
            raise ConfigError(f"{where} must be an amount or a percentage like '5%'")
        return Limit(percent, True)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{where} must be a positive amount or a percentage like '5%'")
    return Limit(float(value))


def _account_rules(where: str, raw: Any, base: AccountRules) -> AccountRules:
    known = {"marginHedgingType", "dailyLossLimit", "maxDrawdown", "drawdownMode", "maxLots"}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be an object with {', '.join(sorted(known))}")
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(known)}")
    rules = replace(base)
    if "marginHedgingType" in raw:
        if raw["marginHedgingType"] not in (HEDGING, NETTING):
            raise ConfigError(f"{where}.marginHedgingType must be HEDGING or NETTING")
        rules.margin_hedging_type = raw["marginHedgingType"]
    if "dailyLossLimit" in raw:
        rules.daily_loss = _limit(f"{where}.dailyLossLimit", raw["dailyLossLimit"])
    if "maxDrawdown" in raw:
        rules.max_drawdown = _limit(f"{where}.maxDrawdown", raw["maxDrawdown"])
    if "drawdownMode" in raw:
        if raw["drawdownMode"] not in DRAWDOWN_MODES:
            raise ConfigError(f"{where}.drawdownMode must be static or trailing")
        rules.drawdown_mode = raw["drawdownMode"]
    if "maxLots" in raw:
        lots = raw["maxLots"]
        if isinstance(lots, bool) or not isinstance(lots, int | float) or lots <= 0:
            raise ConfigError(f"{where}.maxLots must be a positive number of lots")
        rules.max_lots = float(lots)
    return rules


def parse_account_rules(raw: Any, base: AccountRuleSettings) -> AccountRuleSettings:
    """The seed's ``accountRules``: ``{preset?, stopOut?, stopOutLevel?, dayStartUtc?: "22:00",
    default?: {rules}, accounts?: {"700001": {rules}}}``; rules are marginHedgingType,
    dailyLossLimit, maxDrawdown, drawdownMode, maxLots."""
    if raw is None:
        return base
    if not isinstance(raw, dict):
        raise ConfigError("seed: 'accountRules' must be an object (see docs/sandbox.md)")
    known = {"preset", "stopOut", "stopOutLevel", "dayStartUtc", "default", "accounts"}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(
            f"seed: accountRules: unknown keys {sorted(unknown)}; known: {', '.join(sorted(known))}"
        )
    presets = {"fast": fast_account_rules, "realistic": realistic_account_rules}
    if "preset" in raw:
        if raw["preset"] not in presets:
            raise ConfigError("seed: accountRules.preset must be fast or realistic")
        base = presets[raw["preset"]]()
    settings = replace(base, accounts=dict(base.accounts))
    if "stopOut" in raw:
        if not isinstance(raw["stopOut"], bool):
            raise ConfigError("seed: accountRules.stopOut must be true or false")
        settings.stop_out = raw["stopOut"]
    if "stopOutLevel" in raw:
        level = raw["stopOutLevel"]
        if isinstance(level, bool) or not isinstance(level, int | float) or not 0 < level < 1000:
            raise ConfigError("seed: accountRules.stopOutLevel must be a percentage above 0")
        settings.stop_out_level = float(level)
    if "dayStartUtc" in raw:
        text = str(raw["dayStartUtc"])
        try:
            hours, minutes = (int(x) for x in text.split(":"))
            if not (0 <= hours < 24 and 0 <= minutes < 60):
                raise ValueError
        except ValueError:
            raise ConfigError("seed: accountRules.dayStartUtc must be a time HH:MM") from None
        settings.day_start_minute = hours * 60 + minutes
    if "default" in raw:
        settings.default = _account_rules(
            "seed: accountRules.default", raw["default"], settings.default
        )
    accounts = raw.get("accounts", {})
    if not isinstance(accounts, dict):
        raise ConfigError("seed: accountRules.accounts must be {accountId: {rules}}")
    for account_id, rules in accounts.items():
        settings.accounts[str(account_id)] = _account_rules(
            f"seed: accountRules.accounts.{account_id}", rules, settings.default
        )
    return settings


@dataclass(slots=True)
class _Watch:
    starting_balance: float
    seed_status: str
    day: int = -1
    day_start_balance: float = 0.0
    peak_equity: float = 0.0


class RuleKeeper:
    """The rules of every account and what they need to remember (trading day, peak equity)."""

    def __init__(self, settings: AccountRuleSettings, accounts: dict[str, SimAccount]) -> None:
        self.settings = settings
        self._watch: dict[str, _Watch] = {}
        for account in accounts.values():
            rules = settings.of(account.id)
            account.netting = rules.margin_hedging_type == NETTING
            self._watch[account.id] = _Watch(account.balance, account.status)
        # Only stop-out and loss limits need a look at every quote; fast skips them entirely.
        self.watching = settings.stop_out or any(settings.of(a).limits_loss for a in accounts)

    def rules(self, account: SimAccount) -> AccountRules:
        return self.settings.of(account.id)

    def new_day(self, account: SimAccount, now_ms: int) -> None:
        """At the first look of a trading day, its starting balance is the balance then."""
        watch = self._watch[account.id]
        day = (now_ms - self.settings.day_start_minute * 60_000) // DAY_MS
        if day != watch.day:
            watch.day, watch.day_start_balance = day, account.balance

    def breach(self, account: SimAccount, equity: float, now_ms: int) -> str | None:
        """Why the account breaches a loss limit now, or None."""
        rules = self.rules(account)
        if account.restriction is not None or not rules.limits_loss:
            return None
        watch = self._watch[account.id]
        self.new_day(account, now_ms)
        watch.peak_equity = max(watch.peak_equity, equity, watch.starting_balance)
        if rules.daily_loss is not None:
            floor = watch.day_start_balance - rules.daily_loss.amount(watch.starting_balance)
            if equity <= floor:
                return (
                    f"daily loss limit {rules.daily_loss.text()} breached: equity "
                    f"{equity:.2f} at or below {floor:.2f}"
                )
        if rules.max_drawdown is not None:
            top = watch.peak_equity if rules.drawdown_mode == "trailing" else watch.starting_balance
            floor = top - rules.max_drawdown.amount(watch.starting_balance)
            if equity <= floor:
                return (
                    f"maximum drawdown {rules.max_drawdown.text()} breached: equity "
                    f"{equity:.2f} at or below {floor:.2f}"
                )
        return None

    def stop_out_due(self, equity: float, margin: float) -> bool:
        return (
            self.settings.stop_out
            and margin > 0
            and equity / margin * 100 <= self.settings.stop_out_level
        )

    def refuse_lots(self, account: SimAccount, open_lots: float, qty: float) -> str | None:
        limit = self.rules(account).max_lots
        if limit is None or open_lots + qty <= limit + 1e-9:
            return None
        return (
            f"Order of {qty:g} lots refused: open and working lots would be "
            f"{open_lots + qty:g}, above the account's maximum of {limit:g} lots"
        )

    def restrict(self, account: SimAccount, reason: str) -> None:
        account.restriction = reason
        account.status = RESTRICTED

    def lift(self, account: SimAccount) -> None:
        account.restriction = None
        account.status = self._watch[account.id].seed_status
