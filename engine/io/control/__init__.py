"""The control server: health, metrics, status, signal intake over HTTP, and the kill switch.

By area: ``server.py`` (the server, its life cycle, ``/health``, ``/``, ``/metrics``,
``/status``), ``auth.py`` (the tokens, the failure throttle, TLS), ``feed.py`` (``/events``,
``/outcomes/{id}``, the last outcomes), ``signals.py`` (``POST /signals``), ``kill.py`` (the
kill switch, ``POST /kill``, ``/resume``, ``/guards/resume``), ``config.py`` and ``replies.py``.

An aiohttp server bound to 127.0.0.1 (a free port unless one is configured), optionally over TLS
(``tls_cert``/``tls_key``):

``GET  /health``   open (for probes): 200 when every account is healthy (auth, stream, breaker,
                   limiter), the kill switch is off and the engine is not draining, 503 otherwise.
                   With the read token the body names each account's parts and what is wrong;
                   without it, only a brief reason (no alias, error text or kill-switch reason).
``GET  /``         the live status page (``engine/io/page/index.html``: one file, no external
                   asset); it holds no data itself and reads the endpoints below with the token
                   the operator types in.
``GET  /metrics``  read token: Prometheus exposition (``prometheus-client``).
``GET  /status``   read token: health, accounts (balance, equity, day P&L, positions, working
                   orders: the engine's ``status_extra`` hook), rate budget, outcome counts,
                   latency percentiles, queue depth, the last outcomes.
``GET  /events``   read token: server-sent events, every event on the bus as it is published
                   (``?topics=outcomes,executions`` to choose), after a replay of the last outcomes.
``GET  /outcomes/{id}`` read token: a signal's outcome(s), from memory or the journal; 404 if the
                   engine never saw the id.
``POST /signals``  bearer API key; body is one JSON signal or JSON lines. Each signal becomes a
                   row in the journal's intake and then a :class:`~engine.model.delivery.Delivery`
                   on :attr:`ControlServer.signals`, which the HTTP source
                   (``engine/io/sources/http.py``) reads. 202 only once every row is committed;
                   503 with no http source configured, while draining, or when the journal
                   cannot make the rows durable (docs/operations.md).
``POST /kill``     bearer API key; engages the kill switch (no new signals are accepted) and, with
                   ``{"cancel_orders": true}``, runs the kill handler (cancel all working orders);
                   ``{"flatten": true}`` also closes every open position (it implies
                   ``cancel_orders``).
``POST /resume``   bearer API key; releases the kill switch.

The API key (control token) and the read token are compared in constant time and never echoed,
logged or put in a metric label; the control token also opens every read endpoint. Without a
configured key the POST endpoints refuse everything (503), and without a read token (or the
control token) the read endpoints do (503, naming the key to set) unless ``public_reads`` is on:
an open order-entry port on a trading host, or an open window on its accounts, is never the
default. A client that fails authentication ``auth_failures_per_minute`` times within a minute
is answered 429 (with ``Retry-After``) until the minute has passed, whatever it sends (a request
with no token at all is refused, not counted). No reply
carries a version banner (``Server: tl-engine``).

Draining (:meth:`ControlServer.begin_drain`, on SIGTERM/SIGINT): from that moment ``POST
/signals`` answers 503 and ``/health`` 503; :meth:`ControlServer.intake_settled` waits for the
requests already past that check, so the drain sees every signal answered 202.

Signals that were already queued when the kill switch is engaged are not dropped here: the
pipeline checks :attr:`KillSwitch.engaged` and records them as expired, so every signal still
gets exactly one outcome.
"""

from engine.io.control.config import ControlConfig, KillHandler, OutcomeLookup, StatusHook
from engine.io.control.kill import KillSwitch
from engine.io.control.server import ControlServer
from engine.io.control.signals import SignalBodyError, split_signals

__all__ = [
    "ControlConfig",
    "ControlServer",
    "KillHandler",
    "KillSwitch",
    "OutcomeLookup",
    "SignalBodyError",
    "StatusHook",
    "split_signals",
]
