"""A small raw HTTP client for sandbox tests: it speaks the wire format directly (no engine code),
so the tests check the sandbox against docs/api-reference.md and nothing else."""

from __future__ import annotations

from typing import Any

import aiohttp

from sandbox import Sandbox

EMAIL, PASSWORD, SERVER = "demo@sandbox.local", "demo-password", "SANDBOX"
ACCOUNT, ACC_NUM = "700001", "1"
EURUSD, GBPUSD, US30, BTCUSD = 278, 279, 301, 206
FX_ROUTE = 9001


class Wire:
    def __init__(self, sandbox: Sandbox, session: aiohttp.ClientSession) -> None:
        self.sb = sandbox
        self.http = session
        self.url = sandbox.rest_url
        self.token = ""
        self.refresh_token = ""
        self.acc_num = ACC_NUM

    async def login(self, email: str = EMAIL, password: str = PASSWORD) -> dict[str, Any]:
        status, body = await self.call(
            "POST",
            "/auth/jwt/token",
            json={"email": email, "password": password, "server": SERVER},
            auth=False,
        )
        assert status == 201, body
        self.token, self.refresh_token = body["accessToken"], body["refreshToken"]
        return body

    def headers(self, auth: bool = True) -> dict[str, str]:
        if not auth:
            return {}
        return {"Authorization": f"Bearer {self.token}", "accNum": self.acc_num}

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        auth: bool = True,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
    ) -> tuple[int, Any]:
        hdrs = self.headers(auth) if headers is None else headers
        async with self.http.request(
            method, self.url + path, json=json, params=params, headers=hdrs, data=data
        ) as resp:
            text = await resp.text()
            try:
                body: Any = await resp.json(content_type=None)
            except ValueError:
                body = text
            return resp.status, body

    async def place(self, **fields: Any) -> tuple[int, Any]:
        body = {
            "tradableInstrumentId": str(EURUSD),
            "routeId": str(FX_ROUTE),
            "qty": "0.10",
            "side": "buy",
            "type": "market",
            "validity": "IOC",
            "price": None,
            "stopPrice": None,
            "stopLoss": None,
            "stopLossType": None,
            "takeProfit": None,
            "takeProfitType": None,
            "strategyId": None,
        }
        body.update(fields)
        return await self.call("POST", f"/trade/accounts/{ACCOUNT}/orders", json=body)

    async def place_ok(self, **fields: Any) -> str:
        status, body = await self.place(**fields)
        assert status == 200 and body["s"] == "ok", body
        return str(body["d"]["orderId"])

    async def table(self, what: str, **params: Any) -> list[dict[str, Any]]:
        """Rows of orders/ordersHistory/positions/executions decoded by /trade/config columns."""
        config_key = {
            "orders": "ordersConfig",
            "ordersHistory": "ordersHistoryConfig",
            "positions": "positionsConfig",
            "executions": "filledOrdersConfig",
        }[what]
        _, config = await self.call("GET", "/trade/config")
        columns = [c["id"] for c in config["d"][config_key]["columns"]]
        status, body = await self.call(
            "GET", f"/trade/accounts/{ACCOUNT}/{what}", params=params or None
        )
        assert status == 200 and body["s"] == "ok", body
        return [dict(zip(columns, row, strict=True)) for row in body["d"][what]]

    async def state(self) -> dict[str, float]:
        _, config = await self.call("GET", "/trade/config")
        columns = [c["id"] for c in config["d"]["accountDetailsConfig"]["columns"]]
        status, body = await self.call("GET", f"/trade/accounts/{ACCOUNT}/state")
        assert status == 200, body
        return dict(zip(columns, body["d"]["accountDetailsData"], strict=True))
