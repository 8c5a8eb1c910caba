"""The control server, run for real on 127.0.0.1 and called over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from engine.io.control import ControlConfig, ControlServer, KillSwitch, split_signals
from engine.io.sources.http import HttpIntake
from engine.observability.metrics import Metrics
from engine.state.journal import Journal
from tests.metrics.promtext import parse

API_KEY = "ctl-key-3f9a1c0d5b7e"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


class CancelRecorder:
    """A real kill handler stand-in: records the call and reports what it 'cancelled'. The
    cancel-all itself belongs to the execution engine and is tested there against the sandbox."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[bool, bool]] = []
        self.fail = fail

    async def __call__(self, cancel_orders: bool, flatten: bool) -> Mapping[str, Any]:
        self.calls.append((cancel_orders, flatten))
        if self.fail:
            raise RuntimeError("venue unreachable for acct-1")
        return {"acct-1": 2}


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    j = Journal(tmp_path / "journal.sqlite")
    yield j
    await j.close()


@pytest.fixture
async def server(metrics: Metrics, journal: Journal) -> AsyncIterator[ControlServer]:
    srv = ControlServer(
        metrics,
        ControlConfig(port=0, api_key=API_KEY, queue_size=5),
        on_kill=CancelRecorder(),
    )
    srv.open_intake(HttpIntake(journal.intake))  # what an http source does
    await srv.start()
    yield srv
    await srv.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def _healthy(metrics: Metrics, account: str) -> None:
    for comp in ("auth", "stream", "breaker", "limiter"):
        metrics.health.set(account, comp, "ok", True)


async def test_server_binds_loopback_on_a_free_port(server: ControlServer) -> None:
    assert server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}"


