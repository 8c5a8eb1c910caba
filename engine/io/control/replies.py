"""The control server's replies: JSON bodies and errors, no version banner, and the status page
(``engine/io/page/index.html``, one self-contained file) with the headers that keep it so."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources

import orjson
from aiohttp import web

__all__ = ["PAGE_HEADERS", "error", "json_reply", "no_banner", "page_bytes"]

_NO_BANNER = "tl-engine"
PAGE_HEADERS = {
    # One self-contained file: inline script and style, data only from this origin.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def json_reply(
    data: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(data),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def error(status: int, reason: str, **extra: object) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="tl-engine"'} if status == 401 else None
    return json_reply({"error": reason, **extra}, status, headers)


async def no_banner(request: web.Request, response: web.StreamResponse) -> None:
    # aiohttp would announce "Python/3.x aiohttp/3.x"; say nothing a scanner could match.
    response.headers["Server"] = _NO_BANNER


_PAGE: bytes | None = None


def page_bytes() -> bytes:
    global _PAGE
    if _PAGE is None:
        _PAGE = resources.files("engine.io").joinpath("page/index.html").read_bytes()
    return _PAGE
