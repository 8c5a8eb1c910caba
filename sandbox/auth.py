"""Users, logins and tokens: TradeLocker's ``/auth/jwt/*`` behaviour.

Refresh tokens are single-use (rotation): using one retires it, and a retired, expired or revoked
refresh token is refused. Access tokens can be forced to expire early, all of them (admin API) or
those of one user (the ``invalidateTokens`` fault), so a client's 401 handling can be tested
without waiting for an expiry.
"""

from __future__ import annotations

import datetime
import hmac
import time
from typing import Any

from sandbox import tokens
from sandbox.errors import BadRequest, Forbidden, Unauthorized
from sandbox.models import SimAccount
from sandbox.seed import SandboxConfig, UserSpec
from sandbox.tokens import TokenError

_CACHE_MAX = 10_000


def _iso(epoch_s: float) -> str:
    moment = datetime.datetime.fromtimestamp(epoch_s, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


class Auth:
    def __init__(self, config: SandboxConfig, accounts: dict[str, SimAccount]) -> None:
        self.config = config
        self._secret = config.jwt_secret.encode()
        self._accounts = accounts
        self._users = {u.uid: u for u in config.users}
        self._accounts_by_uid: dict[str, list[SimAccount]] = {}
        # (uid, accNum header) -> account: the lookup every /trade/* call makes.
        self._account_by_num: dict[tuple[str, str | None], SimAccount] = {}
        for account in accounts.values():
            self._accounts_by_uid.setdefault(account.uid, []).append(account)
            self._account_by_num[(account.uid, str(account.acc_num))] = account
        self._live_refresh: dict[str, str] = {}  # refresh jti -> uid, while unused
        self._issued_access: dict[str, set[str]] = {}  # uid -> jtis, to expire on demand
        self._expired_access: set[str] = set()
        self._verified: dict[str, dict[str, Any]] = {}  # access token -> claims

    # -- login and refresh ----------------------------------------------------------------------

    def _user(self, body: Any) -> UserSpec:
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object {email, password, server}")
        email, password, server = body.get("email"), body.get("password"), body.get("server")
        if not all(isinstance(v, str) and v for v in (email, password, server)):
            raise BadRequest("email, password and server are required strings")
        assert isinstance(email, str) and isinstance(password, str) and isinstance(server, str)
        user = self.config.user_by_email(email, server)
        if user is None or not hmac.compare_digest(user.password.encode(), password.encode()):
            raise BadRequest("Invalid credentials or server")
        return user

    def _issue(self, user: UserSpec) -> dict[str, str]:
        now = time.time()
        access, access_claims = tokens.mint(
            self._secret,
            token_type="access_token",
            brand=user.server,
            uid=user.uid,
            lifetime_s=self.config.access_token_lifetime_s,
            now=now,
        )
        refresh, refresh_claims = tokens.mint(
            self._secret,
            token_type="refresh_token",
            brand=user.server,
            uid=user.uid,
            lifetime_s=self.config.refresh_token_lifetime_s,
            now=now,
        )
        self._issued_access.setdefault(user.uid, set()).add(access_claims["jti"])
        self._live_refresh[refresh_claims["jti"]] = user.uid
        return {
            "accessToken": access,
            "refreshToken": refresh,
            "expireDate": _iso(access_claims["exp"]),
        }

    def login(self, body: Any) -> dict[str, str]:
        return self._issue(self._user(body))

    def refresh(self, body: Any) -> dict[str, str]:
        if not isinstance(body, dict) or not isinstance(body.get("refreshToken"), str):
            raise BadRequest('the body must be {"refreshToken": "..."}')
        try:
            claims = tokens.verify(body["refreshToken"], self._secret, token_type="refresh_token")
        except TokenError as exc:
            raise BadRequest(f"Invalid refresh token: {exc}") from None
        uid = self._live_refresh.pop(claims.get("jti", ""), None)
        if uid is None:
            raise BadRequest("Invalid refresh token: already used or revoked")
        user = self._users.get(uid)
        if user is None:
            raise BadRequest("Invalid refresh token: unknown user")
        return self._issue(user)

    def stream_tokens(self, body: Any) -> list[dict[str, str]]:
        user = self._user(body)
        result = []
        for account in self._accounts_by_uid.get(user.uid, []):
            token, claims = tokens.mint(
                self._secret,
                token_type="access_token",
                brand=user.server,
                uid=user.uid,
                lifetime_s=self.config.stream_token_lifetime_s,
                extra={"accountId": account.id, "accNum": account.acc_num},
            )
            self._issued_access.setdefault(user.uid, set()).add(claims["jti"])
            result.append(
                {
                    "accessToken": token,
                    "accountId": account.id,
                    "accNum": str(account.acc_num),
                    "brandId": user.server,
                    "expireDate": _iso(claims["exp"]),
                }
            )
        return result

    # -- checking tokens ------------------------------------------------------------------------

    def authenticate(self, authorization: str | None) -> dict[str, Any]:
        """Claims of a valid Bearer access token; Unauthorized (401) otherwise."""
        if not authorization or not authorization.startswith("Bearer "):
            raise Unauthorized("Authorization: Bearer <accessToken> header is required")
        token = authorization[7:].strip()
        claims = self._verified.get(token)
        if claims is None:
            try:
                claims = tokens.verify(token, self._secret, token_type="access_token")
            except TokenError as exc:
                raise Unauthorized(f"Invalid access token: {exc}") from None
            if len(self._verified) >= _CACHE_MAX:
                self._verified.clear()
            self._verified[token] = claims
        elif time.time() >= claims["exp"]:
            del self._verified[token]
            raise Unauthorized("Invalid access token: token has expired")
        if claims.get("jti") in self._expired_access:
            raise Unauthorized("Invalid access token: token has expired")
        if claims.get("uid") not in self._users:
            raise Unauthorized("Invalid access token: unknown user")
        return claims

    def accounts_of(self, uid: str) -> list[SimAccount]:
        return self._accounts_by_uid.get(uid, [])

    def account_for(self, claims: dict[str, Any], acc_num: str | None) -> SimAccount:
        """The account the ``accNum`` header selects among the token user's accounts."""
        account = self._account_by_num.get((claims["uid"], acc_num))
        if account is not None:
            return account
        if acc_num is None or not acc_num.strip():
            raise Unauthorized("accNum header is required on /trade/* calls")
        try:
            number = int(acc_num)
        except ValueError:
            raise Unauthorized(f"accNum header must be an integer, got {acc_num!r}") from None
        for account in self._accounts_by_uid.get(claims["uid"], []):
            if account.acc_num == number:
                return account
        raise Forbidden(f"accNum {number} is not an account of this user")

    def verify_stream_token(self, token: str) -> tuple[str, str]:
        """(brandId, accountId) of a valid per-account streams token; raises TokenError."""
        claims = tokens.verify(token, self._secret, token_type="access_token")
        account_id = claims.get("accountId")
        if not isinstance(account_id, str) or account_id not in self._accounts:
            raise TokenError("invalid", "token is not a per-account streams token")
        if claims.get("jti") in self._expired_access:
            raise TokenError("expired", "token has expired")
        return str(claims["brand"]), account_id

    # -- sandbox controls -----------------------------------------------------------------------

    def expire_access_tokens(self, uid: str | None = None) -> int:
        """Make every access token issued so far (to user ``uid``, or to anyone) expired: 401 from
        now on. Returns how many."""
        issued = (
            self._issued_access.get(uid, set())
            if uid is not None
            else set().union(*self._issued_access.values())
        )
        self._expired_access |= issued
        self._verified.clear()
        return len(issued)

    def expire_access_tokens_of_bearer(self, authorization: str | None) -> int:
        """Expire every access token of the user whose Bearer token this is (any age); 0 when it
        names no user."""
        if not authorization or not authorization.startswith("Bearer "):
            return 0
        try:
            claims = tokens.verify(
                authorization[7:].strip(), self._secret, token_type="access_token", now=0
            )
        except TokenError:
            return 0
        uid = claims.get("uid")
        return self.expire_access_tokens(uid) if isinstance(uid, str) else 0

    def revoke_refresh_tokens(self) -> int:
        count = len(self._live_refresh)
        self._live_refresh.clear()
        return count