async def test_health_is_503_until_accounts_report_then_200(
    server: ControlServer, metrics: Metrics, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{server.url}/health") as r:
        assert r.status == 503
        assert "no account" in (await r.json())["reason"]
    _healthy(metrics, "acct-1")
    async with http.get(f"{server.url}/health", headers=AUTH) as r:
        assert r.status == 200
        body = await r.json()
    assert body["accounts"]["acct-1"]["components"]["breaker"] == {
        "state": "ok",
        "healthy": True,
        "detail": "",
    }


async def test_health_is_503_and_names_the_broken_component(
    server: ControlServer, metrics: Metrics, http: aiohttp.ClientSession
) -> None:
    _healthy(metrics, "acct-1")
    _healthy(metrics, "acct-2")
    metrics.health.set("acct-2", "stream", "reconnecting", False, "socket closed; retry in 2 s")
    async with http.get(f"{server.url}/health") as r:  # a probe: the status, no names
        assert r.status == 503
        brief = await r.json()
    assert brief["reason"] == "1 account(s) not healthy" and "acct-2" not in str(brief)
    async with http.get(f"{server.url}/health", headers=AUTH) as r:
        assert r.status == 503
        body = await r.json()
    assert body["accounts"]["acct-1"]["healthy"] is True
    assert body["accounts"]["acct-2"]["healthy"] is False
    assert body["accounts"]["acct-2"]["components"]["stream"]["state"] == "reconnecting"


async def test_post_signals_without_or_with_a_wrong_key_is_401_and_queues_nothing(
    server: ControlServer, http: aiohttp.ClientSession
) -> None:
    sig = b'{"id":"s1","account":"acct-1","action":"place"}'
    async with http.post(f"{server.url}/signals", data=sig) as r:
        assert r.status == 401
        assert "Bearer" in r.headers["WWW-Authenticate"]
    bad = {"Authorization": "Bearer not-the-key"}
    async with http.post(f"{server.url}/signals", data=sig, headers=bad) as r:
        assert r.status == 401
        text = await r.text()
    assert API_KEY not in text and "not-the-key" not in text
    async with http.post(f"{server.url}/signals", data=sig, headers={"Authorization": API_KEY}):
        pass  # a key without the Bearer scheme is refused too
    assert server.signals.qsize() == 0


async def test_post_one_signal_queues_a_delivery_with_its_bytes(
    server: ControlServer, http: aiohttp.ClientSession
) -> None:
    sig = b'{"id":"s1","account":"acct-1","action":"place","symbol":"EURUSD"}'
    async with http.post(f"{server.url}/signals", data=sig, headers=AUTH) as r:
        assert r.status == 202
        assert await r.json() == {"queued": 1}
    d = server.signals.get_nowait()
    assert d.payload == sig
    assert d.origin == "http"
    assert d.arrived_ns > 0


async def test_post_json_lines_queues_each_signal_in_order(
    server: ControlServer, http: aiohttp.ClientSession
) -> None:
    body = b'{"id":"a"}\n\n{"id":"b"}\r\n{"id":"c"}\n'
    async with http.post(f"{server.url}/signals", data=body, headers=AUTH) as r:
        assert r.status == 202
    ids = [orjson.loads(server.signals.get_nowait().payload)["id"] for _ in range(3)]
    assert ids == ["a", "b", "c"]


async def test_a_bad_line_rejects_the_batch_and_names_the_line(
    server: ControlServer, http: aiohttp.ClientSession
) -> None:
    body = b'{"id":"a"}\n{"id": broken\n{"id":"c"}'
    async with http.post(f"{server.url}/signals", data=body, headers=AUTH) as r:
        assert r.status == 400
        err = await r.json()
    assert err["line"] == 2
    assert "line 2" in err["error"]
    assert server.signals.qsize() == 0
    # The server carries on: the next good request is accepted.
    async with http.post(f"{server.url}/signals", data=b'{"id":"d"}', headers=AUTH) as r:
        assert r.status == 202


async def test_a_full_queue_is_refused_whole_with_503(
    server: ControlServer, http: aiohttp.ClientSession
) -> None:
    body = b"\n".join(b'{"id":"%d"}' % i for i in range(4))
    async with http.post(f"{server.url}/signals", data=body, headers=AUTH) as r:
        assert r.status == 202
    async with http.post(f"{server.url}/signals", data=body, headers=AUTH) as r:
        assert r.status == 503
        assert "queue full" in (await r.json())["error"]
    assert server.signals.qsize() == 4


async def test_kill_requires_the_key_then_stops_intake_and_cancels_orders(
    server: ControlServer, http: aiohttp.ClientSession, metrics: Metrics
) -> None:
    _healthy(metrics, "acct-1")
    async with http.post(f"{server.url}/kill", json={"cancel_orders": True}) as r:
        assert r.status == 401
    assert not server.kill_switch.engaged
    async with http.post(
        f"{server.url}/kill", json={"cancel_orders": True, "reason": "drawdown"}, headers=AUTH
    ) as r:
        assert r.status == 200
        body = await r.json()
    assert body["killed"] is True and body["cancelled"] == {"acct-1": 2}
    assert isinstance(server.on_kill, CancelRecorder)
    assert server.on_kill.calls == [(True, False)]
    async with http.post(f"{server.url}/signals", data=b'{"id":"x"}', headers=AUTH) as r:
        assert r.status == 503
        assert "drawdown" in (await r.json())["error"]
    async with http.get(f"{server.url}/health") as r:
        assert r.status == 503
    async with http.post(f"{server.url}/resume", headers=AUTH) as r:
        assert r.status == 200
    async with http.post(f"{server.url}/signals", data=b'{"id":"x"}', headers=AUTH) as r:
        assert r.status == 202


async def test_kill_with_a_failing_handler_stays_engaged_and_says_why(
    metrics: Metrics, http: aiohttp.ClientSession
) -> None:
    srv = ControlServer(metrics, ControlConfig(api_key=API_KEY), on_kill=CancelRecorder(fail=True))
    await srv.start()
    try:
        async with http.post(f"{srv.url}/kill", json={"cancel_orders": True}, headers=AUTH) as r:
            assert r.status == 500
            assert "venue unreachable" in (await r.json())["error"]
        assert srv.kill_switch.engaged
    finally:
        await srv.close()


async def test_kill_rejects_a_non_boolean_cancel_flag(
    server: ControlServer, http: aiohttp.ClientSession
) -> None:
    async with http.post(f"{server.url}/kill", json={"cancel_orders": "yes"}, headers=AUTH) as r:
        assert r.status == 400
    assert not server.kill_switch.engaged


async def test_without_a_configured_key_post_endpoints_refuse_everything(
    metrics: Metrics, http: aiohttp.ClientSession
) -> None:
    srv = ControlServer(metrics, ControlConfig(api_key=None), kill_switch=KillSwitch())
    await srv.start()
    try:
        async with http.post(f"{srv.url}/signals", data=b'{"id":"a"}', headers=AUTH) as r:
            assert r.status == 503
            assert "control_token" in (await r.json())["error"]
        async with http.post(f"{srv.url}/kill", headers=AUTH) as r:
            assert r.status == 503
        assert srv.signals.qsize() == 0 and not srv.kill_switch.engaged
    finally:
        await srv.close()


async def test_metrics_endpoint_serves_parseable_prometheus_and_never_the_key(
    server: ControlServer, metrics: Metrics, http: aiohttp.ClientSession
) -> None:
    metrics.record_stamps("acct-1", 0, 0, 1_000, 2_000, 3_000, 4_000, 54_000)
    # A component mistakenly putting the key into a label must not leak it.
    metrics.health.set(API_KEY, "auth", "ok", True, detail=f"key {API_KEY}")
    async with http.post(f"{server.url}/signals", data=b"{}", headers=AUTH):
        pass
    async with http.get(f"{server.url}/metrics", headers=AUTH) as r:
        assert r.status == 200
        assert r.content_type == "text/plain"
        text = await r.text()
    assert API_KEY not in text
    fams = parse(text)
    assert fams["tl_latency_seconds"].kind == "histogram"
    assert ("tl_control_signals_total", {"result": "queued"}, 1.0) in fams[
        "tl_control_signals_total"
    ].samples
    assert fams["tl_control_signal_queue_depth"].samples[0][2] == 1


async def test_status_summarises_health_outcomes_and_latency(
    metrics: Metrics, http: aiohttp.ClientSession
) -> None:
    srv = ControlServer(
        metrics, ControlConfig(api_key=API_KEY), status_extra=lambda: {"accounts": 1}
    )
    await srv.start()
    try:
        metrics.record_stamps("acct-1", 0, 0, 1_000, 2_000, 3_000, 4_000, 54_000)
        async with http.get(f"{srv.url}/status", headers=AUTH) as r:
            assert r.status == 200
            body = await r.json()
    finally:
        await srv.close()
    assert body["outcomes"] == {"acct-1": {"accepted": 1}}
    assert body["latency"]["wire_to_ack"]["p50_us"] == pytest.approx(50.0, rel=1e-3)
    assert body["engine"] == {"accounts": 1}
    assert body["kill_switch"]["engaged"] is False


def test_split_signals_accepts_a_pretty_printed_object_and_refuses_arrays() -> None:
    pretty = b'{\n  "id": "a",\n  "account": "x"\n}\n'
    assert split_signals(pretty) == [pretty.strip()]
    with pytest.raises(ValueError, match="JSON list"):
        split_signals(b'[{"id": "a"}]')
    with pytest.raises(ValueError, match="line 1 is not a JSON object"):
        split_signals(b'1\n{"id": "a"}')
    with pytest.raises(ValueError, match="empty body"):
        split_signals(b"  \n")
