"""HS256 JSON Web Tokens for the sandbox, shaped like the ones TradeLocker issues.

Hand-rolled (hmac + base64url + orjson) so the sandbox has no JWT dependency; clients decode them
with any JWT library, as the official client does with PyJWT (without checking the signature).
Every token carries a random ``jti`` so two tokens minted in the same second still differ, which
refresh-token rotation needs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from typing import Any

import orjson

ISSUER = "tradelocker-api"
AUDIENCE = "tradelocker-api-traders"

_HEADER = base64.urlsafe_b64encode(orjson.dumps({"alg": "HS256", "typ": "JWT"})).rstrip(b"=")


class TokenError(Exception):
    """A token was refused. ``reason`` is ``invalid``, ``expired`` or ``revoked``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(claims: dict[str, Any], secret: bytes) -> str:
    payload = _b64(orjson.dumps(claims))
    signing_input = _HEADER + b"." + payload
    signature = _b64(hmac.new(secret, signing_input, hashlib.sha256).digest())
    return (signing_input + b"." + signature).decode("ascii")


def mint(
    secret: bytes,
    *,
    token_type: str,
    brand: str,
    uid: str,
    lifetime_s: float,
    extra: dict[str, Any] | None = None,
    now: float | None = None,
) -> tuple[str, dict[str, Any]]:
    """Sign a token of ``token_type`` (access_token, refresh_token); return it and its claims."""
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "type": token_type,
        "sub": f"{brand}#{uid}",
        "uid": uid,
        "brand": brand,
        "iat": issued,
        "exp": issued + max(1, round(lifetime_s)),
        "jti": secrets.token_hex(8),
    }
    if extra:
        claims.update(extra)
    return sign(claims, secret), claims


def verify(
    token: str, secret: bytes, *, token_type: str, now: float | None = None
) -> dict[str, Any]:
    """Check signature, issuer, audience, type and expiry; return the claims or raise TokenError."""
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("invalid", "token is not a JWT")
    header_b64, payload_b64, signature_b64 = parts
    expected = _b64(
        hmac.new(secret, f"{header_b64}.{payload_b64}".encode("ascii"), hashlib.sha256).digest()
    )
    if not hmac.compare_digest(expected, signature_b64.encode("ascii")):
        raise TokenError("invalid", "token signature does not verify")
    try:
        claims = orjson.loads(_unb64(payload_b64))
    except (ValueError, orjson.JSONDecodeError):
        raise TokenError("invalid", "token payload is not JSON") from None
    if not isinstance(claims, dict):
        raise TokenError("invalid", "token payload is not an object")
    if claims.get("iss") != ISSUER or claims.get("aud") != AUDIENCE:
        raise TokenError("invalid", "token was not issued for this API")
    if claims.get("type") != token_type:
        raise TokenError("invalid", f"expected a {token_type}, got {claims.get('type')!r}")
    exp = claims.get("exp")
    if not isinstance(exp, int | float):
        raise TokenError("invalid", "token has no expiry")
    if (now if now is not None else time.time()) >= exp:
        raise TokenError("expired", "token has expired")
    return claims
