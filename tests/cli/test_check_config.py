"""``tl-engine check-config`` as an operator runs it (a subprocess): every mistake of a file in one
pass, each on its own line naming the key and the fix; ``--version``."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.app.cli", "check-config", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another process listens on (this test's socket)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_every_mistake_is_listed_in_one_pass(tmp_path: Path, busy_port: int) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(f"""
[engine]
journal_path = "{tmp_path}/no-such-dir/journal.sqlite"
control_host = "127.0.0.1:8787"
control_token = "vault:secret/tl#control"

[logins.a]
base_url = "https://"
server = "S"
email = "env:A_EMAIL"
password = "env:A_PASSWORD"

[logins.b]
base_url = "https://demo.tradelocker.com"
server = "S"
email = "env:B_EMAIL"
password = "env:B_PASSWORD"

[accounts.one]
login = "b"
account_id = "700001"

[accounts.two]
login = "b"
account_id = 700001

[[sinks]]
kind = "kafka"
bootstrap = "localhost"
""")
    out = check(str(bad))
    assert out.returncode == 1
    errors = [line for line in out.stdout.splitlines() if line.startswith("config error: ")]
    text = "\n".join(errors)
    assert "logins.a.base_url has no valid host after https://" in text
    assert "engine.control_host is a host only: write '127.0.0.1' and put the port" in text
    assert "engine.control_token use(s) a vault: reference but there is no [vault] table" in text
    assert "accounts.two and accounts.one are the same venue account" in text
    assert "engine.journal_path: the directory" in text and "does not exist" in text
    assert "sinks[0].bootstrap: 'localhost' is not host:port" in text
    assert len(errors) == 6, out.stdout
    assert out.stdout.rstrip().endswith("6 error(s)")
    assert "Traceback" not in out.stdout + out.stderr

    # The port check binds the address as the server would: a listener there is named.
    taken = tmp_path / "taken.toml"
    taken.write_text(
        bad.read_text()
        .replace('control_host = "127.0.0.1:8787"', f"control_port = {busy_port}")
        .replace("no-such-dir/", "")
    )
    out = check(str(taken))
    assert f"127.0.0.1:{busy_port}: the port is in use" in out.stdout


def test_a_good_file_is_ok_and_version_prints_one_line(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(f"""
[engine]
journal_path = "{tmp_path}/journal.sqlite"
control_port = 0
cpu_affinity = [0]
gc_thresholds = [70000, 10, 100]

[logging]
level = "engine.tradelocker=DEBUG,info"
format = "json"

[logins.b]
base_url = "https://demo.tradelocker.com"
server = "S"
email = "env:B_EMAIL"
password = "env:B_PASSWORD"

[accounts.one]
login = "b"
acc_num = 1
""")
    out = check(str(good))
    assert out.returncode == 0, out.stdout
    assert "OK: 1 login(s), 1 account(s)" in out.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(
        good.read_text()
        .replace("cpu_affinity = [0]", "cpu_affinity = [4096]")
        .replace('"engine.tradelocker=DEBUG,info"', '"verbose"')
    )
    out = check(str(bad))
    assert out.returncode == 1
    assert "engine.cpu_affinity: CPU 4096 is not available to this process" in out.stdout
    assert "logging.level: 'verbose' is not a level" in out.stdout

    version = subprocess.run(
        [sys.executable, "-m", "engine.app.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert version.returncode == 0
    assert version.stdout.startswith("tl-engine ") and "hot path:" in version.stdout
    assert version.stdout.count("\n") == 1
