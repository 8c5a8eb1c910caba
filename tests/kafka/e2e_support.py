"""Processes for the Kafka end-to-end tests: the sandbox and ``tl-engine run``, each a real
subprocess, so an engine can be SIGKILLed while the sandbox (the venue) and the broker live on."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from tests.fixtures.sim import (
    DEMO_EMAIL,
    DEMO_PASSWORD,
    DEMO_SERVER,
    PYTHON,
    REPO,
)


def write_config(
    path: Path,
    *,
    sandbox_url: str,
    bootstrap: str,
    topic: str,
    group: str,
    prefix: str,
    journal: Path,
) -> None:
    path.write_text(
        f"""
[engine]
journal_path = "{journal}"
control_port = 0

[logins.sb]
base_url = "{sandbox_url}"
server = "{DEMO_SERVER}"
email = "env:SB_EMAIL"
password = "env:SB_PASSWORD"

[accounts.a1]
login = "sb"
acc_num = 1

[accounts.a2]
login = "sb"
acc_num = 2

[[sources]]
kind = "kafka"
bootstrap = "{bootstrap}"
topic = "{topic}"
group_id = "{group}"

[[sinks]]
kind = "kafka"
bootstrap = "{bootstrap}"
topic_prefix = "{prefix}"
"""
    )


def start_engine(config: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [PYTHON, "-m", "engine.app.cli", "run", "--config", str(config)],
        cwd=REPO,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env={
            **os.environ,
            "SB_EMAIL": DEMO_EMAIL,
            "SB_PASSWORD": DEMO_PASSWORD,
            "PYTHONUNBUFFERED": "1",
        },
    )


class OutcomeWatcher:
    """Reads the outcomes topic from the beginning, without a group (it commits nothing)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.events: list[dict[str, Any]] = []
        self._consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            metadata_max_age_ms=500,
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for record in self._consumer:
            self.events.append(orjson.loads(record.value or b"{}"))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self._consumer.stop()

    def ids(self) -> set[str]:
        return {e["id"] for e in self.events}

    async def wait(self, cond: Callable[[], bool], what: str, limit_s: float = 120.0) -> None:
        # A hang guard for real processes on a shared machine, not a speed assertion.
        for _ in range(int(limit_s / 0.1)):
            if cond():
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"gave up waiting for {what}; saw {len(self.events)} outcomes")
