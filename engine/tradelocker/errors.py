"""Turn a TradeLocker HTTP reply into a payload or a typed :mod:`engine.model.errors` exception.

Classification is by HTTP status, the ``s`` field of the ``{s, d}`` envelope and whether the call
was idempotent; never by matching exception or ``errmsg`` text (that text is for people).

===========================  ==============================  ===================================
reply                        idempotent call (GET)           order entry (POST / PATCH / DELETE)
===========================  ==============================  ===================================
2xx, ``s == "ok"``           payload ``d``                   payload ``d``
2xx, ``s == "no_data"``      ``None``                        ``None``
2xx, other ``s``             :class:`OrderRejected`          :class:`OrderRejected` (definitive)
2xx, body not JSON           :class:`VenueUnavailable`       :class:`OutcomeUnknown`
401                          :class:`AuthFailed`             :class:`AuthFailed` (not processed)
404                          :class:`NotFound`               :class:`NotFound` (definitive)
429                          :class:`RateLimited`            :class:`RateLimited`
other 4xx                    :class:`OrderRejected`          :class:`OrderRejected` (definitive)
5xx                          :class:`VenueUnavailable`       :class:`OutcomeUnknown`
===========================  ==============================  ===================================

The exception text names the account alias, the route and the status; it never repeats a request
header or body, so no token or password can reach a log through it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from engine.model.errors import (
    AuthFailed,
    NotFound,
    OrderRejected,
    OutcomeUnknown,
    RateLimited,
    VenueUnavailable,
)

# The longest venue text kept in an error: enough to act on, bounded so an HTML error page does not
# flood a log line.
_MAX_ERRMSG = 300


def _parse_json(body: bytes) -> Any:
    if not body:
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def venue_text(parsed: Any, body: bytes) -> str | None:
    """The venue's own explanation, from ``errmsg`` (or ``message``), else a short raw excerpt."""
    if isinstance(parsed, dict):
        for key in ("errmsg", "message", "error"):
            value = parsed.get(key)
            if isinstance(value, str) and value:
                return value[:_MAX_ERRMSG]
    if body:
        text = body[:_MAX_ERRMSG].decode("utf-8", "replace").strip()
        return text or None
    return None


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` as seconds; the HTTP-date form and garbage are ignored (None)."""
    raw = headers.get("Retry-After") or headers.get("retry-after")
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    return value if value >= 0 else None


def refused_after_refresh(route: str, login: str, account: str | None) -> AuthFailed:
    """The final word on a call the venue answered 401 again with a token just renewed."""
    return AuthFailed(
        f"{route}: HTTP 401 again after renewing login {login!r}'s token; the venue does not "
        "accept this login here: check its credentials, its server name and that the account "
        "belongs to it",
        account=account,
        route=route,
    )


def decode_reply(
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    *,
    idempotent: bool,
    account: str | None,
    route: str,
) -> Any:
    """Return the envelope payload ``d`` (``None`` for ``no_data`` / empty) or raise.

    ``route`` is a short description such as ``"POST /trade/accounts/{id}/orders"`` (ids are fine,
    secrets never are).
    """
    if 200 <= status < 300:
        if status == 204 or not body:
            return None
        parsed = _parse_json(body)
        if not isinstance(parsed, dict):
            message = f"{route}: HTTP {status} with a body that is not a JSON object"
            if idempotent:
                raise VenueUnavailable(message, account=account, route=route)
            raise OutcomeUnknown(message, account=account, route=route)
        s = parsed.get("s")
        if s is None or s == "ok":
            # /auth/* answers carry no envelope: the object itself is the payload.
            return parsed.get("d") if "s" in parsed else parsed
        if s == "no_data":
            return None
        errmsg = venue_text(parsed, b"")
        raise OrderRejected(
            f"{route}: the venue refused the request: {errmsg or s}",
            errmsg,
            account=account,
            route=route,
            status=status,
        )
    parsed = _parse_json(body)
    errmsg = venue_text(parsed, body)
    if status == 401:
        raise AuthFailed(
            f"{route}: HTTP 401, the access token was not accepted", account=account, route=route
        )
    if status == 404:
        raise NotFound(
            f"{route}: HTTP 404, the venue does not know this id or route"
            + (f" ({errmsg})" if errmsg else ""),
            account=account,
            route=route,
        )
    if status == 429:
        retry_after = retry_after_seconds(headers)
        hint = f"; retry after {retry_after:g} s" if retry_after is not None else ""
        raise RateLimited(
            f"{route}: HTTP 429, rate limited by the venue{hint}",
            account=account,
            route=route,
            retry_after=retry_after,
        )
    if 400 <= status < 500:
        raise OrderRejected(
            f"{route}: HTTP {status}, the venue refused the request"
            + (f": {errmsg}" if errmsg else ""),
            errmsg,
            account=account,
            route=route,
            status=status,
        )
    message = f"{route}: HTTP {status} from the venue" + (f" ({errmsg})" if errmsg else "")
    if idempotent:
        raise VenueUnavailable(message, account=account, route=route)
    raise OutcomeUnknown(
        message + "; the request may or may not have taken effect: reconcile before resending",
        account=account,
        route=route,
        status=status,
    )
