"""What the engine's inputs and outputs are configured with: signal sources, event sinks and the
control server (read by ``engine.app.config``; each field's default here is the only default)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# "local": JSON lines from a file or stdin; "http": the control server's POST /signals;
# "kafka": a consumer group on a topic.
SourceKind = Literal["local", "http", "kafka"]
# "bus": in-process subscribers only; "kafka": one topic per event kind; "log": the log.
SinkKind = Literal["bus", "kafka", "log"]


@dataclass(frozen=True, slots=True)
class SourceSettings:
    kind: SourceKind
    path: str | None = None  # local: a file of JSON lines; None or "-": stdin
    bootstrap: str | None = None  # kafka: host:port
    topic: str | None = None  # kafka
    group_id: str | None = None  # kafka


@dataclass(frozen=True, slots=True)
class SinkSettings:
    kind: SinkKind
    bootstrap: str | None = None  # kafka: host:port
    topic_prefix: str = "tl."  # kafka: event topics are <prefix>outcomes, <prefix>executions, ...


@dataclass(frozen=True, slots=True)
class ControlSettings:
    """The control server: /health, /metrics, /status, POST /signals and the kill switch."""

    host: str = "127.0.0.1"
    port: int = 8787  # 0: a free port
    token: str | None = None  # a secret reference: the bearer token for POST /signals and /kill
    # A secret reference: the bearer token for /status, /metrics, /events, /outcomes and the
    # page's data (the control token opens them too). Without either, they answer 503.
    read_token: str | None = None
    public_reads: bool = False  # the read endpoints without a token (a trusted network only)
    tls_cert: str | None = None  # PEM certificate chain: serve https (with tls_key)
    tls_key: str | None = None  # its unencrypted private key
    auth_failures_per_minute: int = 10  # failed authentications per client, then 429
