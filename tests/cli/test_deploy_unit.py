"""deploy/tl-engine.service: a Type=notify unit with the usual hardening, whose commands are ones
``tl-engine`` accepts. (No systemd runs here; the notify protocol itself is tested against the
daemon with a real NOTIFY_SOCKET in tests/e2e/test_daemon_ops.py.)"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

from engine.app.cli import SUBCOMMANDS

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "tl-engine.service"


def keys() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_the_unit_is_notify_hardened_and_runs_real_commands() -> None:
    k = keys()
    assert k["Type"] == ["notify"] and k["NotifyAccess"] == ["main"]
    assert int(k["WatchdogSec"][0]) > 0 and k["Restart"] == ["on-failure"]
    assert k["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    for hardening in ("NoNewPrivileges", "PrivateTmp", "ProtectHome", "RestrictSUIDSGID"):
        assert k[hardening] == ["yes"], hardening
    assert k["ProtectSystem"] == ["strict"]
    # The state (journal, refresh tokens) is writable; nothing else is.
    assert "/var/lib/tl-engine" in k["ReadWritePaths"][0].split()
    # sched_setaffinity (engine.cpu_affinity) must stay allowed by the syscall filter.
    assert all("@resources" not in f for f in k["SystemCallFilter"])
    for command in (k["ExecStart"][0], k["ExecStartPre"][0]):
        argv = shlex.split(command)
        assert argv[0].endswith("/tl-engine") and argv[1] in SUBCOMMANDS
    if shutil.which("systemd-analyze"):  # where systemd's tools are installed: its own check
        out = subprocess.run(
            ["systemd-analyze", "verify", str(UNIT)], capture_output=True, text=True, timeout=60
        )
        complaints = [
            line
            for line in (out.stdout + out.stderr).splitlines()
            if line.strip() and "is not executable" not in line  # /opt/tl-engine: not here
        ]
        assert not complaints, complaints
