"""How a venue reply becomes a payload or a typed error (engine.tradelocker.errors.decode_reply).

These call the pure classification function with the exact bytes a venue sends; the end-to-end
behaviour over HTTP is covered against the sandbox in test_outcomes.py.
"""

from __future__ import annotations

import pytest

from engine.model.errors import (
    AuthFailed,
    NotFound,
    OrderRejected,
    OutcomeUnknown,
    RateLimited,
    VenueUnavailable,
)
from engine.tradelocker.errors import decode_reply

ROUTE = "POST /trade/accounts/1/orders"


def _decode(status: int, body: bytes, idempotent: bool, headers: dict[str, str] | None = None):
    return decode_reply(
        status, body, headers or {}, idempotent=idempotent, account="ftmo1", route=ROUTE
    )


def test_ok_envelope_returns_the_payload() -> None:
    assert _decode(200, b'{"s":"ok","d":{"orderId":"42"}}', False) == {"orderId": "42"}


def test_no_data_is_an_empty_answer_not_an_error() -> None:
    assert _decode(200, b'{"s":"no_data"}', True) is None


def test_business_rejection_carries_the_venue_errmsg_and_account() -> None:
    with pytest.raises(OrderRejected) as caught:
        _decode(200, b'{"s":"error","errmsg":"Invalid lot step"}', False)
    assert caught.value.errmsg == "Invalid lot step"
    assert caught.value.account == "ftmo1"


@pytest.mark.parametrize("body", [b"", b"<html>Too Many Requests</html>", b'{"s":"error"}'])
def test_429_is_rate_limited_whatever_the_body(body: bytes) -> None:
    with pytest.raises(RateLimited) as caught:
        _decode(429, body, False, {"Retry-After": "2"})
    assert caught.value.retry_after == 2.0


def test_429_without_retry_after_has_none() -> None:
    with pytest.raises(RateLimited) as caught:
        _decode(429, b"", True, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert caught.value.retry_after is None


def test_5xx_is_unavailable_for_queries_and_unknown_for_order_entry() -> None:
    with pytest.raises(VenueUnavailable):
        _decode(503, b"upstream down", True)
    with pytest.raises(OutcomeUnknown):
        _decode(503, b"upstream down", False)


def test_unreadable_2xx_on_order_entry_is_unknown_not_rejected() -> None:
    with pytest.raises(OutcomeUnknown):
        _decode(200, b'{"s":"ok","d":{"ord', False)


def test_401_404_and_other_4xx_are_typed() -> None:
    with pytest.raises(AuthFailed):
        _decode(401, b"", True)
    with pytest.raises(NotFound):
        _decode(404, b"", False)
    with pytest.raises(OrderRejected) as caught:
        _decode(403, b'{"s":"error","errmsg":"Forbidden account"}', False)
    assert caught.value.status == 403
