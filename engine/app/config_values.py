"""How one TOML value of the engine's config is checked: each check takes the key's full name
(``accounts.ftmo1.multiplier``) and the value read, and returns the settings value or raises
:class:`ConfigError` naming the key and what it must be."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, get_args

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


def url(schemes: tuple[str, ...], example: str) -> Check:
    def check(key: str, value: Any) -> str:
        if not text(key, value).startswith(schemes):
            raise ConfigError(f"{key} must start with {schemes[0]} (e.g. {example})")
        return str(value).rstrip("/")

    return check


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
