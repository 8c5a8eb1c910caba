"""``tl-engine demo`` (the README's first command) runs start to finish on loopback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from engine.app.demo import run_demo

REPO = Path(__file__).resolve().parents[2]


async def test_demo_prints_every_outcome_and_the_latency_table() -> None:
    lines: list[str] = []
    assert await run_demo(40, "0", lines.append) == 0
    text = "\n".join(lines)
    assert "stop_limit_triggered" in text
    for action in (
        "modify ",
        "cancel ",
        "modify_position",
        "close ",
        "reverse",
        "cancel_all",
        "close_all",
    ):
        assert f" {action}" in text, action
    assert "'qty' must be more than 0" in text and "not valid JSON" in text
    assert "EURUSDX" in text
    assert ", 0 unknown" in text
    assert "signal_to_ack" in text and "engine_share" in text


def test_tl_engine_demo_command_exits_zero() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "engine.app.cli", "demo", "--burst", "20"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "latency, all accounts" in proc.stdout
