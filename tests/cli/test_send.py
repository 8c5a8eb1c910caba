"""``tl-engine send``: signals reach a real control server and a real Kafka broker."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer

from engine.io.control import ControlConfig, ControlServer
from engine.io.sources.http import HttpIntake
from engine.observability.metrics import Metrics
from engine.state.journal import Journal

SIGNALS = [
    {
        "id": "s-1",
        "account": "acc-a",
        "action": "place",
        "symbol": "EURUSD",
        "side": "buy",
        "type": "market",
        "qty": 0.1,
    },
    {"id": "s-2", "account": "acc-b", "action": "cancel_all"},
    {"id": "s-3", "account": "acc-a", "action": "close_all"},
]


def _write_signals(tmp_path: Path) -> Path:
    path = tmp_path / "signals.jsonl"
    lines = [orjson.dumps(s).decode() for s in SIGNALS]
    path.write_text("# a comment line is ignored\n" + "\n".join(lines) + "\n")
    return path


async def _run_send(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "engine.app.cli",
        "send",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_send_over_http_queues_every_signal_on_the_control_server(tmp_path: Path) -> None:
    server = ControlServer(Metrics(), ControlConfig(host="127.0.0.1", port=0, api_key="k-123456"))
    journal = Journal(tmp_path / "journal.sqlite")
    server.open_intake(HttpIntake(journal.intake))  # what an http source does
    url = await server.start()
    try:
        code, out, err = await _run_send(
            str(_write_signals(tmp_path)),
            "--http",
            url,
            env={"TL_ENGINE_CONTROL_TOKEN": "k-123456"},
        )
        assert code == 0, err
        assert "202" in out
        got = [orjson.loads(server.signals.get_nowait().payload) for _ in range(len(SIGNALS))]
        assert [g["id"] for g in got] == ["s-1", "s-2", "s-3"]
    finally:
        await server.close()
        await journal.close()


async def test_send_over_http_without_the_key_says_which_variable_to_set(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TL_ENGINE_CONTROL_TOKEN"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "engine.app.cli",
        "send",
        str(_write_signals(tmp_path)),
        "--http",
        "http://127.0.0.1:9",
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 2
    assert "TL_ENGINE_CONTROL_TOKEN" in err.decode()


async def test_send_refuses_a_line_that_is_not_json_and_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "ok", "account": "a", "action": "close_all"}\n{"id": oops}\n')
    code, _, err = await _run_send(str(path), "--kafka", "127.0.0.1:9")
    assert code != 0
    assert "line 2" in err


async def test_send_to_kafka_keys_each_signal_by_its_account(
    tmp_path: Path, kafka_broker: str, kafka_topic
) -> None:
    topic = await kafka_topic(partitions=3, prefix="signals")
    code, out, err = await _run_send(
        str(_write_signals(tmp_path)), "--kafka", kafka_broker, "--topic", topic
    )
    assert code == 0, err
    assert f"produced {len(SIGNALS)} signal(s)" in out
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_broker, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    try:
        seen: dict[str, bytes | None] = {}
        async with asyncio.timeout(30):
            while len(seen) < len(SIGNALS):
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for r in records:
                        seen[orjson.loads(r.value)["id"]] = r.key
        assert seen == {"s-1": b"acc-a", "s-2": b"acc-b", "s-3": b"acc-a"}
    finally:
        await consumer.stop()


async def test_every_send_failure_is_one_line_with_the_fix(tmp_path: Path) -> None:
    signals = _write_signals(tmp_path)
    key = {"TL_ENGINE_CONTROL_TOKEN": "k-123456"}

    async def fails(*args: str, env: dict[str, str] | None = None) -> str:
        code, out, err = await _run_send(*args, env=env)
        assert code != 0
        assert "Traceback" not in out + err and "Unclosed" not in out + err, err
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1, err
        return lines[0]

    missing = await fails(str(tmp_path / "nope.jsonl"), "--http", "http://127.0.0.1:1", env=key)
    assert "nope.jsonl: no such file" in missing
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "ok"}\n{not json\n')
    assert "line 2: not JSON" in await fails(str(bad), "--http", "http://127.0.0.1:1", env=key)
    # A port nothing listens on (bound, never listening: refused).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        refused = await fails(str(signals), "--http", f"http://127.0.0.1:{port}", env=key)
    assert f"cannot reach http://127.0.0.1:{port}" in refused and "is the engine running" in refused
    assert "is not a URL" in await fails(str(signals), "--http", "127.0.0.1:8787", env=key)
    kafka = await fails(str(signals), "--kafka", f"127.0.0.1:{port}")
    assert f"cannot reach Kafka at 127.0.0.1:{port}" in kafka

    server = ControlServer(Metrics(), ControlConfig(host="127.0.0.1", port=0, api_key="k-123456"))
    journal = Journal(tmp_path / "journal.sqlite")
    server.open_intake(HttpIntake(journal.intake))
    url = await server.start()
    try:
        code, out, err = await _run_send(
            str(signals), "--http", url, env={"TL_ENGINE_CONTROL_TOKEN": "wrong-key"}
        )
        assert code == 1 and out.startswith("401")
        assert err.strip() == (
            "tl-engine send: refused: TL_ENGINE_CONTROL_TOKEN does not hold the engine's "
            "control_token"
        )
    finally:
        await server.close()
        await journal.close()
