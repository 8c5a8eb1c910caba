"""VaultStore against a real OpenBao dev server (the ``vault`` session fixture)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable

import hvac
import pytest

from engine.secrets.store import Secret, SecretError, VaultConfig, VaultStore
from tests.fixtures.vault import VaultServer, enable_approle

pytestmark = pytest.mark.vault


@pytest.fixture
def root(vault: VaultServer) -> hvac.Client:
    return hvac.Client(url=vault.address, token=vault.root_token)


@pytest.fixture
def prefix() -> str:
    # A fresh prefix per test: tests share the session's server, never each other's secrets.
    return f"tl-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def store(vault: VaultServer, prefix: str) -> AsyncIterator[VaultStore]:
    s = VaultStore(
        VaultConfig(
            vault.address, token=Secret(vault.root_token), prefix=prefix, poll_interval_s=0.2
        )
    )
    await s.start()
    yield s
    await s.close()


def put_login(root: hvac.Client, prefix: str, login: str, **fields: str) -> None:
    root.secrets.kv.v2.create_or_update_secret(
        path=f"{prefix}/logins/{login}", secret=fields, mount_point="secret"
    )


async def wait_for(cond: Callable[[], bool], what: str, limit_s: float = 20.0) -> None:
    # Bounded wait for a background effect; the bound is a hang guard, not a speed assertion.
    for _ in range(int(limit_s / 0.05)):
        if cond():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


async def test_login_credentials_are_read_from_kv(
    store: VaultStore, root: hvac.Client, prefix: str
) -> None:
    put_login(
        root,
        prefix,
        "ftmo1",
        email="trader@example.com",
        password="pw-1",
        server="FTMO-Demo",
        developer_api_key="key-1",
    )
    creds = await store.credentials("ftmo1")
    assert creds.email.reveal() == "trader@example.com"
    assert creds.password.reveal() == "pw-1"
    assert creds.server == "FTMO-Demo"
    assert creds.developer_api_key is not None and creds.developer_api_key.reveal() == "key-1"
    assert creds.version == 1


async def test_reference_resolves_one_field(
    store: VaultStore, root: hvac.Client, prefix: str
) -> None:
    root.secrets.kv.v2.create_or_update_secret(
        path=f"{prefix}/control", secret={"token": "ctl-123"}, mount_point="secret"
    )
    secret = await store.resolve(f"vault:secret/{prefix}/control#token")
    assert secret.reveal() == "ctl-123"


async def test_missing_secret_and_missing_field_say_where(
    store: VaultStore, root: hvac.Client, prefix: str
) -> None:
    with pytest.raises(SecretError, match=f"nothing at secret/{prefix}/logins/nobody"):
        await store.credentials("nobody")
    put_login(root, prefix, "half", email="a@b.c", password="pw")
    with pytest.raises(SecretError, match="lacks server"):
        await store.credentials("half")
    with pytest.raises(SecretError, match="no field 'nope'"):
        await store.resolve(f"vault:secret/{prefix}/logins/half#nope")


async def test_refresh_token_written_back_is_read_by_a_restarted_store(
    store: VaultStore, vault: VaultServer, prefix: str
) -> None:
    assert await store.load_refresh_token("ftmo1") is None
    hook = store.refresh_hook("ftmo1")
    await hook("refresh-AAA")
    await hook("refresh-BBB")  # rotation: the newest wins

    restarted = VaultStore(
        VaultConfig(vault.address, token=Secret(vault.root_token), prefix=prefix)
    )
    await restarted.start()
    try:
        token = await restarted.load_refresh_token("ftmo1")
        assert token == Secret("refresh-BBB")
    finally:
        await restarted.close()


async def test_approle_login_reads_with_its_own_policy(
    vault: VaultServer, root: hvac.Client, prefix: str
) -> None:
    enable_approle(root)
    root.sys.create_or_update_policy(
        name=f"engine-{prefix}",
        policy=f'path "secret/data/{prefix}/*" {{ capabilities = ["read", "create", "update"] }}\n'
        f'path "secret/metadata/{prefix}/*" {{ capabilities = ["read"] }}\n',
    )
    root.auth.approle.create_or_update_approle(
        role_name=prefix, token_policies=[f"engine-{prefix}"], token_ttl="1h"
    )
    role_id = root.auth.approle.read_role_id(prefix)["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id(prefix)["data"]["secret_id"]
    put_login(root, prefix, "acct", email="e@x.y", password="pw-approle", server="S")

    store = VaultStore(
        VaultConfig(vault.address, role_id=role_id, secret_id=Secret(secret_id), prefix=prefix)
    )
    await store.start()
    try:
        assert store.logins == 1
        creds = await store.credentials("acct")
        assert creds.password.reveal() == "pw-approle"
        # The policy is the only grant: a path outside the prefix is refused, clearly.
        with pytest.raises(SecretError, match="permission denied"):
            await store.resolve("vault:secret/elsewhere/x#y")
    finally:
        await store.close()


async def test_short_lived_token_is_renewed_before_it_expires(
    vault: VaultServer, root: hvac.Client, prefix: str
) -> None:
    created = root.auth.token.create(
        ttl="4s", explicit_max_ttl="10m", renewable=True, policies=["default"]
    )
    token = created["auth"]["client_token"]
    store = VaultStore(VaultConfig(vault.address, token=Secret(token), prefix=prefix))
    await store.start()
    try:
        await wait_for(lambda: store.renewals >= 3, "three renewals")
        # Twelve seconds of renewals on a 4 s token: it would be long dead without them.
        info = root.auth.token.lookup(token)["data"]
        assert info["ttl"] > 0
        assert hvac.Client(url=vault.address, token=token).is_authenticated()
    finally:
        await store.close()


async def test_changed_credential_is_picked_up_without_restart(
    store: VaultStore, root: hvac.Client, prefix: str
) -> None:
    put_login(root, prefix, "ftmo1", email="e@x.y", password="old-pw", server="S")
    assert (await store.credentials("ftmo1")).password.reveal() == "old-pw"
    changed: list[str] = []
    store.on_change(changed.append)

    put_login(root, prefix, "ftmo1", email="e@x.y", password="new-pw", server="S")
    await wait_for(lambda: "login:ftmo1" in changed, "the change callback")
    creds = await store.credentials("ftmo1")
    assert creds.password.reveal() == "new-pw"
    assert creds.version == 2


async def test_writing_the_refresh_token_is_not_a_credential_change(
    store: VaultStore, root: hvac.Client, prefix: str
) -> None:
    put_login(root, prefix, "ftmo1", email="e@x.y", password="pw", server="S")
    await store.credentials("ftmo1")
    # A marker login, watched after ftmo1's login (a poll round reads paths in watch order).
    put_login(root, prefix, "marker", email="e@x.y", password="m0", server="S")
    await store.credentials("marker")
    changed: list[str] = []
    store.on_change(changed.append)
    await store.save_refresh_token("ftmo1", "r1")
    put_login(root, prefix, "other", email="e@x.y", password="pw", server="S")
    # Two marker changes, one after the other. The round that reported the first read the
    # marker, and every path watched after it, after the writes above; the round that reports
    # the second began after that one ended, and read every path watched before the marker.
    # By then any change the writes above caused has been reported.
    for n in (1, 2):
        put_login(root, prefix, "marker", email="e@x.y", password=f"m{n}", server="S")
        await wait_for(lambda n=n: changed.count("login:marker") == n, f"marker change {n}")
    assert [ref for ref in changed if ref != "login:marker"] == []


async def test_unreachable_vault_is_a_clear_error() -> None:
    store = VaultStore(VaultConfig("http://127.0.0.1:9", token=Secret("t"), timeout_s=1.0))
    with pytest.raises(SecretError, match=r"vault at http://127\.0\.0\.1:9 unreachable"):
        await store.start()
    await store.close()


async def test_no_secret_reaches_a_log_line_or_an_error(
    vault: VaultServer, root: hvac.Client, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    put_login(
        root,
        prefix,
        "acct",
        email="leak-email@x.y",
        password="leak-password-123",
        server="S",
        developer_api_key="leak-key-456",
    )
    store = VaultStore(
        VaultConfig(
            vault.address, token=Secret(vault.root_token), prefix=prefix, poll_interval_s=0.1
        )
    )
    await store.start()
    try:
        creds = await store.credentials("acct")
        await store.save_refresh_token("acct", "leak-refresh-789")
        changed: list[str] = []
        store.on_change(changed.append)
        put_login(
            root, prefix, "acct", email="leak-email@x.y", password="leak-password-2", server="S"
        )
        # The poll notices the change (and logs what it logs about it) before the text is read.
        await wait_for(lambda: "login:acct" in changed, "the change to be noticed")
        errors = []
        for bad in ("vault:secret/nope/x#y", f"vault:secret/{prefix}/logins/acct#nofield"):
            with pytest.raises(SecretError) as info:
                await store.resolve(bad)
            errors.append(str(info.value))
        text = "\n".join(
            [caplog.text, repr(creds), str(creds), f"{creds.password}", *errors, repr(store)]
        )
    finally:
        await store.close()
    for value in ("leak-email", "leak-password", "leak-key", "leak-refresh", vault.root_token):
        assert value not in text
    assert "Secret('***')" in repr(creds)
