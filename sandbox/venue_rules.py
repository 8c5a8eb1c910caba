"""Part B of the venue's realism in one object: execution (``sandbox.liquidity``), market hours
(``sandbox.sessions``) and account rules (``sandbox.rules``), each with a ``fast`` preset (the
sandbox as it always was: unlimited liquidity, 24/7, hedging, no stop-out) and a ``realistic``
one. The seed's ``execution``, ``marketHours`` and ``accountRules`` objects change them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sandbox.liquidity import (
    ExecutionSettings,
    fast_execution,
    parse_execution,
    realistic_execution,
)
from sandbox.rules import (
    AccountRuleSettings,
    fast_account_rules,
    parse_account_rules,
    realistic_account_rules,
)
from sandbox.sessions import (
    MarketHours,
    fast_market_hours,
    parse_market_hours,
    realistic_market_hours,
)


@dataclass(slots=True)
class VenueRules:
    execution: ExecutionSettings = field(default_factory=fast_execution)
    hours: MarketHours = field(default_factory=fast_market_hours)
    accounts: AccountRuleSettings = field(default_factory=fast_account_rules)


def fast_venue_rules() -> VenueRules:
    return VenueRules(fast_execution(), fast_market_hours(), fast_account_rules())


def realistic_venue_rules() -> VenueRules:
    return VenueRules(realistic_execution(), realistic_market_hours(), realistic_account_rules())


def parse_venue_rules(raw: dict[str, Any], base: VenueRules) -> VenueRules:
    """The seed's ``execution``, ``marketHours`` and ``accountRules`` over ``base``."""
    return VenueRules(
        parse_execution(raw.get("execution"), base.execution),
        parse_market_hours(raw.get("marketHours"), base.hours),
        parse_account_rules(raw.get("accountRules"), base.accounts),
    )
