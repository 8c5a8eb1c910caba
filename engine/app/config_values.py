"""How one TOML value of the engine's config is checked: each check takes the key's full name
(``accounts.ftmo1.multiplier``) and the value read, and returns the settings value or raises
:class:`ConfigError` naming the key and what it must be."""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Callable
from typing import Any, get_args
from urllib.parse import urlsplit

from engine.model.errors import ConfigError

SECRET_SCHEMES = ("env:", "file:", "vault:")

Check = Callable[[str, Any], Any]


def text(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{key} must be a string, got {value!r}")
    if not value:
        raise ConfigError(f"{key} must not be empty")
    return value


def flag(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    return value


def secret_ref(key: str, value: Any) -> str:
    if not text(key, value).startswith(SECRET_SCHEMES):
        # Say nothing about the value itself: it may be the secret pasted in by mistake.
        raise ConfigError(
            f"{key} must be a secret reference (env:NAME, file:/path or vault:path#field), "
            "never the secret itself"
        )
    return str(value)


def local_secret_ref(key: str, value: Any) -> str:
    """A reference the engine can read before Vault is open: the Vault credentials."""
    if secret_ref(key, value).startswith("vault:"):
        raise ConfigError(f"{key} must be an env: or file: reference (Vault cannot unlock itself)")
    return str(value)


_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


def is_host(value: str) -> bool:
    """A DNS name or an IP address (no port, no scheme)."""
    if _HOSTNAME.fullmatch(value) and len(value) <= 253:
        return True
    try:
        ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        return False
    return True


def url(schemes: tuple[str, ...], example: str) -> Check:
    def check(key: str, value: Any) -> str:
        if not text(key, value).startswith(schemes):
            raise ConfigError(f"{key} must start with {schemes[0]} (e.g. {example})")
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError:
            raise ConfigError(f"{key} is not a URL (e.g. {example})") from None
        host = parts.hostname or ""
        if not host or not is_host(host):
            raise ConfigError(f"{key} has no valid host after {parts.scheme}:// (e.g. {example})")
        del port  # read to check it is a number (0: the demo fills in the sandbox's port)
        if parts.query or parts.fragment:
            raise ConfigError(f"{key} must not have a query or fragment (e.g. {example})")
        return str(value).rstrip("/")

    return check


def host(key: str, value: Any) -> str:
    """A host to listen on: a name or an address, without a port."""
    text(key, value)
    if not is_host(value):
        if ":" in value and is_host(value.rsplit(":", 1)[0]):
            raise ConfigError(
                f"{key} is a host only: write {value.rsplit(':', 1)[0]!r} and put the port "
                "in control_port"
            )
        raise ConfigError(f"{key} must be a host name or an IP address (e.g. 127.0.0.1)")
    return str(value)


def bootstrap(key: str, value: Any) -> str:
    """Kafka bootstrap servers: host:port, comma-separated."""
    for part in text(key, value).split(","):
        name, _, port = part.strip().rpartition(":")
        if not name or not is_host(name) or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(
                f"{key}: {part.strip()!r} is not host:port (e.g. 127.0.0.1:9092; several "
                "comma-separated)"
            )
    return str(value)


def cpus(key: str, value: Any) -> tuple[int, ...]:
    """CPU numbers this process may run on (os.sched_getaffinity at load time)."""
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(c, int) and not isinstance(c, bool) for c in value)
    ):
        raise ConfigError(f"{key} must be a non-empty list of CPU numbers, e.g. [2]")
    if len(set(value)) != len(value):
        raise ConfigError(f"{key} lists a CPU twice")
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        raise ConfigError(f"{key}: CPU pinning needs Linux (os.sched_setaffinity)") from None
    missing = [c for c in value if c not in allowed]
    if missing:
        raise ConfigError(
            f"{key}: CPU {missing[0]} is not available to this process (available: "
            f"{', '.join(map(str, allowed))})"
        )
    return tuple(value)


def gc_thresholds(key: str, value: Any) -> tuple[int, ...]:
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in value)
    ):
        raise ConfigError(
            f"{key} must be three whole numbers [gen0, gen1, gen2] like gc.set_threshold's, "
            "e.g. [50000, 20, 100]"
        )
    if value[0] == 0:
        raise ConfigError(f"{key}: gen0 = 0 turns the collector off; use at least 700")
    return tuple(value)


def log_levels(key: str, value: Any) -> str:
    from engine.app.logs import parse_levels

    parse_levels(text(key, value), key)
    return str(value)


def whole(lo: int, hi: int | None = None, hint: str = "") -> Check:
    def check(key: str, value: Any) -> int:
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value < lo
            or (hi is not None and value > hi)
        ):
            if hi is None and lo == 1:
                wanted = "a positive integer"
            elif hi is None:
                wanted = f"an integer of at least {lo}"
            else:
                wanted = f"an integer from {lo} to {hi}"
            raise ConfigError(f"{key} must be {wanted}{hint}, got {value!r}")
        return value

    return check


def positive(most: float | None = None, why: str = "") -> Check:
    """A positive, finite number (at most ``most``, when given)."""

    def check(key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ConfigError(f"{key} must be a positive number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key} must be finite")
        if most is not None and value > most:
            raise ConfigError(f"{key} must be at most {most} ({why}), got {value!r}")
        return float(value)

    return check


def one_of(choices: Any) -> Check:
    """One of a ``Literal`` type's values (the settings module's type is the list)."""
    allowed: tuple[str, ...] = get_args(choices)

    def check(key: str, value: Any) -> str:
        if value not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(allowed)}; got {value!r}")
        return str(value)

    return check


def account_id(key: str, value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.isdigit():
        raise ConfigError(f"{key} must be the numeric TradeLocker account id")
    return value


def aliases(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(m, str) for m in value):
        raise ConfigError(f"{key} must be a non-empty list of account aliases")
    if len(set(value)) != len(value):
        raise ConfigError(f"{key} lists an account twice")
    return tuple(value)


def weights(key: str, value: Any) -> tuple[float, ...]:
    if not isinstance(value, list) or not all(
        isinstance(w, int | float) and not isinstance(w, bool) and w > 0 for w in value
    ):
        raise ConfigError(f"{key} must list one positive number per member")
    return tuple(float(w) for w in value)
