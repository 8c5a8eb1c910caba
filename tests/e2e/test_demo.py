"""``tl-engine demo`` (the README's first command) runs start to finish on loopback, against the
sandbox's ``realistic`` profile (50-100 ms replies with the tail, PLACE_ORDER 5/s per account)."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from engine.app.demo import run_demo

REPO = Path(__file__).resolve().parents[2]


async def test_demo_prints_every_outcome_and_the_latency_table(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lines: list[str] = []
    with caplog.at_level(logging.WARNING):
        assert await run_demo(16, "profile", lines.append) == 0
    text = "\n".join(lines)
    # Outcomes in signal order within each phase, whatever order the venue answered in.
    shown = [m.group(1) for line in lines if (m := re.match(r"  \S+\s+(demo-\d\d)", line))]
    assert shown == sorted(shown) and len(shown) >= 16, shown
    # Each rate-limit warning once per account and route (the gate and the metrics both warn).
    warned = [
        (r.args[0], r.args[1])
        for r in caplog.records
        if "rate limit" in r.getMessage() and isinstance(r.args, tuple)
    ]
    assert warned and len(warned) == len(set(warned)), warned
    # Only the four deliberately bad signals are rejected; the burst fits the published limits.
    assert "4 rejected with a reason, 0 unknown" in text
    assert "burst orders: 16 accepted; close all: 2 accepted" in text
    assert "waited for rate budget at the gate: 0 orders" in text
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
    # The last scene: the guards keep both funded accounts inside the firm's rules.
    assert "guard halted: funded2 halted" in proc.stdout, proc.stdout[-3000:]
    assert "sandbox: no account breached its firm's rules" in proc.stdout
