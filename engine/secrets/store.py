"""Where credentials come from: the environment and files (the default), or Vault / OpenBao.

Every secret is handed out wrapped in :class:`Secret`, whose ``repr``/``str``/format are
``Secret('***')``, so an accidental log line, f-string or exception message cannot leak it; code
that really needs the value (building a login request) calls :meth:`Secret.reveal` at that one
place.

References (as written in the config file) name a secret without containing it:

``env:NAME``                   the environment variable NAME
``file:/path``                 the file's content (a trailing newline is dropped)
``vault:MOUNT/PATH#FIELD``     field FIELD of the KV v2 secret PATH under mount MOUNT

Per-login credentials may also be read as a whole with :meth:`SecretStore.credentials`
(``TL_<LOGIN>_EMAIL`` ... in the environment; ``<mount>/<prefix>/logins/<login>`` in Vault).

Refresh tokens are written back (``save_refresh_token``, or the ``on_tokens`` hook from
:meth:`SecretStore.refresh_hook` given to ``engine.tradelocker.auth.TokenManager``) so a restart
resumes the session without a fresh password login. In Vault they live beside, not inside, the
credentials (``<prefix>/sessions/<login>``): a rotating token must not bump the credentials'
version, which is what change detection watches.

hvac is synchronous: every Vault call runs on one dedicated worker thread (which also serialises
use of its HTTP session), never on the event loop, and never on the order path: credentials are
read at start-up, on a change, and on a re-login.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import inspect
import logging
import os
import re
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from engine.model.errors import ConfigError, EngineError

log = logging.getLogger(__name__)

T = TypeVar("T")
ChangeHook = Callable[[str], Awaitable[None] | None]
"""Called with the reference (or ``login:<name>``) whose value changed; read it again to use it."""


class SecretError(EngineError):
    """A secret could not be read or written. The message names the reference, never a value."""


class Secret:
    """A secret value that will not print itself. Compare with ``==`` (constant time)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The value itself: call this only where it goes into a request."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    __hash__ = None  # type: ignore[assignment]  # a hash would leak equality to a dict probe

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> Any:
        raise TypeError("a Secret is not picklable: pickles end up in logs and caches")


@dataclass(frozen=True, slots=True)
class Credentials:
    """One login's credentials. Its repr shows only ``Secret('***')`` for the secret fields."""

    login: str
    email: Secret
    password: Secret
    server: str
    developer_api_key: Secret | None = None
    version: int = 0  # the Vault KV version they were read at (0 elsewhere)


class SecretStore(Protocol):
    async def start(self) -> None:
        """Authenticate and start background work (token renewal, change polling)."""

    async def close(self) -> None: ...

    async def resolve(self, ref: str) -> Secret:
        """The secret a reference names; :class:`SecretError` saying what is missing if none."""

    async def credentials(self, login: str) -> Credentials: ...

    async def load_refresh_token(self, login: str) -> Secret | None: ...

    async def save_refresh_token(self, login: str, token: str) -> None: ...

    def on_change(self, hook: ChangeHook) -> None:
        """Call ``hook(ref)`` when a secret read earlier changes at its source."""

    def refresh_hook(self, login: str) -> Callable[[str], Awaitable[None]]:
        """An ``on_tokens`` hook for the TokenManager that persists each new refresh token."""


def login_env_prefix(login: str) -> str:
    """``ftmo-1`` -> ``TL_FTMO_1_``: where :class:`EnvFileStore` looks for a login's values."""
    return "TL_" + re.sub(r"[^A-Za-z0-9]", "_", login).upper() + "_"


class _Hooks:
    """The change callbacks; a failing one is logged and does not stop the others."""

    def __init__(self) -> None:
        self._hooks: list[ChangeHook] = []

    def add(self, hook: ChangeHook) -> None:
        self._hooks.append(hook)

    async def fire(self, ref: str) -> None:
        for hook in self._hooks:
            try:
                result = hook(ref)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                log.error("secret change hook for %s failed: %s", ref, type(exc).__name__)


