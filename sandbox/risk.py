"""The account rules acted on: stop-out liquidations, prop-firm breaches (close everything,
restrict the account) and the breaches a ``ruleBreach`` fault forces. What the rules are and
when they are breached is ``sandbox.rules``; how a position is liquidated is the order book's."""

from __future__ import annotations

from collections.abc import Callable

from sandbox import valuation
from sandbox.clock import VenueClock
from sandbox.ledger import Ledger
from sandbox.models import CLOSE, ENTRY, SimAccount, SimPosition
from sandbox.prices import PriceBook
from sandbox.rules import RuleKeeper

Liquidate = Callable[[SimAccount, SimPosition], None]


class RiskDesk:
    def __init__(
        self,
        rules: RuleKeeper,
        prices: PriceBook,
        ledger: Ledger,
        clock: VenueClock,
        liquidate: Liquidate,
    ) -> None:
        self.rules = rules
        self.prices = prices
        self.ledger = ledger
        self.clock = clock
        self.liquidate = liquidate

    def check(self, account: SimAccount) -> None:
        """Loss limits first (a breach closes everything), then the stop-out, biggest loser
        first, until the margin level is back above the stop-out level."""
        equity, used = valuation.equity_and_margin(self.prices, account)
        reason = self.rules.breach(account, equity, self.clock.now_ms())
        if reason is not None:
            self.restrict(account, reason)
            return
        while account.positions and self.rules.stop_out_due(equity, used):
            worst = min(
                account.positions.values(), key=lambda p: valuation.unrealized(self.prices, p)
            )
            self.liquidate(account, worst)
            equity, used = valuation.equity_and_margin(self.prices, account)

    def restrict(self, account: SimAccount, reason: str) -> None:
        """Refuse the account's orders from now on, cancel its working orders, close all."""
        self.rules.restrict(account, reason)
        for order in [o for o in account.orders.values() if o.role in (ENTRY, CLOSE)]:
            self.ledger.cancel(account, order)
        for position in list(account.positions.values()):
            self.liquidate(account, position)
        self.ledger.emit_status(account)

    def force(self, account: SimAccount, breach: str | None) -> None:
        """The ``ruleBreach`` fault: dailyLoss / maxDrawdown restrict, stopOut liquidates every
        position, None lifts a restriction."""
        if breach is None:
            self.rules.lift(account)
            self.ledger.emit_status(account)
        elif breach == "stopOut":
            for position in list(account.positions.values()):
                self.liquidate(account, position)
        else:
            name = "daily loss limit" if breach == "dailyLoss" else "maximum drawdown"
            self.restrict(account, f"{name} breached (forced by the ruleBreach fault)")
