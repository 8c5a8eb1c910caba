"""Symbol mapping per account: one signal's ``EURUSD`` is ``EURUSD.pro`` on one firm's server
and ``EURUSD`` on another's. From the merged ``[rules.*]`` of each account (engine.execution.guards
.merged_rules): the explicit ``symbols`` table first, else ``symbol_prefix`` + symbol +
``symbol_suffix``. Checked at start-up against the instruments each account can trade."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from engine.execution.settings import RuleSettings
from engine.model.errors import ConfigError

__all__ = ["SymbolMap"]


class SymbolMap:
    """The name each account gives a signal's symbol. A plain dict hit after the first use."""

    def __init__(self, rules: Mapping[str, RuleSettings]) -> None:
        self._rules = {
            alias: r
            for alias, r in rules.items()
            if r.symbols or r.symbol_prefix or r.symbol_suffix
        }
        self._cache: dict[str, dict[str, str]] = {alias: {} for alias in self._rules}

    def __bool__(self) -> bool:
        return bool(self._rules)

    def map(self, alias: str, symbol: str) -> str:
        cache = self._cache.get(alias)
        if cache is None:
            return symbol
        mapped = cache.get(symbol)
        if mapped is None:
            r = self._rules[alias]
            mapped = dict(r.symbols or ()).get(symbol)
            if mapped is None:
                mapped = f"{r.symbol_prefix or ''}{symbol}{r.symbol_suffix or ''}"
            cache[symbol] = mapped
        return mapped

    def check(self, instruments: Mapping[str, Iterable[str]]) -> None:
        """Every explicit mapping, and every allowed instrument mapped, names an instrument the
        account has (``instruments``: alias -> its instrument names); a ConfigError otherwise."""
        for alias, r in self._rules.items():
            have = set(instruments.get(alias, ()))
            if not have:
                continue
            wanted = [(s, m) for s, m in (r.symbols or ())]
            wanted += [(s, self.map(alias, s)) for s in (r.instruments or ())]
            for symbol, mapped in wanted:
                if mapped not in have:
                    close = sorted(n for n in have if n.startswith(symbol[:3]))[:5]
                    raise ConfigError(
                        f"rules for {alias}: {symbol} maps to {mapped!r}, which account {alias} "
                        f"does not have (close: {', '.join(close) or 'none'}); fix symbols, "
                        "symbol_prefix or symbol_suffix"
                    )
