"""The real daemon (``tl-engine run`` as a subprocess) against the real sandbox subprocess, as an
operator runs them: for the control-surface, CLI and browser tests."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.fixtures.sim import (
    DEMO_EMAIL,
    DEMO_PASSWORD,
    DEMO_SERVER,
    PYTHON,
    REPO,
    launch_sandbox_process,
    stop_process,
)

CONTROL_TOKEN = "ctl-7d1e5c9a0b3f44e2"
READ_TOKEN = "read-2b8f6a1c9e0d4473"
DEV_KEY = "tl-sandbox-dev-key"  # the sandbox's default developer key (sandbox/seed.py)


@dataclass
class Daemon:
    url: str
    proc: subprocess.Popen[str]
    log: Path
    workdir: Path
    cafile: str | None
    env: dict[str, str]

    def cli(self, *args: str, token: str | None = CONTROL_TOKEN, timeout: float = 60) -> str:
        """Run ``tl-engine ARGS`` against this daemon; returns stdout, asserts exit 0."""
        out = self.cli_run(*args, token=token, timeout=timeout)
        assert out.returncode == 0, f"tl-engine {args} exited {out.returncode}: {out.stderr}"
        return out.stdout

    def cli_run(
        self, *args: str, token: str | None = CONTROL_TOKEN, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        extra = ["--url", self.url]
        if token is not None:
            extra += ["--token", token]
        if self.cafile:
            extra += ["--cafile", self.cafile]
        return subprocess.run(
            [PYTHON, "-m", "engine.app.cli", args[0], *extra, *args[1:]],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def self_signed(workdir: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 (openssl), with its key."""
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def _config(sandbox_url: str, workdir: Path, tls: tuple[Path, Path] | None) -> str:
    ws = sandbox_url.replace("http://", "ws://")
    tls_keys = f'control_tls_cert = "{tls[0]}"\ncontrol_tls_key = "{tls[1]}"\n' if tls else ""
    return f"""
[engine]
journal_path = "{workdir / "journal.sqlite"}"
control_port = 0
control_token = "env:TEST_CONTROL_TOKEN"
control_read_token = "file:{workdir / "read.token"}"
control_auth_failures_per_minute = 5
{tls_keys}
[logins.sb]
base_url = "{sandbox_url}"
server = "{DEMO_SERVER}"
email = "env:SB_EMAIL"
password = "env:SB_PASSWORD"
stream_url = "{ws}"
developer_api_key = "env:SB_DEV_KEY"

[accounts.a1]
login = "sb"
acc_num = 1

[accounts.a2]
login = "sb"
acc_num = 2

[[sources]]
kind = "http"
"""


@contextmanager
def running_daemon(workdir: Path, *, tls: bool = False) -> Iterator[Daemon]:
    """The sandbox (``realistic`` profile: 50-100 ms replies, tight limits) and the daemon with an
    http source, a stream, a control token, a read token from a file, and optionally TLS."""
    workdir.mkdir(parents=True, exist_ok=True)
    sandbox, sandbox_url = launch_sandbox_process(workdir / "sandbox.log", profile="realistic")
    cert = self_signed(workdir) if tls else None
    (workdir / "read.token").write_text(READ_TOKEN + "\n")
    cfg = workdir / "engine.toml"
    cfg.write_text(_config(sandbox_url, workdir, cert))
    env = {
        **os.environ,
        "SB_EMAIL": DEMO_EMAIL,
        "SB_PASSWORD": DEMO_PASSWORD,
        "SB_DEV_KEY": DEV_KEY,
        "TEST_CONTROL_TOKEN": CONTROL_TOKEN,
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("TL_ENGINE_URL", "TL_ENGINE_CONTROL_TOKEN", "TL_ENGINE_READ_TOKEN"):
        env.pop(name, None)
    log = workdir / "engine.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [PYTHON, "-m", "engine.app.cli", "run", "--config", str(cfg)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            text=True,
        )
    try:
        url = _wait_for_url(proc, log)
        yield Daemon(url, proc, log, workdir, str(cert[0]) if cert else None, env)
    finally:
        stop_process(proc)
        stop_process(sandbox)


def _wait_for_url(proc: subprocess.Popen[str], log: Path, limit_s: float = 120) -> str:
    """The daemon prints ``control server: URL`` once it serves; a hang guard, not a timing."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        found = re.search(r"control server: (https?://\S+)", log.read_text())
        if found:
            return found.group(1)
        if proc.poll() is not None:
            raise AssertionError(f"the daemon exited {proc.returncode}: {log.read_text()[-3000:]}")
        time.sleep(0.05)
    raise AssertionError(f"the daemon never served: {log.read_text()[-3000:]}")
