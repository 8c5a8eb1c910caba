"""``Sandbox``: start and stop the whole sandbox (REST, admin, Streams API, price timer) in-process.

async with Sandbox() as sb:          # profile realistic; Sandbox(profile="fast") is the kind one
                                     # or: sb = Sandbox(); await sb.start(); ...; await sb.stop()
    sb.base_url                      # "http://127.0.0.1:<port>" (host root, like TradeLocker's)
    sb.rest_url                      # base_url + "/backend-api"
    sb.state.set_price("EURUSD", bid=1.1, ask=1.1001)   # triggers working orders at once
    sb.faults.update({"dropAfterAccept": {"PLACE_ORDER": 1}})
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from sandbox.app import build_app
from sandbox.errors import ConfigError
from sandbox.faults import Faults
from sandbox.seed import SandboxConfig, load_seed
from sandbox.state import SandboxState

log = logging.getLogger(__name__)


class Sandbox:
    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        profile: str | None = None,
        seed_file: str | Path | None = None,
        faults: dict[str, Any] | None = None,
        price_interval_ms: float | None = None,
    ) -> None:
        """``config``, or ``seed_file`` read over ``profile`` (``realistic`` unless the seed names
        one; the default users when there is no seed file); ``faults`` merged over the seed's;
        ``price_interval_ms`` overrides the seed's timer (0 = prices move only when told)."""
        if config is None:
            config = load_seed(seed_file, profile)
        elif profile is not None and profile != config.profile:
            raise ConfigError(
                f"Sandbox(config, profile={profile!r}): the config was read over profile "
                f"{config.profile!r}; build it with load_seed(path, profile={profile!r})"
            )
        self.config = config
        if price_interval_ms is not None:
            self.config.price_interval_ms = price_interval_ms
        self.state = SandboxState(self.config)
        if faults:
            self.state.faults.update(faults)
        self.app = build_app(self.state)
        self.streams: Any = None
        with contextlib.suppress(ImportError):
            from sandbox import streams

            if hasattr(streams, "mount"):
                self.streams = streams.mount(self.app, self.state, self.state.faults)
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None
        self.host = ""
        self.port = 0

    @property
    def faults(self) -> Faults:
        return self.state.faults

    @property
    def base_url(self) -> str:
        if self._runner is None:
            raise RuntimeError("the sandbox is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def rest_url(self) -> str:
        return self.base_url + "/backend-api"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self.host = host
        self.port = sockets[0].getsockname()[1] if sockets else port
        if self.config.price_interval_ms > 0:
            self._ticker = asyncio.create_task(self._tick(), name="sandbox-prices")

    async def _tick(self) -> None:
        interval = self.config.price_interval_ms / 1000.0
        while True:
            await asyncio.sleep(interval)
            try:
                self.state.step_prices()
            except Exception:  # a bad step must not stop the market
                log.exception("price step failed")

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
