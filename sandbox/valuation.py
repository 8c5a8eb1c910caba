"""What positions and accounts are worth at the current quotes: unrealised P&L, margin, and the
26 numbers of ``/trade/accounts/{id}/state``."""

from __future__ import annotations

from sandbox.models import SimAccount, SimPosition
from sandbox.prices import PriceBook


def unrealized(prices: PriceBook, position: SimPosition) -> float:
    spec = prices.spec(position.tid)
    quote = prices.quote(position.tid)
    if position.side == "buy":
        return (quote.bid - position.avg_price) * position.qty * spec.lot_size
    return (position.avg_price - quote.ask) * position.qty * spec.lot_size


def margin(prices: PriceBook, position: SimPosition) -> float:
    spec = prices.spec(position.tid)
    return position.qty * spec.lot_size * position.avg_price / spec.leverage


def account_details(
    prices: PriceBook, account: SimAccount, stop_out_level: float = 50.0
) -> dict[str, float]:
    gross = sum(unrealized(prices, p) for p in account.positions.values())
    used = sum(margin(prices, p) for p in account.positions.values())
    projected = account.balance + gross
    available = projected - used
    return {
        "balance": account.balance,
        "projectedBalance": projected,
        "availableFunds": available,
        "blockedBalance": 0.0,
        "cashBalance": account.balance,
        "unsettledCash": 0.0,
        "withdrawalAvailable": max(0.0, min(account.balance, available)),
        "stocksValue": 0.0,
        "optionValue": 0.0,
        "initialMarginReq": used,
        "maintMarginReq": used / 2,
        "marginWarningLevel": 100.0,
        "blockedForStocks": 0.0,
        "stockOrdersReq": 0.0,
        "stopOutLevel": stop_out_level,
        "warningMarginReq": used,
        "marginBeforeWarning": projected - used,
        "todayGross": account.today_gross,
        "todayNet": account.today_gross,
        "todayFees": 0.0,
        "todayVolume": account.today_volume,
        "todayTradesCount": float(account.today_trades),
        "openGrossPnL": gross,
        "openNetPnL": gross,
        "positionsCount": float(len(account.positions)),
        "ordersCount": float(len(account.orders)),
    }


def equity_and_margin(prices: PriceBook, account: SimAccount) -> tuple[float, float]:
    """(equity, used margin): what the stop-out and the loss limits look at, without the rest."""
    equity = account.balance
    used = 0.0
    for position in account.positions.values():
        equity += unrealized(prices, position)
        used += margin(prices, position)
    return equity, used
