"""What the engine's inputs and outputs are configured with: signal sources, event sinks and the
control server (read by ``engine.app.config``; each field's default here is the only default)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from engine.model.errors import ConfigError

# "local": JSON lines from a file or stdin; "http": the control server's POST /signals;
# "kafka": a consumer group on a topic.
SourceKind = Literal["local", "http", "kafka"]
# "bus": in-process subscribers only; "kafka": one topic per event kind; "log": the log.
SinkKind = Literal["bus", "kafka", "log"]
# How a consumer group splits partitions among its members (aiokafka's assignors).
AssignmentStrategy = Literal["roundrobin", "range", "sticky"]


def fence_after_ms(fence_ms: int, session_timeout_ms: int, heartbeat_interval_ms: int) -> int:
    """Self-fencing's bound (docs/kafka.md): ``fence_ms``, or when it is 0 the session timeout
    less two heartbeat intervals."""
    return fence_ms or session_timeout_ms - 2 * heartbeat_interval_ms


@dataclass(frozen=True, slots=True)
class SourceSettings:
    kind: SourceKind
    path: str | None = None  # local: a file of JSON lines; None or "-": stdin
    bootstrap: str | None = None  # kafka: host:port
    topic: str | None = None  # kafka
    group_id: str | None = None  # kafka
    # kafka consumer: the defaults take a killed engine's accounts over in about 2 s (docs/kafka.md,
    # "Takeover"); the broker's group.min.session.timeout.ms must allow session_timeout_ms.
    session_timeout_ms: int = 1_500  # no heartbeat for this long: the member is dead
    heartbeat_interval_ms: int = 300  # at most a third of session_timeout_ms
    rebalance_timeout_ms: int = 3_000  # how long the broker waits for members to rejoin
    max_poll_interval_ms: int = 300_000  # no poll for this long: the member leaves
    fetch_max_wait_ms: int = 100  # an idle fetch's longest wait at the broker
    revoke_grace_ms: int = 1_000  # in-flight signals' time to finish before a partition moves
    assignment_strategy: AssignmentStrategy = "roundrobin"
    # Self-fencing: orders are written only until this long after the send of the last
    # heartbeat the group answered; 0: session_timeout_ms - 2 x heartbeat_interval_ms.
    fence_ms: int = 0

    def check_kafka(self, where: str) -> None:
        """The consumer settings' relations (each key's own range is checked by the loader)."""
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise ConfigError(
                f"{where}.heartbeat_interval_ms ({self.heartbeat_interval_ms}) must be at most a "
                f"third of session_timeout_ms ({self.session_timeout_ms}), so two lost heartbeats "
                "do not end the session"
            )
        if self.max_poll_interval_ms < self.session_timeout_ms:
            raise ConfigError(
                f"{where}.max_poll_interval_ms must be at least session_timeout_ms "
                f"({self.session_timeout_ms})"
            )
        fence = fence_after_ms(self.fence_ms, self.session_timeout_ms, self.heartbeat_interval_ms)
        if not self.heartbeat_interval_ms < fence < self.session_timeout_ms:
            raise ConfigError(
                f"{where}.fence_ms ({fence}) must be above heartbeat_interval_ms "
                f"({self.heartbeat_interval_ms}) and below session_timeout_ms "
                f"({self.session_timeout_ms}): an engine must stop writing orders before the "
                "group can call it dead, and not between two heartbeats"
            )
        if self.revoke_grace_ms >= self.rebalance_timeout_ms:
            raise ConfigError(
                f"{where}.revoke_grace_ms ({self.revoke_grace_ms}) must be below "
                f"rebalance_timeout_ms ({self.rebalance_timeout_ms}), or a rebalance that waits "
                "for in-flight signals gets this engine thrown out of the group"
            )


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
