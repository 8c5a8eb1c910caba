"""How an account holds positions comes from the instrument details (``margin_hedging_type``,
TradeLocker's §6.6 field; the sandbox sends it per account): NETTING makes a reverse one order."""

from __future__ import annotations

from engine.model.domain import Instrument
from engine.tradelocker.instruments import merge_details

LISTED = Instrument(1, 2, "EURUSD", 3, (4,))


def test_netting_is_read_from_the_details() -> None:
    assert merge_details(LISTED, {"margin_hedging_type": "NETTING"}).netting is True
    assert merge_details(LISTED, {"margin_hedging_type": "HEDGING"}).netting is False


def test_details_without_the_field_mean_hedging() -> None:
    # The engine's default: two calls, the opening order only once the close is confirmed.
    assert merge_details(LISTED, {"lotSize": 100000}).netting is False
