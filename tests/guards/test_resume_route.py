"""POST /guards/resume on the real control server: a halted account trades again before the
day's reset; a bad body is a one-line 400; without guards, 404."""

from __future__ import annotations

import asyncio
import threading

import aiohttp
import pytest

from engine.app import cli
from engine.execution.guards import GuardBook
from engine.execution.settings import GuardSettings, RuleSettings
from engine.io.bus import EventBus
from engine.io.control import ControlConfig, ControlServer
from engine.model.events import Event, GuardEvent, Topic
from engine.observability.metrics import Metrics

KEY = "ctl-key-guards-7d1e"
AUTH = {"Authorization": f"Bearer {KEY}"}


async def test_resume_a_halted_account_over_http() -> None:
    bus = EventBus()
    seen: list[Event] = []
    bus.subscribe(lambda topic, event: seen.append(event) if topic == Topic.GUARDS else None)
    book = GuardBook(GuardSettings(), {"a1": RuleSettings(daily_loss=1000.0)}, bus)
    await book.apply("a1", 100_000.0, 99_000.0, [], [])  # 100 % of the limit: halted
    assert book.accounts["a1"].state.halted
    server = ControlServer(Metrics(), ControlConfig(port=0, api_key=KEY))
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            url = f"{server.url}/guards/resume"
            async with http.post(url, headers=AUTH, json={"account": "a1"}) as r:
                assert r.status == 404  # not wired: this server runs no guards
            server.on_guard_resume = book.resume
            async with http.post(url, json={"account": "a1"}) as r:
                assert r.status == 401  # the control token is required
            async with http.post(url, headers=AUTH, data=b"a1") as r:
                assert r.status == 400
                assert "naming the account" in (await r.json())["error"]
            async with http.post(url, headers=AUTH, json={"account": "a1"}) as r:
                assert r.status == 200 and await r.json() == {"account": "a1", "resumed": True}
            async with http.post(url, headers=AUTH, json={"account": "a1"}) as r:
                assert await r.json() == {"account": "a1", "resumed": False}  # not halted now
    finally:
        await server.close()
    assert not book.accounts["a1"].state.halted
    kinds = [e.kind for e in seen if isinstance(e, GuardEvent)]
    assert kinds == ["halted", "resumed"]


def test_cli_resume_account(capsys: pytest.CaptureFixture[str]) -> None:
    """``tl-engine resume --account`` on the same server: resumes a halted account, says so when
    it was not halted, and a server without guards is one line naming why."""
    book = GuardBook(GuardSettings(), {"a1": RuleSettings(daily_loss=1000.0)}, EventBus())
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    server = ControlServer(Metrics(), ControlConfig(port=0, api_key=KEY))

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(book.apply("a1", 100_000.0, 99_000.0, [], []))
        loop.run_until_complete(server.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    args = ["resume", "--url", server.url, "--token", KEY, "--account", "a1"]
    try:
        assert cli.main(args) == 1  # no guards wired on this server yet
        assert "no prop-firm guards run here" in capsys.readouterr().err
        server.on_guard_resume = book.resume
        assert book.accounts["a1"].state.halted
        assert cli.main(args) == 0
        assert capsys.readouterr().out.strip() == "a1: resumed, trading again"
        assert not book.accounts["a1"].state.halted
        assert cli.main(args) == 0
        assert "was not halted" in capsys.readouterr().out
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
