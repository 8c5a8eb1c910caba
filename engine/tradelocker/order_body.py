"""The place-order request: the local checks that refuse what the venue would refuse (so nothing
ambiguous is sent), and the JSON body, built in ONE place by the compiled ``engine._fast``."""

from __future__ import annotations

from dataclasses import replace

from engine._fast import place_order_body
from engine.model.domain import OrderRequest, OrderType, ProtectionType, Validity
from engine.model.errors import ValidationError

# The venue's strategyId limit: the official client's _MAX_STRATEGY_ID_LEN is 32 and its own test
# sends 32 characters (docs/api-reference.md sections 7.5 and 15).
MAX_TAG_LENGTH = 32

# Validity.required_for per order type, looked up once here rather than per order.
_REQUIRED_VALIDITY = {t: Validity.required_for(t) for t in OrderType}


def encode_place_order(request: OrderRequest) -> bytes:
    """The place-order JSON body: the ONE place it is built, by ``engine._fast`` (compiled).

    The venue requires IOC for market orders and GTC for everything that rests, so the validity
    is forced to that whatever the request says.
    """
    required = _REQUIRED_VALIDITY[request.type]
    if request.validity is not required:
        request = replace(request, validity=required)
    return place_order_body(request)


def check_request(request: OrderRequest) -> None:
    """Refuse locally what the venue would refuse, so nothing ambiguous is sent."""
    account = request.account
    if request.type is OrderType.STOP_LIMIT:
        raise ValidationError(
            "TradeLocker has no stop-limit orders: the engine emulates them (stop trigger, then "
            "a limit order)",
            account,
        )
    if request.qty <= 0:
        raise ValidationError(f"qty must be positive, got {request.qty}", account)
    step = request.instrument.lot_step
    if step > 0 and abs(request.qty / step - round(request.qty / step)) > 1e-6:
        # The body writes qty with the step's decimals: off-grid would be silently rounded.
        raise ValidationError(
            f"qty {request.qty} is not a multiple of the lot step {step} of "
            f"{request.instrument.name}",
            account,
        )
    if request.type is OrderType.LIMIT and request.price is None:
        raise ValidationError("a limit order needs a price", account)
    if request.type is OrderType.STOP and request.stop_price is None:
        raise ValidationError("a stop order needs a stop_price (its trigger)", account)
    if request.take_profit_type is ProtectionType.TRAILING_OFFSET:
        raise ValidationError("take-profit cannot be trailing (absolute or offset only)", account)
    if request.stop_loss_type is ProtectionType.TRAILING_OFFSET and (
        request.trailing_offset is None
    ):
        raise ValidationError("a trailingOffset stop-loss needs trailing_offset", account)
    if len(request.strategy_tag) > MAX_TAG_LENGTH:
        raise ValidationError(
            f"strategy tag is {len(request.strategy_tag)} characters; the venue allows "
            f"{MAX_TAG_LENGTH}",
            account,
        )
