"""The default secret store (environment and files) and the redacting Secret type."""

from __future__ import annotations

import asyncio
import os
import pickle
import stat
from pathlib import Path

import pytest

from engine.model.errors import ConfigError
from engine.secrets.store import Credentials, EnvFileStore, Secret, SecretError, login_env_prefix


def test_secret_never_prints_its_value() -> None:
    s = Secret("hunter2")
    logged = "%s" % (s,)  # noqa: UP031  (the way logging formats its arguments)
    for shown in (repr(s), str(s), f"{s}", f"{s!r}", logged, repr([s]), repr({"k": s})):
        assert "hunter2" not in shown
        assert "***" in shown
    assert s.reveal() == "hunter2"


def test_secret_compares_by_value_but_cannot_be_hashed_or_pickled() -> None:
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    with pytest.raises(TypeError):
        hash(Secret("a"))
    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(Secret("a"))


def test_credentials_repr_hides_every_secret_field() -> None:
    creds = Credentials("ftmo1", Secret("me@x.y"), Secret("pw"), "FTMO-Demo", Secret("apikey"))
    text = repr(creds)
    assert "me@x.y" not in text and "'pw'" not in text and "apikey" not in text
    assert "FTMO-Demo" in text


async def test_env_and_file_references_resolve(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("file-secret\n")
    store = EnvFileStore(environ={"TL_PW": "env-secret"})
    assert (await store.resolve("env:TL_PW")).reveal() == "env-secret"
    assert (await store.resolve(f"file:{tmp_path / 'pw'}")).reveal() == "file-secret"


async def test_missing_sources_give_errors_that_say_what_to_set(tmp_path: Path) -> None:
    store = EnvFileStore(environ={})
    with pytest.raises(SecretError, match="environment variable TL_NOPE is not set"):
        await store.resolve("env:TL_NOPE")
    with pytest.raises(SecretError, match="no such file"):
        await store.resolve(f"file:{tmp_path / 'absent'}")
    with pytest.raises(ConfigError, match="needs the Vault store"):
        await store.resolve("vault:secret/x#y")
    with pytest.raises(ConfigError, match="not a secret reference"):
        await store.resolve("plain-password")
    with pytest.raises(SecretError, match="TL_FTMO_1_EMAIL"):
        await store.credentials("ftmo-1")


async def test_login_credentials_come_from_prefixed_environment_variables() -> None:
    p = login_env_prefix("ftmo-1")
    store = EnvFileStore(environ={p + "EMAIL": "e@x.y", p + "PASSWORD": "pw", p + "SERVER": "S"})
    creds = await store.credentials("ftmo-1")
    assert (creds.email.reveal(), creds.password.reveal(), creds.server) == ("e@x.y", "pw", "S")
    assert creds.developer_api_key is None


async def test_refresh_token_is_persisted_privately_and_survives_restart(tmp_path: Path) -> None:
    store = EnvFileStore(state_dir=tmp_path / "state", environ={})
    await store.start()
    await store.refresh_hook("ftmo1")("rt-1")
    await store.refresh_hook("ftmo1")("rt-2")
    await store.close()
    [path] = (tmp_path / "state").iterdir()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600

    restarted = EnvFileStore(state_dir=tmp_path / "state", environ={})
    assert await restarted.load_refresh_token("ftmo1") == Secret("rt-2")
    assert await restarted.load_refresh_token("other") is None


async def test_rotated_password_file_fires_the_change_hook(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("old")
    store = EnvFileStore(environ={}, poll_interval_s=0.05)
    await store.start()
    changed: list[str] = []
    store.on_change(changed.append)
    try:
        await store.resolve(f"file:{pw}")
        pw.write_text("new")
        for _ in range(400):
            if changed:
                break
            await asyncio.sleep(0.05)
        assert changed == [f"file:{pw}"]
        assert (await store.resolve(f"file:{pw}")).reveal() == "new"
    finally:
        await store.close()
