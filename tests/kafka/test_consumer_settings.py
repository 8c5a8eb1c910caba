"""The Kafka consumer's settings from the TOML (docs/kafka.md, "Takeover"): each key checked on
its own and against the others with a one-line error naming the fix, and the values reaching the
consumer the daemon builds."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from engine.app.config import parse_config
from engine.app.daemon_sources import kafka_source_config
from engine.io.kafka.source import KafkaSignalSource
from engine.model.errors import ConfigError
from sandbox import Sandbox
from tests.fixtures.engine import engine_config_data
from tests.fixtures.kafka import TopicFactory
from tests.fixtures.sim import DEMO_EMAIL, DEMO_PASSWORD, DEMO_SERVER, REPO


def with_source(tmp_path: Path, **keys: Any) -> dict[str, Any]:
    data = engine_config_data("http://127.0.0.1:1", tmp_path)
    data["sources"] = [
        {"kind": "kafka", "bootstrap": "127.0.0.1:9", "topic": "t", "group_id": "g", **keys}
    ]
    return data


def test_defaults_are_the_fast_takeover_ones(tmp_path: Path) -> None:
    src = parse_config(with_source(tmp_path)).sources[0]
    assert (src.session_timeout_ms, src.heartbeat_interval_ms) == (1500, 300)
    assert src.revoke_grace_ms < src.rebalance_timeout_ms


@pytest.mark.parametrize(
    ("keys", "named"),
    [
        ({"session_timeout_ms": 100}, "session_timeout_ms must be an integer from 500"),
        ({"heartbeat_interval_ms": 600}, "at most a third of session_timeout_ms"),
        ({"max_poll_interval_ms": 1000}, "max_poll_interval_ms must be at least"),
        ({"revoke_grace_ms": 3000}, "revoke_grace_ms (3000) must be below"),
        ({"assignment_strategy": "cooperative"}, "assignment_strategy must be one of"),
        ({"fetch_max_wait_ms": 0}, "fetch_max_wait_ms must be an integer from 1"),
        ({"session_timeout_ms": "2s"}, "session_timeout_ms must be an integer"),
        ({"fence_ms": 1500}, "fence_ms (1500) must be above heartbeat_interval_ms (300) and below"),
        ({"fence_ms": 200}, "fence_ms (200) must be above heartbeat_interval_ms"),
        # The derived default (session - 2 x heartbeat) must fit too: 900 - 2 x 300 = 300.
        ({"session_timeout_ms": 900, "heartbeat_interval_ms": 300}, "fence_ms (300) must be"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_key(
    tmp_path: Path, keys: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(with_source(tmp_path, **keys))
    assert named in str(err.value)
    assert "\n" not in str(err.value)


async def test_the_daemon_gives_the_consumer_the_configured_values(tmp_path: Path) -> None:
    keys = {
        "session_timeout_ms": 6000,
        "heartbeat_interval_ms": 1000,
        "rebalance_timeout_ms": 9000,
        "max_poll_interval_ms": 60000,
        "fetch_max_wait_ms": 20,
        "revoke_grace_ms": 2500,
        "assignment_strategy": "sticky",
    }
    cfg = parse_config(with_source(tmp_path, **keys))
    source = KafkaSignalSource(kafka_source_config(cfg.sources[0]))
    consumer = source._consumer
    assert consumer._session_timeout_ms == 6000
    assert consumer._heartbeat_interval_ms == 1000
    assert consumer._rebalance_timeout_ms == 9000
    assert consumer._max_poll_interval_ms == 60000
    assert consumer._fetch_max_wait_ms == 20
    assert source.config.revoke_grace_s == 2.5
    assert [a.name for a in consumer._partition_assignment_strategy] == ["sticky"]
    # Self-fencing: session - 2 x heartbeat unless told.
    assert source.lease.fence_ns == 4000 * 1_000_000
    told = parse_config(with_source(tmp_path, **keys, fence_ms=5000)).sources[0]
    assert KafkaSignalSource(kafka_source_config(told)).lease.fence_ns == 5000 * 1_000_000


@pytest.mark.kafka
async def test_a_session_timeout_the_broker_refuses_stops_the_daemon_with_one_line(
    kafka_broker: str, kafka_topic: TopicFactory, sandbox: Sandbox, tmp_path: Path
) -> None:
    """The test broker's floor is 1000 ms (scripts/kafka.sh); 500 passes the config's own check
    and is refused by the broker when the engine joins: `tl-engine run` ends with the fix in one
    line, not a traceback and not a daemon that silently consumes nothing."""
    topic = await kafka_topic(partitions=1, prefix="badsession")
    config = tmp_path / "engine.toml"
    config.write_text(
        f"""
[engine]
journal_path = "{tmp_path / "journal.sqlite"}"
control_port = 0

[logins.sb]
base_url = "{sandbox.base_url}"
server = "{DEMO_SERVER}"
email = "env:SB_EMAIL"
password = "env:SB_PASSWORD"

[accounts.a1]
login = "sb"
acc_num = 1

[[sources]]
kind = "kafka"
bootstrap = "{kafka_broker}"
topic = "{topic}"
group_id = "{topic}"
session_timeout_ms = 500
heartbeat_interval_ms = 100
"""
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "engine.app.cli",
        "run",
        "--config",
        str(config),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "SB_EMAIL": DEMO_EMAIL, "SB_PASSWORD": DEMO_PASSWORD},
    )
    async with asyncio.timeout(90):  # a hang guard: the join is refused at once
        _out, err = await proc.communicate()
    text = err.decode()
    assert proc.returncode == 2, text[-2000:]  # a config error: exit status 2, as every other
    [line] = [ln for ln in text.splitlines() if ln.startswith("config error: ")]
    assert "refuses session_timeout_ms = 500" in line
    assert "group.min.session.timeout.ms" in line
    assert "Traceback" not in text
