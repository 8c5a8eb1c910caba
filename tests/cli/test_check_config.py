"""``tl-engine check-config`` as an operator runs it (a subprocess): every mistake of a file in one
pass, each on its own line naming the key and the fix; ``--version``."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import hvac
import pytest

from engine.app.online import check_online
from tests.fixtures.sim import DEMO_ACCOUNT_IDS, DEMO_EMAIL, DEMO_PASSWORD, DEMO_SERVER
from tests.fixtures.vault import VaultServer
from tests.vault.engine_vault import SECRET_ID_ENV, provision, vault_engine_config

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
    assert "engine.control_token uses a vault: reference but there is no [vault] table" in text
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


def test_online_logs_in_finds_each_account_and_names_what_is_wrong(
    sandbox_process: str, tmp_path: Path
) -> None:
    """Against the sandbox subprocess: a good file is OK online; a wrong password, a secret
    that is not set, an account the login does not have and a Kafka broker that is not there
    are each one line, in one pass. Nothing is traded."""
    base = f"""
[engine]
journal_path = "{tmp_path}/journal.sqlite"
control_port = 0

[logins.sb]
base_url = "{sandbox_process}"
server = "{DEMO_SERVER}"
email = "env:SB_EMAIL"
password = "env:SB_PASSWORD"

[accounts.a1]
login = "sb"
acc_num = 1
"""
    env = {**os.environ, "SB_EMAIL": DEMO_EMAIL, "SB_PASSWORD": DEMO_PASSWORD}
    good = tmp_path / "good.toml"
    good.write_text(base)
    out = subprocess.run(
        [sys.executable, "-m", "engine.app.cli", "check-config", "--online", str(good)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "OK (online): 1 login(s), 1 account(s)" in out.stdout
    # The same venue account under a second login (another reference to the same user): only
    # the venue's account ids show it.
    twice = tmp_path / "twice.toml"
    twice.write_text(
        base
        + f"""
[logins.again]
base_url = "{sandbox_process}"
server = "{DEMO_SERVER}"
email = "env:SB_EMAIL_AGAIN"
password = "env:SB_PASSWORD"

[accounts.again1]
login = "again"
account_id = "{DEMO_ACCOUNT_IDS[0]}"
"""
    )
    out = subprocess.run(
        [sys.executable, "-m", "engine.app.cli", "check-config", "--online", str(twice)],
        cwd=REPO, env={**env, "SB_EMAIL_AGAIN": DEMO_EMAIL}, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert out.returncode == 1
    assert "accounts.again1 and accounts.a1 are the same venue account" in out.stdout

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        bad = tmp_path / "bad.toml"
        bad.write_text(
            base
            + f"""
[logins.wrong]
base_url = "{sandbox_process}"
server = "{DEMO_SERVER}"
email = "env:SB_EMAIL_W"
password = "env:WRONG_PASSWORD"

[accounts.w1]
login = "wrong"
acc_num = 1

[logins.unset]
base_url = "{sandbox_process}"
server = "{DEMO_SERVER}"
email = "env:SB_EMAIL_U"
password = "env:NOT_SET_ANYWHERE"

[accounts.u1]
login = "unset"
acc_num = 1

[accounts.a9]
login = "sb"
acc_num = 9

[[sinks]]
kind = "kafka"
bootstrap = "127.0.0.1:{port}"
"""
        )
        out = subprocess.run(
            [sys.executable, "-m", "engine.app.cli", "check-config", "--online", str(bad)],
            cwd=REPO, env={**env, "WRONG_PASSWORD": "not-it-4711", "SB_EMAIL_W": DEMO_EMAIL,
                 "SB_EMAIL_U": DEMO_EMAIL},
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip
    assert out.returncode == 1
    errors = [line for line in out.stdout.splitlines() if line.startswith("config error: ")]
    text = "\n".join(errors)
    assert "logins.wrong" in text and "email and password" in text and "server name" in text
    assert "logins.unset.password (env:)" in text
    assert "logins.sb" in text and "9" in text  # acc_num 9: the login has no such account
    assert f"sinks[0].bootstrap 127.0.0.1:{port}: Kafka not reachable" in text
    assert len(errors) == 4, out.stdout
    assert "not-it-4711" not in out.stdout + out.stderr and DEMO_PASSWORD not in out.stdout
    assert "Traceback" not in out.stdout + out.stderr and "Unclosed" not in out.stderr


@pytest.mark.vault
def test_online_reaches_vault_and_resolves_every_reference(
    vault: VaultServer, sandbox_process: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real OpenBao dev server: the credentials as vault: references through AppRole are
    resolved and used to log in; a missing field is named (never its value); a Vault that does
    not answer is one line."""
    root = hvac.Client(url=vault.address, token=vault.root_token)
    layout = provision(root)
    monkeypatch.setenv(SECRET_ID_ENV, layout.secret_id)
    cfg = vault_engine_config(sandbox_process, tmp_path, vault, layout, approle=True)
    assert check_online(cfg) == []

    missing = dataclasses.replace(
        cfg.logins["sb"], developer_api_key=f"vault:secret/{layout.login_path()}#no_such_field"
    )
    problems = check_online(dataclasses.replace(cfg, logins={"sb": missing}))
    assert len(problems) == 1 and problems[0].startswith("logins.sb.developer_api_key (vault:)")
    assert layout.secret_id not in problems[0]

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{closed.getsockname()[1]}"
        assert cfg.vault is not None
        gone = dataclasses.replace(cfg, vault=dataclasses.replace(cfg.vault, address=nowhere))
        problems = check_online(gone)
    assert len(problems) == 1 and problems[0].startswith("[vault]: cannot open it: ")
