"""docs/api-reference.md section 3: login, refresh rotation, accounts, stream tokens, header
checks."""

from __future__ import annotations

import base64
import datetime

import orjson
import pytest

from sandbox import Sandbox
from sandbox.tokens import TokenError
from tests.sim.client import ACCOUNT, EMAIL, PASSWORD, SERVER, Wire


def _claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    return orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


async def test_login_returns_201_with_signed_jwts_and_iso_expiry(wire: Wire) -> None:
    body = await wire.login()
    claims = _claims(body["accessToken"])
    assert claims["iss"] == "tradelocker-api" and claims["aud"] == "tradelocker-api-traders"
    assert claims["type"] == "access_token" and claims["brand"] == SERVER
    assert claims["sub"] == f"{SERVER}#{claims['uid']}"
    assert _claims(body["refreshToken"])["type"] == "refresh_token"
    expire = datetime.datetime.fromisoformat(body["expireDate"].replace("Z", "+00:00"))
    assert int(expire.timestamp()) == claims["exp"]


async def test_wrong_password_is_refused_with_400(wire: Wire) -> None:
    status, body = await wire.call(
        "POST",
        "/auth/jwt/token",
        auth=False,
        json={"email": EMAIL, "password": "nope", "server": SERVER},
    )
    assert status == 400 and "errmsg" in body
    assert "nope" not in str(body)


async def test_refresh_rotates_both_tokens_and_a_used_refresh_token_is_refused(wire: Wire) -> None:
    old_refresh, old_access = wire.refresh_token, wire.token
    status, body = await wire.call(
        "POST", "/auth/jwt/refresh", json={"refreshToken": old_refresh}, auth=False
    )
    assert status == 201
    assert body["refreshToken"] != old_refresh and body["accessToken"] != old_access
    again, _ = await wire.call(
        "POST", "/auth/jwt/refresh", json={"refreshToken": old_refresh}, auth=False
    )
    assert again == 400
    wire.token = body["accessToken"]
    status, _ = await wire.call("GET", "/trade/config")
    assert status == 200


async def test_revoked_refresh_tokens_are_refused(wire: Wire) -> None:
    wire.sb.state.auth.revoke_refresh_tokens()
    status, _ = await wire.call(
        "POST", "/auth/jwt/refresh", json={"refreshToken": wire.refresh_token}, auth=False
    )
    assert status == 400


async def test_all_accounts_lists_every_account_with_string_values(wire: Wire) -> None:
    status, body = await wire.call(
        "GET", "/auth/jwt/all-accounts", headers={"Authorization": f"Bearer {wire.token}"}
    )
    assert status == 200
    accounts = body["accounts"]
    assert [a["accNum"] for a in accounts] == ["1", "2"]
    assert all(isinstance(v, str) for a in accounts for v in a.values())
    assert accounts[0]["accountBalance"] == "100000.00" and accounts[0]["status"] == "ACTIVE"


async def test_missing_or_garbage_bearer_is_401(wire: Wire) -> None:
    status, _ = await wire.call("GET", "/trade/config", headers={"accNum": "1"})
    assert status == 401
    status, _ = await wire.call(
        "GET", "/trade/config", headers={"accNum": "1", "Authorization": "Bearer x.y.z"}
    )
    assert status == 401


async def test_forced_expiry_makes_issued_access_tokens_401(wire: Wire) -> None:
    wire.sb.state.auth.expire_access_tokens()
    status, body = await wire.call("GET", "/trade/config")
    assert status == 401 and "expired" in body["errmsg"]
    await wire.login()
    status, _ = await wire.call("GET", "/trade/config")
    assert status == 200


async def test_access_token_past_its_lifetime_is_401(sandbox: Sandbox) -> None:
    # Mint a token whose exp is already past, signed with the sandbox's own secret.
    from sandbox import tokens

    token, _ = tokens.mint(
        sandbox.config.jwt_secret.encode(),
        token_type="access_token",
        brand=SERVER,
        uid="100001",
        lifetime_s=60,
        now=1_000_000,
    )
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.get(
            sandbox.rest_url + "/trade/config",
            headers={"Authorization": f"Bearer {token}", "accNum": "1"},
        ) as r:
            assert r.status == 401


async def test_accnum_header_is_required_and_must_be_the_users(wire: Wire) -> None:
    bearer = {"Authorization": f"Bearer {wire.token}"}
    status, _ = await wire.call("GET", "/trade/config", headers=bearer)
    assert status == 401
    status, _ = await wire.call("GET", "/trade/config", headers={**bearer, "accNum": "9"})
    assert status == 403
    status, _ = await wire.call("GET", "/trade/accounts/700002/positions")
    assert status == 403  # accNum 1 selects 700001, not 700002


async def test_stream_tokens_are_per_account_and_refused_with_a_developer_key(
    wire: Wire,
) -> None:
    creds = {"email": EMAIL, "password": PASSWORD, "server": SERVER}
    status, _ = await wire.call(
        "POST",
        "/auth/jwt/accounts/tokens",
        json=creds,
        headers={"developer-api-key": "tl-sandbox-dev-key"},
    )
    assert status == 403
    status, body = await wire.call("POST", "/auth/jwt/accounts/tokens", json=creds, auth=False)
    assert status == 201
    by_account = {d["accountId"]: d for d in body["data"]}
    assert set(by_account) == {"700001", "700002"}
    token = by_account[ACCOUNT]["accessToken"]
    assert wire.sb.state.verify_stream_token(token) == (SERVER, ACCOUNT)
    with pytest.raises(TokenError) as info:
        wire.sb.state.verify_stream_token(wire.token)  # a REST token names no account
    assert info.value.reason == "invalid"
    wire.sb.state.auth.expire_access_tokens()
    with pytest.raises(TokenError) as info:
        wire.sb.state.verify_stream_token(token)
    assert info.value.reason == "expired"
