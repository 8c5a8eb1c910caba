"""POST /signals and the journal's intake: 202 only when an http source takes the signals and
their bytes are committed; refused while draining; what is accepted and unfinished comes back at
the next open. The control server runs for real on 127.0.0.1 over a real journal."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from engine.io.control import ControlConfig, ControlServer
from engine.io.sources.http import HttpIntake, HttpSignalSource
from engine.model.delivery import Delivery
from engine.observability.metrics import Metrics
from engine.state.journal import Journal

API_KEY = "ctl-key-3f9a1c0d5b7e"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def server() -> AsyncIterator[ControlServer]:
    srv = ControlServer(Metrics(), ControlConfig(port=0, api_key=API_KEY))
    await srv.start()
    yield srv
    await srv.close()


def _intake_rows(path: Path) -> list[tuple[str, bytes]]:
    """The intake table as another process would read it (a second connection)."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT signal_id, payload FROM intake ORDER BY seq").fetchall()
    finally:
        conn.close()
    return [(str(sid), bytes(payload)) for sid, payload in rows]


async def test_without_an_http_source_post_signals_is_503_and_says_how_to_add_one(
    server: ControlServer, http: aiohttp.ClientSession
) -> None:
    async with http.post(f"{server.url}/signals", data=b'{"id":"n1"}', headers=AUTH) as r:
        assert r.status == 503
        reason = (await r.json())["error"]
    assert reason.startswith("no http source is configured")
    assert '[[sources]] kind = "http"' in reason
    assert server.signals.qsize() == 0


async def test_a_202_means_every_signal_is_committed_in_the_journal_intake(
    server: ControlServer, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    journal = Journal(tmp_path / "journal.sqlite")
    try:
        server.open_intake(HttpIntake(journal.intake))
        body = b'{"id":"d1","x":1}\n{"id":"d2"}\n{"no_id":true}'
        async with http.post(f"{server.url}/signals", data=body, headers=AUTH) as r:
            assert r.status == 202
        # Read at once by another connection: committed before the answer, not after.
        assert _intake_rows(journal.path) == [
            ("d1", b'{"id":"d1","x":1}'),
            ("d2", b'{"id":"d2"}'),
            ("", b'{"no_id":true}'),
        ]
        queued = [server.signals.get_nowait() for _ in range(3)]
        assert [d.payload for d in queued] == [row[1] for row in _intake_rows(journal.path)]
        assert {d.origin for d in queued} == {"http"}
    finally:
        await journal.close()


async def test_a_journal_that_cannot_write_gets_503_and_nothing_is_queued(
    server: ControlServer, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    journal = Journal(tmp_path / "journal.sqlite")
    server.open_intake(HttpIntake(journal.intake))
    await journal.close()  # its writer refuses every write from now on
    async with http.post(f"{server.url}/signals", data=b'{"id":"j1"}', headers=AUTH) as r:
        assert r.status == 503
        body = await r.json()
    assert "journal could not record" in body["error"] and body["queued"] == 0
    assert server.signals.qsize() == 0


async def test_draining_refuses_signals_and_reports_not_ready_at_once(
    server: ControlServer, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    journal = Journal(tmp_path / "journal.sqlite")
    try:
        server.open_intake(HttpIntake(journal.intake))
        for comp in ("auth", "stream", "breaker", "limiter"):
            server.metrics.health.set("acct-1", comp, "ok", True)
        async with http.get(f"{server.url}/health") as r:
            assert r.status == 200
        server.begin_drain()
        async with http.post(f"{server.url}/signals", data=b'{"id":"late"}', headers=AUTH) as r:
            assert r.status == 503
            assert "draining" in (await r.json())["error"]
        async with http.get(f"{server.url}/health") as r:
            assert r.status == 503
            health = await r.json()
        assert health["draining"] is True and "shutting down" in health["reason"]
        await server.intake_settled()  # nothing was being taken: returns
        assert server.signals.qsize() == 0 and _intake_rows(journal.path) == []
    finally:
        await journal.close()


async def test_an_unfinished_signal_comes_back_at_the_next_open_and_a_finished_one_does_not(
    server: ControlServer, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    path = tmp_path / "journal.sqlite"
    journal = Journal(path)
    intake = HttpIntake(journal.intake)
    server.open_intake(intake)
    async with http.post(
        f"{server.url}/signals", data=b'{"id":"done"}\n{"id":"open"}', headers=AUTH
    ) as r:
        assert r.status == 202
    finished = server.signals.get_nowait()
    await finished.ack()  # its outcome is recorded: the row goes
    assert intake.finished == 1 and len(intake.outstanding) == 1
    await journal.close()

    reopened = Journal(path)
    try:
        assert [orjson.loads(row.payload)["id"] for row in reopened.intake.backlog] == ["open"]
        again = HttpIntake(reopened.intake)
        source = HttpSignalSource(None, again.backlog())
        got = [d async for d in source.deliveries()]
        assert [d.payload for d in got] == [b'{"id":"open"}'] and got[0].origin == "http:intake"
        assert reopened.intake.backlog == []  # taken once
        await got[0].ack()
        assert again.outstanding == set()
    finally:
        await reopened.close()
    third = Journal(path)
    try:
        assert third.intake.backlog == []
    finally:
        await third.close()


async def test_the_source_hands_over_the_backlog_then_the_queue_and_remaining_takes_the_rest(
    tmp_path: Path,
) -> None:
    queue: asyncio.Queue[Delivery] = asyncio.Queue()
    backlog = [Delivery(b'{"id":"b1"}', 0), Delivery(b'{"id":"b2"}', 0)]
    source = HttpSignalSource(queue, backlog)
    queue.put_nowait(Delivery(b'{"id":"q1"}', 0))
    stream = source.deliveries()
    assert [(await anext(stream)).payload for _ in range(3)] == [
        b'{"id":"b1"}',
        b'{"id":"b2"}',
        b'{"id":"q1"}',
    ]
    queue.put_nowait(Delivery(b'{"id":"q2"}', 0))
    assert [d.payload for d in source.remaining()] == [b'{"id":"q2"}']
    await source.close()
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
