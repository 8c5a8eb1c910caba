"""How the sandbox says no. Each error knows its HTTP status and the venue's ``errmsg`` text.

Business rejections (lot step, missing stop price, order already final ...) are :class:`Rejected`:
HTTP 200 with ``{"s": "error", "errmsg": ...}``, as TradeLocker answers them. Schema problems (a
missing required field, a value of the wrong type, an over-long strategyId) are HTTP 400.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A seed, fault or command-line value the sandbox cannot use; the message says the fix."""


class SimError(Exception):
    status = 500

    def __init__(self, errmsg: str) -> None:
        super().__init__(errmsg)
        self.errmsg = errmsg


class Rejected(SimError):
    status = 200


class BadRequest(SimError):
    status = 400


class Unauthorized(SimError):
    status = 401


class Forbidden(SimError):
    status = 403


class NotFound(SimError):
    status = 404


class TooManyRequests(SimError):
    status = 429