class EnvFileStore:
    """Secrets from environment variables and files; refresh tokens in ``state_dir`` (mode 600).

    File references are watched by modification time, so a rotated password file is picked up
    without a restart. Without ``state_dir`` refresh tokens are kept in memory only.
    """

    def __init__(
        self,
        *,
        state_dir: str | Path | None = None,
        environ: dict[str, str] | None = None,
        poll_interval_s: float = 2.0,
    ) -> None:
        self._environ = environ if environ is not None else os.environ
        self._state_dir = Path(state_dir) if state_dir is not None else None
        self._memory_tokens: dict[str, Secret] = {}
        self._hooks = _Hooks()
        self._poll_interval_s = poll_interval_s
        self._watched: dict[Path, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._state_dir is not None:
            self._state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self._task is None:
            self._task = asyncio.create_task(self._watch_files(), name="secrets:files")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def resolve(self, ref: str) -> Secret:
        if ref.startswith("env:"):
            name = ref[4:]
            value = self._environ.get(name)
            if value is None:
                raise SecretError(f"{ref}: the environment variable {name} is not set")
            return Secret(value)
        if ref.startswith("file:"):
            path = Path(ref[5:])
            secret, mtime = await asyncio.to_thread(_read_secret_file, ref, path)
            self._watched[path] = mtime
            return secret
        if ref.startswith("vault:"):
            raise ConfigError(f"{ref}: a vault: reference needs the Vault store ([vault] config)")
        raise ConfigError(f"{ref!r} is not a secret reference (env:NAME, file:/path, vault:...)")

    async def credentials(self, login: str) -> Credentials:
        prefix = login_env_prefix(login)

        def need(key: str) -> str:
            value = self._environ.get(prefix + key)
            if not value:
                raise SecretError(f"login {login!r}: set the environment variable {prefix}{key}")
            return value

        api_key = self._environ.get(prefix + "DEVELOPER_API_KEY")
        return Credentials(
            login=login,
            email=Secret(need("EMAIL")),
            password=Secret(need("PASSWORD")),
            server=need("SERVER"),
            developer_api_key=Secret(api_key) if api_key else None,
        )

    async def load_refresh_token(self, login: str) -> Secret | None:
        if self._state_dir is None:
            return self._memory_tokens.get(login)
        path = self._token_path(login)
        try:
            text = await asyncio.to_thread(path.read_text)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SecretError(
                f"cannot read the refresh token file {path}: {exc.strerror}"
            ) from None
        return Secret(text.strip()) if text.strip() else None

    async def save_refresh_token(self, login: str, token: str) -> None:
        if self._state_dir is None:
            self._memory_tokens[login] = Secret(token)
            return
        await asyncio.to_thread(_write_private, self._token_path(login), token)

    def on_change(self, hook: ChangeHook) -> None:
        self._hooks.add(hook)

    def refresh_hook(self, login: str) -> Callable[[str], Awaitable[None]]:
        async def save(token: str) -> None:
            await self.save_refresh_token(login, token)

        return save

    def _token_path(self, login: str) -> Path:
        assert self._state_dir is not None
        return self._state_dir / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', login)}.refresh_token"

    async def _watch_files(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval_s)
            current = await asyncio.to_thread(_mtimes, list(self._watched))
            for path, mtime in current.items():
                if mtime != self._watched.get(path):
                    self._watched[path] = mtime
                    log.info("secret file changed: %s", path)
                    await self._hooks.fire(f"file:{path}")


def _read_secret_file(ref: str, path: Path) -> tuple[Secret, int]:
    try:
        text = path.read_text()
        mtime = path.stat().st_mtime_ns
    except FileNotFoundError:
        raise SecretError(f"{ref}: no such file") from None
    except OSError as exc:
        raise SecretError(f"{ref}: cannot read the file ({exc.strerror})") from None
    return Secret(text.rstrip("\r\n")), mtime


def _mtimes(paths: list[Path]) -> dict[Path, int]:
    found = {}
    for path in paths:
        with contextlib.suppress(OSError):
            found[path] = path.stat().st_mtime_ns
    return found


def _write_private(path: Path, text: str) -> None:
    # Write-then-rename, so a crash never leaves half a token; 0600 from the first byte.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", text=True)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# -- Vault / OpenBao ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VaultConfig:
    """How to reach Vault and where the engine's secrets live.

    Authenticate with ``token``, or with AppRole (``role_id`` + ``secret_id``), which also lets the
    store log in again when its token reaches its maximum TTL.
    """

    address: str
    token: Secret | None = None
    role_id: str | None = None
    secret_id: Secret | None = None
    approle_mount: str = "approle"
    kv_mount: str = "secret"
    prefix: str = "tl-engine"
    namespace: str | None = None
    verify: bool | str = True
    timeout_s: float = 5.0
    poll_interval_s: float = 5.0  # how often watched secrets' metadata versions are checked
    renew_at_fraction: float = 0.5  # renew the token when this share of its TTL has passed

    def __post_init__(self) -> None:
        if self.token is None and not (self.role_id and self.secret_id):
            raise ConfigError("vault: give a token, or role_id and secret_id for AppRole")
        if not 0.0 < self.renew_at_fraction < 1.0:
            raise ConfigError("vault.renew_at_fraction must be between 0 and 1")


@dataclass(frozen=True, slots=True)
class _KvRef:
    mount: str
    path: str
    field: str


def parse_vault_ref(ref: str) -> tuple[str, str, str]:
    """``vault:secret/tl/ftmo#password`` -> ``("secret", "tl/ftmo", "password")``."""
    m = re.fullmatch(r"vault:([^/#]+)/([^#]+)#(.+)", ref)
    if not m:
        raise ConfigError(f"{ref!r}: a Vault reference reads vault:MOUNT/PATH#FIELD")
    return m.group(1), m.group(2), m.group(3)


class VaultStore:
    """Secrets in Vault / OpenBao KV v2, read with hvac on a worker thread.

    Background tasks: the token is renewed when ``renew_at_fraction`` of its TTL has passed (the
    TTL comes from ``lookup-self``; a non-expiring token is left alone); if it cannot be renewed
    and AppRole is configured, the store logs in again. Every watched KV path's
    ``current_version`` is polled; a change fires the ``on_change`` hooks with the reference
    (``vault:...#field`` or ``login:<name>``), and the next ``resolve``/``credentials`` reads the
    new value.
    """

    def __init__(self, config: VaultConfig) -> None:
        import hvac  # only the Vault mode pays for importing it

        self._config = config
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vault")
        self._client = hvac.Client(
            url=config.address,
            token=config.token.reveal() if config.token is not None else None,
            verify=config.verify,
            timeout=config.timeout_s,
            namespace=config.namespace,
        )
        self._hooks = _Hooks()
        self._local = EnvFileStore()  # env: and file: references keep working beside Vault
        self._local.on_change(self._hooks.fire)
        # (mount, path) -> (version last seen, refs to announce when it changes)
        self._watched: dict[tuple[str, str], tuple[int, set[str]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.renewals = 0  # successful token renewals (for health and tests)
        self.logins = 0  # successful AppRole logins
        self.token_expires_at: float | None = None  # wall clock; None = does not expire

    @property
    def config(self) -> VaultConfig:
        """Where the store reads (its token and secret id stay :class:`Secret`)."""
        return self._config

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._config.token is None:
            await self._approle_login()
        await self._run(self._check_token)
        await self._local.start()
        self._tasks = [
            asyncio.create_task(self._renew_loop(), name="vault:renew"),
            asyncio.create_task(self._poll_loop(), name="vault:poll"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self._local.close()
        self._pool.shutdown(wait=False)

    # -- reads and writes ---------------------------------------------------------------------

    async def resolve(self, ref: str) -> Secret:
        if not ref.startswith("vault:"):
            return await self._local.resolve(ref)
        mount, path, field = parse_vault_ref(ref)
        data, version = await self._run(self._read, mount, path)
        if field not in data:
            raise SecretError(f"{ref}: the secret at {mount}/{path} has no field {field!r}")
        self._watch(mount, path, version, ref)
        return Secret(str(data[field]))

    async def credentials(self, login: str) -> Credentials:
        mount, path = self._config.kv_mount, self._login_path(login)
        data, version = await self._run(self._read, mount, path)
        missing = [k for k in ("email", "password", "server") if not data.get(k)]
        if missing:
            raise SecretError(
                f"login {login!r}: the secret {mount}/{path} lacks {', '.join(missing)}"
            )
        self._watch(mount, path, version, f"login:{login}")
        api_key = data.get("developer_api_key")
        return Credentials(
            login=login,
            email=Secret(str(data["email"])),
            password=Secret(str(data["password"])),
            server=str(data["server"]),
            developer_api_key=Secret(str(api_key)) if api_key else None,
            version=version,
        )

    async def load_refresh_token(self, login: str) -> Secret | None:
        try:
            data, _ = await self._run(self._read, self._config.kv_mount, self._session_path(login))
        except SecretError as exc:
            if isinstance(exc.__cause__, LookupError):
                return None
            raise
        token = data.get("refresh_token")
        return Secret(str(token)) if token else None

    async def save_refresh_token(self, login: str, token: str) -> None:
        await self._run(
            self._write,
            self._config.kv_mount,
            self._session_path(login),
            {"refresh_token": token, "saved_at": int(time.time())},
        )

    def on_change(self, hook: ChangeHook) -> None:
        self._hooks.add(hook)

    def refresh_hook(self, login: str) -> Callable[[str], Awaitable[None]]:
        async def save(token: str) -> None:
            await self.save_refresh_token(login, token)

        return save

    # -- paths --------------------------------------------------------------------------------

    def _login_path(self, login: str) -> str:
        return f"{self._config.prefix}/logins/{login}"

    def _session_path(self, login: str) -> str:
        return f"{self._config.prefix}/sessions/{login}"

    def _watch(self, mount: str, path: str, version: int, ref: str) -> None:
        seen, refs = self._watched.get((mount, path), (version, set()))
        refs.add(ref)
        self._watched[(mount, path)] = (max(seen, version), refs)

    # -- background ---------------------------------------------------------------------------

    async def _renew_loop(self) -> None:
        while True:
            expires = self.token_expires_at
            if expires is None:
                return  # a token without a TTL never needs renewing
            ttl_left = max(0.0, expires - time.time())
            await asyncio.sleep(max(0.5, ttl_left * self._config.renew_at_fraction))
            try:
                await self._run(self._renew)
                self.renewals += 1
            except SecretError as exc:
                log.warning("vault: token renewal failed (%s)", exc)
                if self._config.role_id is None:
                    await asyncio.sleep(1.0)
                    continue
                try:
                    await self._approle_login()
                    await self._run(self._check_token)
                except SecretError as login_exc:
                    log.error("vault: AppRole login failed (%s); retrying", login_exc)
                    await asyncio.sleep(1.0)

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self._config.poll_interval_s)
            for (mount, path), (seen, refs) in list(self._watched.items()):
                try:
                    current = await self._run(self._current_version, mount, path)
                except SecretError as exc:
                    log.warning("vault: cannot poll %s/%s (%s)", mount, path, exc)
                    continue
                if current != seen:
                    self._watched[(mount, path)] = (current, refs)
                    log.info("vault: %s/%s changed (version %d -> %d)", mount, path, seen, current)
                    for ref in sorted(refs):
                        await self._hooks.fire(ref)

    async def _approle_login(self) -> None:
        await self._run(self._login_approle)
        self.logins += 1

    # -- hvac calls (worker thread only) ------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, _guard(fn, self._config.address), *args)

    def _read(self, mount: str, path: str) -> tuple[dict[str, Any], int]:
        resp = self._client.secrets.kv.v2.read_secret_version(
            path=path, mount_point=mount, raise_on_deleted_version=True
        )
        return dict(resp["data"]["data"]), int(resp["data"]["metadata"]["version"])

    def _write(self, mount: str, path: str, data: dict[str, Any]) -> None:
        self._client.secrets.kv.v2.create_or_update_secret(
            path=path, secret=data, mount_point=mount
        )

    def _current_version(self, mount: str, path: str) -> int:
        resp = self._client.secrets.kv.v2.read_secret_metadata(path=path, mount_point=mount)
        return int(resp["data"]["current_version"])

    def _check_token(self) -> None:
        data = self._client.auth.token.lookup_self()["data"]
        ttl = int(data.get("ttl") or 0)
        self.token_expires_at = time.time() + ttl if ttl > 0 else None

    def _renew(self) -> None:
        resp = self._client.auth.token.renew_self()
        ttl = int(resp["auth"]["lease_duration"])
        self.token_expires_at = time.time() + ttl if ttl > 0 else None
        if ttl <= 1:
            # Vault granted (almost) nothing more: the token sits at its max TTL.
            raise _TokenAtMaxTtl()

    def _login_approle(self) -> None:
        cfg = self._config
        assert cfg.role_id is not None and cfg.secret_id is not None
        self._client.auth.approle.login(
            role_id=cfg.role_id, secret_id=cfg.secret_id.reveal(), mount_point=cfg.approle_mount
        )


class _TokenAtMaxTtl(Exception):
    pass


def _guard(fn: Callable[..., T], address: str) -> Callable[..., T]:
    """Translate hvac's and the transport's errors into SecretError naming the path, not values."""
    import hvac.exceptions as hx
    import requests

    def call(*args: Any) -> T:
        where = "/".join(str(a) for a in args[:2] if isinstance(a, str)) or fn.__name__.strip("_")
        try:
            return fn(*args)
        except hx.InvalidPath:
            raise SecretError(f"vault: nothing at {where}") from LookupError(where)
        except hx.Forbidden:
            raise SecretError(
                f"vault: permission denied for {where}: check the token's policy"
            ) from None
        except hx.Unauthorized:
            raise SecretError(
                f"vault: not authenticated for {where}: token invalid or expired"
            ) from None
        except hx.VaultError as exc:
            raise SecretError(f"vault: {where} failed ({type(exc).__name__})") from None
        except _TokenAtMaxTtl:
            raise SecretError("vault: the token reached its maximum TTL") from None
        except requests.RequestException as exc:
            raise SecretError(f"vault at {address} unreachable ({type(exc).__name__})") from None

    return call
