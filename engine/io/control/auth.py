"""Who may use the control server: the control token (POST endpoints, and every read) and the
read token, compared in constant time and never echoed, logged or put in a metric label; a
client that fails too often within a minute is answered 429; and the server's TLS context."""

from __future__ import annotations

import hmac
import logging
import ssl
import time
from collections import deque
from typing import Any, Literal

from aiohttp import web

from engine.io.control.config import ControlConfig
from engine.io.control.replies import error, json_reply
from engine.model.errors import ConfigError

__all__ = ["ControlAuth", "tls_context"]

log = logging.getLogger("engine.io.control")  # the control server's log lines keep one logger


class ControlAuth:
    """The control server's keys and its per-address count of failed authentications
    (``registry``: the metrics registry; the keys are registered as secrets it must mask)."""

    def __init__(self, config: ControlConfig, registry: Any) -> None:
        self.config = config
        self._key = config.api_key.encode() if config.api_key else None
        self._read_key = config.read_token.encode() if config.read_token else None
        for secret in (config.api_key, config.read_token):
            if secret:
                registry.forbid(secret)
        self._auth_failures: dict[str, deque[float]] = {}
        self.counter = registry.counter(
            "tl_control_auth_failures_total",
            "requests refused for a missing or wrong token, and those throttled after too many",
            ("result",),
        )

    def _throttled(self, remote: str) -> web.Response | None:
        window = self._auth_failures.get(remote)
        if not window:
            return None
        now = time.monotonic()
        while window and now - window[0] >= 60.0:
            window.popleft()
        if not window:
            del self._auth_failures[remote]
            return None
        if len(window) < self.config.auth_failures_per_minute:
            return None
        self.counter.inc(result="throttled")
        retry = max(1, int(61.0 - (now - window[0])))
        return json_reply(
            {"error": f"too many failed authentications from this address; retry in {retry} s"},
            429,
            {"Retry-After": str(retry)},
        )

    def _failed(self, request: web.Request, status: int, reason: str) -> web.Response:
        remote = request.remote or "?"
        now = time.monotonic()
        if len(self._auth_failures) >= 10_000:  # many addresses: forget those past their minute
            for addr, window in list(self._auth_failures.items()):
                if not window or now - window[-1] >= 60.0:
                    del self._auth_failures[addr]
        self._auth_failures.setdefault(remote, deque()).append(now)
        self.counter.inc(result="refused")
        return error(status, reason)

    def unauthorised(
        self, request: web.Request, need: Literal["control", "read"] = "control"
    ) -> web.Response | None:
        """None when the request may go on; else the refusal (never naming the expected key)."""
        if need == "read" and self.config.public_reads:
            return None
        keys = [self._key] if need == "control" else [k for k in (self._key, self._read_key) if k]
        if not keys or keys == [None]:
            if need == "control":
                return error(
                    503,
                    "no API key is configured for the control server; set "
                    "engine.control_token to enable POST endpoints",
                )
            return error(
                503,
                "no read token is configured for the control server; set "
                "engine.control_read_token (or engine.control_public_reads = true on a "
                "trusted network)",
            )
        throttled = self._throttled(request.remote or "?")
        if throttled is not None:
            return throttled
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            # Not counted as a failure: a page opened before its token was typed in polls
            # without one; guessing needs a token presented, and those are counted.
            what = "API key" if need == "control" else "token"
            return error(401, f"missing bearer {what}: send 'Authorization: Bearer <{what}>'")
        given = presented.strip().encode()
        # Compare against every accepted key, so the time taken says nothing about which.
        ok = False
        for key in keys:
            assert key is not None
            ok = hmac.compare_digest(given, key) or ok
        if not ok:
            log.warning("control: rejected a request with a wrong token from %s", request.remote)
            if need == "control" and self._read_key and hmac.compare_digest(given, self._read_key):
                self.counter.inc(result="read_only")
                return error(403, "this is the read token; this action needs the control token")
            wrong = "wrong API key" if need == "control" else "wrong token"
            return self._failed(request, 401, wrong)
        return None

    def may_read(self, request: web.Request) -> bool:
        """Whether the request carries a read (or control) token; never counted or throttled."""
        if self.config.public_reads:
            return True
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return False
        given = presented.strip().encode()
        ok = False
        for key in (self._key, self._read_key):
            if key is not None:
                ok = hmac.compare_digest(given, key) or ok
        return ok


def tls_context(config: ControlConfig) -> ssl.SSLContext | None:
    """The server's TLS context from ``tls_cert``/``tls_key`` (None: plain http); ConfigError
    naming the keys when one is missing or the files do not load."""
    cert, key = config.tls_cert, config.tls_key
    if not cert and not key:
        return None
    if not (cert and key):
        raise ConfigError(
            "control TLS needs both engine.control_tls_cert and engine.control_tls_key"
        )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"control TLS: cannot load {cert} / {key}: {getattr(exc, 'strerror', None) or exc}"
            " (PEM certificate chain and its unencrypted private key)"
        ) from None
    return ctx
